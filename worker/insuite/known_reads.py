"""Import-time reads of installed libraries that a warm fork can make again.

The preload's watch (worker/insuite/preload.py) refuses a module whose import reads the
working directory, the clock, sys.path, the pid or system randomness: a warm fork would
keep what the zygote's import saw. A few libraries that real repositories' suites load
make each such read in a top-level statement whose value nothing else at import
derives from. Each entry below was read in that library's source at one version (the
entry names it), and says what its statement reads and what makes a fork hold what a
cold import would have held:

- "again": the fork runs the statement again in its module, after it has become the
  job's process (its working directory, clock, sys.path, pid and environment are the
  job's). A list, set or dict it binds is updated in place, so every reference to it
  sees the new contents; a name that another module bound to the old value (a
  `from m import name`) is bound to the new one too.
- a named fix (FIXES): what a statement of the standard library computed from an
  environment variable, computed again from the job's (the variable's value then need
  not match the zygote's, which it must for every other read by name).
- "no distributions": the statement lists the installed distributions (importlib.metadata
  walks sys.path). A cold start's walk also covers the suite's own path entries (its
  working directory, PYTHONPATH), so the run starts cold if they hold any distribution
  metadata, or if its working directory holds a name that a relative entry of sys.path
  resolves to (worker/containment/warm_rules.py). `entry_point_group` says which entry
  points the statement loads: with any installed, the statement ran code of other
  packages at import, and the library is not preloaded.

Another version of a library, or another statement, is not covered: its reads are
refused as before and it is left to each run. Stdlib only: loaded by path, with
preload.py, in the zygote.
"""

from __future__ import annotations

import ast
import importlib.metadata
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

AGAIN = "again"
NO_DISTRIBUTIONS = "no distributions"
SYSCONFIG_USERBASE = "sysconfig's user base"
PYTHON = "python"  # the standard library, as the version of this interpreter


@dataclass(frozen=True)
class KnownRead:
    distribution: str
    version: str
    module: str
    statement: str  # the source line, stripped, exactly as audited
    reads: frozenset[str]  # the kinds of read it makes (preload.py's Read.kind)
    remedy: str  # AGAIN, NO_DISTRIBUTIONS or a key of FIXES
    entry_point_group: str = ""


def _known(
    distribution: str, version: str, module: str, statement: str, *reads: str, remedy: str = AGAIN
) -> KnownRead:
    return KnownRead(distribution, version, module, statement, frozenset(reads), remedy)


KNOWN_READS: tuple[KnownRead, ...] = (
    # The example database's default directory; storage_directory() reads it lazily.
    _known(
        "hypothesis",
        "6.170.17",
        "hypothesis.configuration",
        '__hypothesis_home_directory_default = Path.cwd() / ".hypothesis"',
        "cwd",
    ),
    # Reported as "imported_at" in observations (_system_metadata, an lru_cache that
    # nothing calls at import).
    _known(
        "hypothesis",
        "6.170.17",
        "hypothesis.internal.observability",
        "_imported_at = time.time()",
        "clock",
    ),
    # The engine's own Random, seeded from the system: the same in every fork otherwise.
    _known(
        "hypothesis",
        "6.170.17",
        "hypothesis.internal.conjecture.engine",
        "_random = Random()",
        "random",
    ),
    # Zip files on sys.path count as the standard library in its explanations.
    _known(
        "hypothesis",
        "6.170.17",
        "hypothesis.internal.scrutineer",
        "STDLIB_DIRS = _stdlib_dirs()",
        "sys.path",
    ),
    KnownRead(
        "hypothesis",
        "6.170.17",
        "hypothesis",
        "run()",  # hypothesis.entry_points.run: loads the "hypothesis" entry points
        frozenset({"sys.path", "cwd"}),
        NO_DISTRIBUTIONS,
        entry_point_group="hypothesis",
    ),
    # The path its workers get (xdist.workermanage imports the list by name).
    _known(
        "pytest-xdist",
        "3.8.0",
        "xdist.plugin",
        "_sys_path = list(sys.path)  # freeze a copy of sys.path at interpreter startup",
        "sys.path",
    ),
    # Only printed in its debug trace lines.
    _known("execnet", "2.1.2", "execnet.gateway_base", "pid = os.getpid()", "pid"),
    # HOME, for `_HAS_USER_BASE` (true for any HOME on Linux) and the config var
    # "userbase" (~/.local) that get_config_vars() computes once, when first asked.
    _known(
        PYTHON,
        "3.11.7",
        "sysconfig",
        "return os.path.expanduser(os.path.join(*args))",
        "env:HOME",
        remedy=SYSCONFIG_USERBASE,
    ),
)


def covering(
    read_kind: str, module: str, statement: str, known: Iterable[KnownRead] | None = None
) -> KnownRead | None:
    """The entry of `known` (KNOWN_READS) that covers a read of `read_kind` made by
    `statement` in `module`, if the installed distribution is the audited version."""
    for entry in KNOWN_READS if known is None else known:
        if (entry.module, entry.statement) != (module, statement) or read_kind not in entry.reads:
            continue
        if installed_version(entry.distribution) != entry.version:
            continue
        if entry.entry_point_group and importlib.metadata.entry_points(
            group=entry.entry_point_group
        ):
            continue
        return entry
    return None


def installed_version(distribution: str) -> str | None:
    if distribution == PYTHON:
        return platform.python_version()
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class Again:
    """One audited statement, made again in a fork (see the module docstring)."""

    def __init__(self, module: str, statement: str) -> None:
        self.module = module
        self.statement = statement
        self.name = _assigned_name(statement)
        namespace = vars(sys.modules[module])
        self._code = compile(statement, namespace.get("__file__") or module, "exec")
        old = namespace[self.name]
        # Other modules' names for the same object (a `from module import name`).
        self._aliases = [
            (other, key)
            for other, other_module in list(sys.modules.items())
            if other != module
            for key, value in list(getattr(other_module, "__dict__", {}).items())
            if value is old
        ]

    def __call__(self) -> None:
        namespace = vars(sys.modules[self.module])
        old = namespace[self.name]
        exec(self._code, namespace)  # noqa: S102 - an audited statement of an installed library
        new = namespace[self.name]
        if _update_in_place(old, new):
            namespace[self.name] = old
            return
        for other, key in self._aliases:
            setattr(sys.modules[other], key, new)


def _assigned_name(statement: str) -> str:
    """The one name `statement` binds (`NAME = ...`); ValueError for any other shape."""
    body = ast.parse(statement).body
    assign = body[0] if len(body) == 1 else None
    targets = assign.targets if isinstance(assign, ast.Assign) else []
    if len(targets) == 1 and isinstance(targets[0], ast.Name):
        return targets[0].id
    raise ValueError(f"not a single assignment to a name: {statement!r}")


def _update_in_place(old: Any, new: Any) -> bool:
    """Give `old` the contents of `new` when both are the same kind of container."""
    if type(old) is not type(new):
        return False
    if isinstance(old, list):
        old[:] = new
    elif isinstance(old, (set, dict)):
        old.clear()
        old.update(new)
    else:
        return False
    return True


def _sysconfig_user_base() -> None:
    import sysconfig

    user_base = sysconfig._getuserbase()  # type: ignore[attr-defined]
    sysconfig._HAS_USER_BASE = user_base is not None  # type: ignore[attr-defined]
    config = sysconfig._CONFIG_VARS  # type: ignore[attr-defined]
    if config is not None and "userbase" in config:
        config["userbase"] = user_base


FIXES: dict[str, Callable[[], None]] = {SYSCONFIG_USERBASE: _sysconfig_user_base}
