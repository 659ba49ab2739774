"""The private interface of pytest the warm interpreter relies on
(worker/insuite/privates.py) still holds at the installed pytest: loudly, not by a
warm interpreter that quietly starts no suite."""

from __future__ import annotations

import importlib
import runpy

from worker.insuite import PLUGINS_DIR, privates
from worker.suite.probe import PROBE_MODULE


def test_pytests_builtin_plugins_are_listed_and_import() -> None:
    modules = privates.builtin_plugin_modules()
    # Among them, ones `import pytest` alone does not import (what preloading them saves).
    assert {"_pytest.unittest", "_pytest.junitxml", "_pytest.skipping"} <= set(modules)
    for name in modules:
        importlib.import_module(name)


def test_every_function_the_framework_check_watches_exists_at_the_installed_pytest() -> None:
    # The probe names pytest's reporting functions only to compare them (a suite that
    # replaced one is caught); a name a release drops would leave a hole unseen.
    watched = runpy.run_path(str(PLUGINS_DIR / f"{PROBE_MODULE}.py"))["_reporting_path"]()
    absent = {name for name, found in watched.items() if found is None}
    assert absent <= {"_pytest.runner.call_runtest_hook"}  # pytest 8 only
    assert len(watched) - len(absent) >= 13
