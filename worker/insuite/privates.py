"""The one private interface of pytest the gate relies on.

pytest names its built-in plugins only in `_pytest.config` (`essential_plugins`,
`default_plugins`). The warm interpreter imports them before it forks, as every run
would: 12-14 ms of each warm run, of which a one-test suite forked warm in a venv with
pytest alone takes 55-90 ms in all, measured with pytest 9.2.0 on CPython 3.11.7.
tests/containment/test_privates.py fails on a pytest release that drops or renames them,
and on one that drops a function the probe's framework check compares by identity
(`_reporting_path` in plugins/testgate_probe.py: named there, never called).

Stdlib and pytest only: the zygote loads this file by path before it serves any job.
"""

from __future__ import annotations


def builtin_plugin_modules() -> list[str]:
    """The modules of pytest's own plugins, in the order pytest loads them."""
    from _pytest.config import default_plugins, essential_plugins

    return [f"_pytest.{name}" for name in dict.fromkeys((*essential_plugins, *default_plugins))]
