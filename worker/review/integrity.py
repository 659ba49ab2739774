"""The test-integrity guard's rules (pure): did the branch make the suite green by
removing or skipping tests that exist on its merge base?

Inputs are plain data gathered elsewhere (collected ids of both sides, the diff, the
sources of the files involved, the branch run's outcomes). The rules:

- A base test id the branch no longer collects is *removed*, unless it *moved*: its
  file was renamed (git's rename detection) and the same id exists under the new
  path, or a test of the same name (and params) with the same code exists elsewhere.
- A removed test is *excused* when the branch deletes a `def`/`class` from a non-test
  source file that the test's module imports, and the test's code uses that name
  (and the name is not defined again anywhere in the branch's non-test sources):
  the code under test went away with its test.
- A base test is *newly skipped* when an added line of a test file or conftest.py
  marks or calls a skip or xfail in its scope (the test, its class, its module; for a
  conftest its directory) and the branch run did not pass or fail it.
- Changes to pytest's configuration (conftest.py, pytest.ini, the pytest sections of
  tox.ini / setup.cfg / pyproject.toml) are evidence: they are listed and explain a
  removed test no diff line of its own explains, but never fail a branch by themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from worker.git.diff import DiffLine, FileChange
from worker.review.pysource import (
    FunctionSource,
    functions,
    imported_modules,
    is_module_file,
    leaf,
    scope_of,
    split_id,
    without_params,
)

MAX_LINES_PER_FINDING = 8
SKIP_MARK = re.compile(
    r"\bmark\.(?:skip|skipif|xfail)\b|\bpytest\.(?:skip|xfail)\s*\(|\bunittest\.skip"
)
FILTER_OPTION = re.compile(r"(?<![\w-])(?:--deselect|--ignore(?:-glob)?|-k)\b|\bcollect_ignore")
_DEFINITION = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)")
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
# Config file name -> the sections pytest reads from it (None: the whole file).
_PYTEST_CONFIG: dict[str, frozenset[str] | None] = {
    "pytest.ini": None,
    "pytest.toml": None,
    ".pytest.toml": None,
    "conftest.py": None,
    "tox.ini": frozenset({"pytest"}),
    "setup.cfg": frozenset({"tool:pytest"}),
    "pyproject.toml": frozenset({"tool.pytest.ini_options", "tool.pytest"}),
}


@dataclass(frozen=True)
class Finding:
    test_id: str
    lines: tuple[DiffLine, ...]  # the diff lines responsible; () when none explains it


@dataclass(frozen=True)
class Moved:
    old_id: str
    new_id: str
    how: str


@dataclass(frozen=True)
class Excused:
    test_id: str
    why: str


@dataclass(frozen=True)
class IntegrityInput:
    base_ids: frozenset[str]
    branch_ids: frozenset[str]
    changes: tuple[FileChange, ...]
    base_sources: Mapping[str, str]  # merge-base text of the files involved, by path
    branch_sources: Mapping[str, str]  # branch text of the files involved, by path
    branch_outcomes: Mapping[str, str] | None = None  # id -> outcome; None: unknown


@dataclass(frozen=True)
class Integrity:
    removed: tuple[Finding, ...] = ()
    skipped: tuple[Finding, ...] = ()
    moved: tuple[Moved, ...] = ()
    excused: tuple[Excused, ...] = ()
    config: tuple[DiffLine, ...] = ()  # changed lines of pytest's configuration
    unattributed: tuple[DiffLine, ...] = ()  # added skip lines outside any collected test
    incomplete: str | None = None  # why the comparison could not be made
    fail_closed: bool = False  # incomplete because of the branch itself: a FAIL
    notes: tuple[str, ...] = ()  # what the reader should know about the comparison

    @property
    def objection(self) -> str | None:
        """Why this fails the branch, or None. Never a reason to pass."""
        found = [
            f"{len(items)} {what}"
            for items, what in ((self.removed, "removed"), (self.skipped, "newly skipped"))
            if items
        ]
        if found:
            ids = [f.test_id for f in (*self.removed, *self.skipped)]
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            return f"the test-integrity guard found {' and '.join(found)} test(s): {shown}"
        if self.incomplete and self.fail_closed:
            return f"the test-integrity guard could not check the branch: {self.incomplete}"
        return None


def check_integrity(given: IntegrityInput) -> Integrity:
    """Compare the branch's tests with its merge base's (see the module's rules)."""
    config = _config_lines(given)
    base, branch = _Sources(given.base_sources), _Sources(given.branch_sources)
    moved = _match_moves(given, base, branch)
    old_moved = {m.old_id for m in moved}
    removed: list[Finding] = []
    excused: list[Excused] = []
    for test_id in sorted(given.base_ids - given.branch_ids - old_moved):
        test = base.function(test_id)
        why = _excuse(test_id, test, given)
        if why is not None:
            excused.append(Excused(test_id, why))
        else:
            removed.append(Finding(test_id, _removal_lines(test_id, test, given, config)))
    skipped, unattributed = _newly_skipped(given, {m.new_id for m in moved})
    return Integrity(
        removed=tuple(removed),
        skipped=skipped,
        moved=moved,
        excused=tuple(excused),
        config=config,
        unattributed=unattributed,
    )


def is_test_file(path: str) -> bool:
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else ""
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
        or any(p in ("tests", "test", "testing") for p in parts[:-1])
    )


def _match_moves(given: IntegrityInput, base: _Sources, branch: _Sources) -> tuple[Moved, ...]:
    renames = {c.old_path: c.new_path for c in given.changes if c.renamed and c.new_path}
    added = set(given.branch_ids - given.base_ids)
    moved: list[Moved] = []
    for old_id in sorted(given.base_ids - given.branch_ids):
        path, key = split_id(old_id)
        renamed = f"{renames[path]}::{key}" if path in renames else None
        if renamed in added:
            added.discard(renamed)
            moved.append(Moved(old_id, renamed, f"{path} renamed to {renames[path]}"))
            continue
        old = base.function(old_id)
        for new_id in sorted(a for a in added if leaf(split_id(a)[1]) == leaf(key)):
            new = branch.function(new_id)
            if old is not None and new is not None and old.code == new.code:
                added.discard(new_id)
                moved.append(Moved(old_id, new_id, "same name and code"))
                break
    return tuple(moved)


def _excuse(test_id: str, test: FunctionSource | None, given: IntegrityInput) -> str | None:
    path, _ = split_id(test_id)
    source = given.base_sources.get(path)
    if source is None or test is None:
        return None
    modules = imported_modules(source, path)
    still_defined = {
        m[1]
        for c in given.changes
        if c.new_path and not is_test_file(c.new_path)
        for line in c.added
        if (m := _DEFINITION.match(line.text))
    }
    for change in given.changes:
        old = change.old_path
        if old is None or not old.endswith(".py") or is_test_file(old):
            continue
        if not any(is_module_file(old, module) for module in modules):
            continue
        for line in change.removed:
            match = _DEFINITION.match(line.text)
            if match and match[1] in test.names and match[1] not in still_defined:
                return f"{old}:{line.line} deletes `{match[1]}`, which the test used"
    return None


def _removal_lines(
    test_id: str, test: FunctionSource | None, given: IntegrityInput, config: tuple[DiffLine, ...]
) -> tuple[DiffLine, ...]:
    path, _ = split_id(test_id)
    lines: list[DiffLine] = []
    for change in given.changes:
        if change.old_path != path:
            continue
        if test is not None:
            lines += [ln for ln in change.removed if test.first <= ln.line <= test.last]
        if not lines and change.new_path is None:
            lines += change.removed[:2]  # the file went away
    return tuple((lines or list(config))[:MAX_LINES_PER_FINDING])


def _newly_skipped(
    given: IntegrityInput, moved_in: set[str]
) -> tuple[tuple[Finding, ...], tuple[DiffLine, ...]]:
    by_test: dict[str, list[DiffLine]] = {}
    unattributed: list[DiffLine] = []
    for change in given.changes:
        path = change.new_path
        if path is None or not path.endswith(".py") or not is_test_file(path):
            continue
        source = given.branch_sources.get(path, "")
        for line in change.added:
            if line.text.lstrip().startswith("#") or not SKIP_MARK.search(line.text):
                continue
            hit = _ids_in_scope(path, scope_of(source, line.line), given.branch_ids)
            if not hit:
                unattributed.append(line)
            for test_id in hit:
                if _was_skipped(test_id, given, moved_in):
                    by_test.setdefault(test_id, []).append(line)
    findings = tuple(
        Finding(test_id, tuple(lines[:MAX_LINES_PER_FINDING]))
        for test_id, lines in sorted(by_test.items())
    )
    return findings, tuple(unattributed)


def _ids_in_scope(path: str, scope: str | None, ids: Iterable[str]) -> list[str]:
    if PurePosixPath(path).name == "conftest.py":
        directory = str(PurePosixPath(path).parent)
        prefix = "" if directory == "." else directory + "/"
        return sorted(i for i in ids if i.startswith(prefix))
    hit: list[str] = []
    for test_id in ids:
        test_path, key = split_id(test_id)
        if test_path != path:
            continue
        bare = without_params(key)
        if not scope or bare == scope or (scope.endswith("::") and bare.startswith(scope)):
            hit.append(test_id)
    return sorted(hit)


def _was_skipped(test_id: str, given: IntegrityInput, moved_in: set[str]) -> bool:
    """An existing test, and the run did not show it passing or failing."""
    if test_id not in given.base_ids and test_id not in moved_in:
        return False
    if given.branch_outcomes is None:
        return True
    return given.branch_outcomes.get(test_id) not in ("passed", "failed")


def _config_lines(given: IntegrityInput) -> tuple[DiffLine, ...]:
    lines: list[DiffLine] = []
    for change in given.changes:
        for side, sources, path in (
            (change.removed, given.base_sources, change.old_path),
            (change.added, given.branch_sources, change.new_path),
        ):
            if path is None or PurePosixPath(path).name not in _PYTEST_CONFIG:
                continue
            sections = _PYTEST_CONFIG[PurePosixPath(path).name]
            source = sources.get(path, "")
            lines += [
                ln for ln in side if sections is None or _section(source, ln.line) in sections
            ]
    return tuple(sorted(lines, key=lambda ln: not FILTER_OPTION.search(ln.text)))


def _section(source: str, line: int) -> str | None:
    current = None
    for text in source.splitlines()[:line]:
        if match := _SECTION.match(text):
            current = match[1].strip()
    return current


class _Sources:
    """Functions of the files of one side, parsed once per file."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = sources
        self._parsed: dict[str, dict[str, FunctionSource]] = {}

    def function(self, test_id: str) -> FunctionSource | None:
        path, key = split_id(test_id)
        if path not in self._parsed:
            self._parsed[path] = functions(self._sources.get(path, ""))
        return self._parsed[path].get(without_params(key))
