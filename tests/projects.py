"""Small pytest projects written on disk for suite, containment and chaos tests."""

from __future__ import annotations

import sysconfig
from pathlib import Path


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    """A project with `files` (and a `tests/` directory) under `tmp_path/project`."""
    root = tmp_path / "project"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "tests").mkdir(parents=True, exist_ok=True)
    return root


def escaping_daemon_project(tmp_path: Path) -> tuple[Path, Path]:
    """A passing suite that leaves a daemon behind: a new session, re-parented away and
    without the cookie in its environment. Returns the project and its pid file."""
    pid_file = tmp_path / "daemon.pid"
    root = project(
        tmp_path,
        {
            "tests/test_escape.py": (
                "import os, time\n\n\n"
                "def test_escapes():\n"
                "    if os.fork() == 0:\n"
                "        os.setsid()\n"
                "        if os.fork() == 0:\n"
                "            # a new session, re-parented away, and no cookie left\n"
                f"            open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
                f"            os.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
                "            os.execve('/bin/sleep', ['sleep', '600'], {})\n"
                "        os._exit(0)\n"
                "    os.wait()\n"
                f"    while not os.path.exists({str(pid_file)!r}):\n"
                "        time.sleep(0.01)\n"
                "    time.sleep(0.2)  # past the execve\n"
            )
        },
    )
    return root, pid_file


def outer_site_step() -> str:
    """A venv setup step that gives the venv this interpreter's site-packages (pytest
    among them; no network in tests) the way an installer would: a `.pth` file that a
    distribution's RECORD lists. It also appends a line to the venv's `builds.txt`
    (listed too), so a test can count the builds."""
    here = sysconfig.get_paths()["purelib"]
    record = "outer.pth,,\\n../../../builds.txt,,\\nouter-0.dist-info/RECORD,,\\n"
    return (
        'python -c "import os, site, sys; s = site.getsitepackages()[0]; '
        f"open(s + '/outer.pth', 'w').write({here!r}); "
        "open(sys.prefix + '/builds.txt', 'a').write('built\\n'); "
        "os.makedirs(s + '/outer-0.dist-info', exist_ok=True); "
        f"open(s + '/outer-0.dist-info/RECORD', 'w').write('{record}')\""
    )


# A PEP 517 backend of the project's own (no network, no setuptools' `wheel`): a wheel of
# `src/<NAME>/`, or for `pip install -e .` one whose `.pth` names `src/`. The project's
# `entry_points.txt`, if it has one, goes into the wheel's metadata.
_BACKEND = """import os, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "NAME_"


def _wheel(directory, files):
    info = NAME + "-0.dist-info/"
    files[info + "METADATA"] = "Metadata-Version: 2.1\\nName: " + NAME + "\\nVersion: 0\\n"
    files[info + "WHEEL"] = "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    if os.path.exists(os.path.join(HERE, "entry_points.txt")):
        files[info + "entry_points.txt"] = open(os.path.join(HERE, "entry_points.txt")).read()
    files[info + "RECORD"] = "".join(p + ",,\\n" for p in [*files, info + "RECORD"])
    name = NAME + "-0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
    return name


def build_wheel(directory, config_settings=None, metadata_directory=None):
    src = os.path.join(HERE, "src", NAME)
    files = {NAME + "/" + n: open(os.path.join(src, n)).read() for n in os.listdir(src)}
    return _wheel(directory, files)


def build_editable(directory, config_settings=None, metadata_directory=None):
    return _wheel(directory, {NAME + ".pth": os.path.join(HERE, "src") + "\\n"})
"""


def installable(name: str, *, pytest_plugin: str = "") -> dict[str, str]:
    """The files of a package `name` that `pip install [-e] .` installs offline; with a
    `pytest_plugin`, its module `name.plug` is that source and a pytest11 entry point."""
    files = {
        "pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "gate_backend"\nbackend-path = ["."]\n'
        ),
        "gate_backend.py": _BACKEND.replace("NAME_", name),
        f"src/{name}/__init__.py": "ANSWER = 42\n",
    }
    if pytest_plugin:
        files[f"src/{name}/plug.py"] = pytest_plugin
        files["entry_points.txt"] = f"[pytest11]\n{name} = {name}.plug\n"
    return files
