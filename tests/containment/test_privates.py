"""The private interface of pytest the warm interpreter relies on
(worker/insuite/privates.py) still holds at the installed pytest: loudly, not by a
warm interpreter that quietly starts no suite."""

from __future__ import annotations

import importlib

from worker.insuite import privates


def test_pytests_builtin_plugins_are_listed_and_import() -> None:
    modules = privates.builtin_plugin_modules()
    # Among them, ones `import pytest` alone does not import (what preloading them saves).
    assert {"_pytest.unittest", "_pytest.junitxml", "_pytest.skipping"} <= set(modules)
    for name in modules:
        importlib.import_module(name)
