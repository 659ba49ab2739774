"""What real suites read of their own interpreter is what `python -m pytest` shows them,
forked from the contained warm interpreter as started cold.

Reductions of checks found by comparing, field by field, the interpreter that ran the
suites of fourteen public projects (docs/benchmarks.md, "Warm, cold and bare on public
suites"): the command line the interpreter was started with (a suite that re-runs
or prints "its own command"), which modules are imported (a suite that checks its
package imports a module only when asked), and the user site directory site.py derives
from HOME (a suite of an installer's --user scheme). Real bwrap, real pytest runs."""

from __future__ import annotations

from pathlib import Path

from tests.contained import outcomes
from tests.projects import project

COMMAND_LINE = """
import subprocess
import sys


def test_the_interpreter_was_started_as_python_m_pytest():
    assert sys.orig_argv[1:3] == ["-m", "pytest"], sys.orig_argv
    assert sys.orig_argv[3:] == sys.argv[1:]


def test_running_its_own_command_again_runs_pytest():
    done = subprocess.run(
        [*sys.orig_argv[:3], "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("pytest "), done
"""

LAZY_IMPORTS = """
import sys


def test_ctypes_and_pkgutil_are_imported_only_when_asked():
    assert "ctypes" not in sys.modules and "pkgutil" not in sys.modules
    import ctypes
    import pkgutil

    assert ctypes.sizeof(ctypes.c_int(7)) == 4 and ctypes.c_int(7).value == 7
    assert pkgutil.get_importer(".") is not None
"""


def test_the_command_line_is_that_of_python_m_pytest_warm_and_cold(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_command_line.py": COMMAND_LINE})
    cold = outcomes(root, "cold")
    assert set(cold.values()) == {"passed"}, cold
    assert outcomes(root, "warm") == cold


def test_modules_only_the_warm_interpreter_needed_are_not_imported(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_lazy.py": LAZY_IMPORTS})
    cold = outcomes(root, "cold")
    assert set(cold.values()) == {"passed"}, cold
    assert outcomes(root, "warm") == cold
    # The suite's own `import ctypes` works warm, then the warm interpreter's next fork
    # is as clean as the first.
    assert outcomes(root, "warm") == cold


USER_SITE = """
import os
import site


def test_the_user_site_is_under_home():
    assert site.USER_BASE == os.path.join(os.path.expanduser("~"), ".local"), site.USER_BASE
    assert site.getusersitepackages() == site.USER_SITE
    assert site.USER_SITE.startswith(site.USER_BASE + os.sep), site.USER_SITE
"""


def test_the_user_site_is_that_of_the_jobs_home(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_user_site.py": USER_SITE})
    cold = outcomes(root, "cold")
    assert set(cold.values()) == {"passed"}, cold
    assert outcomes(root, "warm") == cold
