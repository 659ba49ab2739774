"""How the gate's probe gets into a cold pytest run (worker/insuite/boot.py): handed to
pytest's run before `-p testgate_probe` is read, so that option costs no second scan of
every installed distribution's entry points. Real subprocesses, each with an audit
hook (a sitecustomize) that counts the reads of each `entry_points.txt`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.projects import project
from worker.insuite import BOOT_SCRIPT, PLUGINS_DIR
from worker.suite.probe import PROBE_MODULE

_COUNTING_SITE = """\
import atexit, collections, os, sys

_reads = collections.Counter()


def _hook(event, args):
    if event == "open" and str(args[0]).endswith("entry_points.txt"):
        _reads[str(args[0])] += 1


sys.addaudithook(_hook)


@atexit.register
def _report():
    with open(os.environ["COUNT_OUT"], "w") as out:
        out.write(str(max(_reads.values(), default=0)))
"""


def _most_reads_of_one_entry_points_file(tmp_path: Path, name: str, argv: list[str]) -> int:
    root = project(tmp_path, {"tests/test_a.py": "def test_a():\n    pass\n"})
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_COUNTING_SITE)
    out = tmp_path / f"{name}.count"
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}:{PLUGINS_DIR}",
        "COUNT_OUT": str(out),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return int(out.read_text())


def test_the_gates_cold_start_reads_entry_points_as_often_as_bare_pytest(tmp_path: Path) -> None:
    common = ["tests", "-q", "-p", "no:cacheprovider"]
    bare = _most_reads_of_one_entry_points_file(tmp_path, "bare", ["-m", "pytest", *common])
    gate = _most_reads_of_one_entry_points_file(
        tmp_path, "gate", [str(BOOT_SCRIPT), *common, "-p", PROBE_MODULE]
    )
    # The same `-p` without boot.py's hand-over: the scan the hand-over saves, so the
    # count above can tell the difference.
    plain = _most_reads_of_one_entry_points_file(
        tmp_path, "plain", ["-m", "pytest", *common, "-p", PROBE_MODULE]
    )
    assert bare >= 1
    assert gate == bare
    assert plain == bare + 1
