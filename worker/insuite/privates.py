"""The one private interface of pytest the gate relies on.

pytest names its built-in plugins only in `_pytest.config` (`essential_plugins`,
`default_plugins`). The warm interpreter imports them before it forks, as every run
would: 12-14 ms of each warm run (the one-test contained job takes ~75 ms warm against
~800 ms bare), measured with pytest 9.2.0 on CPython 3.11.7 (docs/benchmarks.md).
tests/containment/test_privates.py fails on a pytest release that drops or renames them.

Stdlib and pytest only: the zygote loads this file by path before it serves any job.
"""

from __future__ import annotations


def builtin_plugin_modules() -> list[str]:
    """The modules of pytest's own plugins, in the order pytest loads them."""
    from _pytest.config import default_plugins, essential_plugins

    return [f"_pytest.{name}" for name in dict.fromkeys((*essential_plugins, *default_plugins))]
