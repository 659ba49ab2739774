"""Whether a suite run could differ from a cold `python -m pytest` if it were forked
from a warm interpreter: functions over its environment, sys.path entries and config
(worker/containment/warm.py sends every run they object to cold)."""

from __future__ import annotations

import importlib.machinery
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from worker.containment.untrusted_files import UntrustedDir

_LOCALE_VARS = ("LANG", "LC_ALL", "LC_CTYPE")
# The C library's time zone, which the warm interpreter set once (its `time` is imported
# before any job): a run in another zone would get the warm one's.
_ZONE_VARS = ("TZ",)
# Imported by the interpreter's start-up from sys.path when present; the warm one has
# started already, so a suite that ships one must run cold.
_STARTUP_MODULES = frozenset({"sitecustomize", "usercustomize"})


def read_at_startup(name: str) -> bool:
    """Whether CPython's start-up reads this variable (so a warm child cannot honour it)."""
    return name.startswith("PYTHON") or name in _LOCALE_VARS or name in _ZONE_VARS


def startup_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` that shapes an interpreter as it starts. PYTHONPATH is left out:
    a warm child puts those entries on sys.path itself."""
    return {k: v for k, v in env.items() if read_at_startup(k) and k != "PYTHONPATH"}


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


# What importlib.metadata takes for a distribution's metadata in a sys.path entry.
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def distributions_objection(
    path_entries: Iterable[str], cwd: Path, relative_entries: Iterable[str]
) -> str | None:
    """Why a cold start's listing of the installed distributions could find more than
    the warm interpreter's did (worker/insuite/known_reads.py, "no distributions"): one
    of the suite's own sys.path entries holds distribution metadata or is not a
    directory (an egg or zip), or its working directory holds a name that one of the
    warm interpreter's relative sys.path entries resolves to."""
    for entry in path_entries:
        if entry.lower().endswith((".egg", ".zip")):
            return f"{entry} on the suite's path may hold distributions"
        try:
            listing = os.listdir(entry)
        except FileNotFoundError:
            continue
        except OSError:
            return f"{entry} on the suite's path is not a directory that can be listed"
        for item in listing:
            if item.lower().endswith(_METADATA_SUFFIXES):
                return f"{entry}/{item}: distribution metadata on the suite's path"
    for relative in relative_entries:
        if os.path.lexists(cwd / relative):
            return f"{cwd / relative}: a relative sys.path entry found in the working directory"
    return None


# Where pytest reads its options from in a rootdir, and the options that change how the
# plugins a warm interpreter preloaded would have been imported (rewritten or not, with
# the pass hook or not).
_PYTEST_CONFIGS = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
_REWRITE_OPTIONS = ("--assert", "enable_assertion_pass_hook")
_MAX_CONFIG_BYTES = 1024 * 1024


def preload_objection(
    env_read: Mapping[str, str | None], env: Mapping[str, str], args: Iterable[str], cwd: Path
) -> str | None:
    """Why a run may not use plugins a warm interpreter preloaded: its environment gives
    a variable their imports read another value, or its options may change how pytest
    would have imported them (assertion rewriting off or with the pass hook). A
    collection, where no test runs, may differ in how plugin asserts would read."""
    for name, seen in sorted(env_read.items()):
        if env.get(name) != seen:
            return f"the suite's environment sets {name}, which a preloaded plugin read at import"
    args = list(args)
    if "--collect-only" in args:
        return None  # the gate's own collection (with --assert=plain): no test runs in it
    places = [" ".join(args), env.get("PYTEST_ADDOPTS", "")]
    configs = _config_texts(cwd)
    if isinstance(configs, str):
        return configs
    places.extend(configs)
    for option in _REWRITE_OPTIONS:
        if any(option in text for text in places):
            return f"the suite's options name {option}: preloaded plugins were imported without it"
    return None


def _config_texts(cwd: Path) -> list[str] | str:
    """The texts of pytest's configuration files in `cwd`, read hostile-safe (the
    branch and its setup steps wrote that directory: a FIFO, a link, a device or a huge
    file there is never opened or followed); or why one that is there cannot be read,
    which sends the run cold (a cold start is always what pytest would do)."""
    texts = []
    try:
        with UntrustedDir(cwd) as worktree:
            for config in _PYTEST_CONFIGS:
                if not os.path.lexists(cwd / config):
                    continue
                text = None
                if worktree.size(config) <= _MAX_CONFIG_BYTES:
                    text = worktree.read_text(config, _MAX_CONFIG_BYTES)
                if text is None:
                    return f"the suite's {config} is not a regular file of at most 1 MiB"
                texts.append(text)
    except OSError as exc:
        return f"the suite's working directory cannot be read: {exc}"
    return texts
