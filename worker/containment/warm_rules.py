"""Whether a suite run could differ from a cold `python -m pytest` if it were forked
from a warm interpreter: functions over its environment, sys.path entries and config
(worker/containment/warm.py sends every run they object to cold)."""

from __future__ import annotations

import importlib.machinery
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

# Read by CPython's start-up besides PYTHON*: the locale, and the C library's time zone,
# which the warm interpreter set once (its `time` is imported before any job).
_STARTUP_VARS = frozenset({"LANG", "LC_ALL", "LC_CTYPE", "TZ"})
# Imported by the interpreter's start-up from sys.path when present; the warm one has
# started already, so a suite that ships one must run cold.
_STARTUP_MODULES = frozenset({"sitecustomize", "usercustomize"})


def startup_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` that shapes an interpreter as it starts (a warm child cannot
    honour it). PYTHONPATH is left out: a warm child puts its entries on sys.path itself."""
    startup = {k: v for k, v in env.items() if k.startswith("PYTHON") or k in _STARTUP_VARS}
    startup.pop("PYTHONPATH", None)
    return startup


def suite_path_prefix(cwd: Path, env: Mapping[str, str]) -> list[str]:
    """What `python -m` puts in front of sys.path: the working directory, then
    PYTHONPATH's entries made absolute (as site.py does)."""
    entries = [e for e in env.get("PYTHONPATH", "").split(os.pathsep) if e]
    return [str(cwd), *(os.path.abspath(cwd / entry) for entry in entries)]


def shadowing_module(path_entries: Iterable[str], preloaded: Iterable[str]) -> str | None:
    """A module of the suite's own sys.path entries that a cold start would import
    instead of the warm interpreter's copy (or a sitecustomize it would run)."""
    names = set(preloaded) | _STARTUP_MODULES
    suffixes = tuple(importlib.machinery.all_suffixes())
    for entry in path_entries:
        try:
            listing = os.listdir(entry)
        except OSError:
            continue
        for item in listing:
            name, dot, rest = item.partition(".")
            # A package (a directory, namespace or not) or a module file of any kind the
            # import system loads; not a `pytest.ini` or `pluggy.txt`.
            # (Any extension module: the interpreter may be another version than ours.)
            importable = not dot or f".{rest}" in suffixes or f".{rest}".endswith(".so")
            if name in names and importable:
                return f"{entry}/{item}"
    return None
