"""Which files make up a repository's test infrastructure, what the trusted run is told
to read (docs/contract.md §14), and what a PASS under trusted or hidden tests needs
besides the deciding run's own evidence. Pure: tree listings and records in, decisions out.

The trusted run takes from the trusted ref every file that decides what "passed" means:
the tests under the contract's target (the whole directory: helpers and `__init__.py`
files change module names and fixtures), every `conftest.py` anywhere, the pytest
configuration pytest would pick for the target, and nothing at the root that would
stand in for pytest itself. The branch's versions of those paths are removed.
"""

from __future__ import annotations

import configparser
import fnmatch
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

from worker.git.committed import Entry
from worker.suite.probe import TestOutcome
from worker.suite.run import SuiteRun
from worker.verdict import from_exit_code, with_evidence

# pytest's own order of configuration files, in each directory it looks in.
CONFIG_NAMES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
_TEST_FILES = ("test_*.py", "*_test.py")
# At the root, on sys.path first: a branch's copy would be imported instead of the real one.
_ROOT_SHADOWS = frozenset(
    {"pytest.py", "py.py", "pytest", "_pytest", "pluggy", "sitecustomize.py", "usercustomize.py"}
)
TRUSTED_CONFIG_STEM = ".testgate-trusted"
MAX_LISTED = 10


def target_dir(target: str) -> str:
    """The target as a directory of the repo ("" for the root); a file's own directory
    is not one (only test files in it are the tests then)."""
    cleaned = target.strip().strip("/")
    return "" if cleaned in ("", ".") else cleaned


def is_test_infra(path: str, target: str, tree_dirs: frozenset[str] = frozenset()) -> bool:
    """Whether `path` is part of the test infrastructure the trusted ref decides."""
    parts = PurePosixPath(path).parts
    name = parts[-1]
    if name == "conftest.py" or parts[0] in _ROOT_SHADOWS:
        return True
    base = target_dir(target)
    if base and base in tree_dirs and path.startswith(base + "/"):
        return True
    inside = not base or path.startswith(base + "/") or path == base
    return inside and any(fnmatch.fnmatchcase(name, p) for p in _TEST_FILES)


def directories(paths: Mapping[str, object]) -> frozenset[str]:
    """Every directory that holds one of `paths`."""
    found: set[str] = set()
    for path in paths:
        found.update(str(p) for p in PurePosixPath(path).parents if str(p) != ".")
    return frozenset(found)


def infra_of(tree: Mapping[str, Entry], target: str) -> dict[str, Entry]:
    dirs = directories(tree)
    return {p: e for p, e in tree.items() if is_test_infra(p, target, dirs)}


def config_candidates(target: str) -> list[str]:
    """Where pytest looks for its configuration, in its order: from the target's
    directory up to the root."""
    base = target_dir(target)
    chain = [base, *(str(p) for p in PurePosixPath(base).parents)] if base else [""]
    dirs = ["" if d == "." else d for d in chain]
    return [f"{d}/{name}" if d else name for d in dirs for name in CONFIG_NAMES]


def holds_pytest_config(path: str, text: str) -> bool:
    """Whether pytest would take `path` (with `text`) as its configuration file."""
    name = PurePosixPath(path).name
    if name in ("pytest.ini", ".pytest.ini"):
        return True
    if name == "pyproject.toml":
        try:
            tool = tomllib.loads(text).get("tool", {})
        except tomllib.TOMLDecodeError:
            return False
        return isinstance(tool, dict) and isinstance(tool.get("pytest"), dict)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return False
    return parser.has_section("pytest" if name == "tox.ini" else "tool:pytest")


def trusted_config_path(config: str | None) -> str:
    """Where the trusted run's copy of the configuration goes: next to the original
    (so its relative paths mean the same), under the gate's name, with a suffix that
    makes pytest read it as the original's kind; an empty ini at the root if none."""
    if config is None:
        return f"{TRUSTED_CONFIG_STEM}.ini"
    path = PurePosixPath(config)
    suffix = path.suffix if path.suffix in (".toml", ".cfg") else ".ini"
    return str(path.with_name(TRUSTED_CONFIG_STEM + suffix))


def pytest_args(config_copy: str) -> tuple[str, ...]:
    """Options that make pytest read only the trusted configuration."""
    rootdir = str(PurePosixPath(config_copy).parent)
    return ("-c", config_copy, f"--rootdir={rootdir}", f"--confcutdir={rootdir}")


def changes_infra(
    base: Mapping[str, Entry], branch: Mapping[str, Entry], target: str, config_paths: list[str]
) -> bool:
    """Whether the branch's own run would load any test file, conftest or configuration
    that differs from the trusted ref's (then the trusted run is a second run)."""
    ours, theirs = infra_of(base, target), infra_of(branch, target)
    if ours != theirs:
        return True
    return any(base.get(p) != branch.get(p) for p in config_paths)


def untrusted_skips(
    outcomes: Iterable[TestOutcome], root: str, trusted: Mapping[str, bytes]
) -> list[str]:
    """The deciding run's skipped or xfailed tests whose skip did not come from the
    trusted files, each as "<id> <what> by <where from>"."""
    return [f"{o.test_id} {o.outcome} by {where}" for o, where in _skipped(outcomes, root, trusted)]


def _skipped(
    outcomes: Iterable[TestOutcome], root: str, trusted: Mapping[str, bytes]
) -> list[tuple[TestOutcome, str]]:
    """A skip raised in a trusted file counts; a mark counts when the test had it at
    collection's end and its file or a conftest on its way names it (code under test
    can add a mark to an item, but cannot make the trusted text mention one)."""
    found = []
    for outcome in outcomes:
        if outcome.outcome not in ("skipped", "xfailed"):
            continue
        where = outcome.origin
        if where == "mark":
            word = b"xfail" if outcome.outcome == "xfailed" else b"skip"
            if not _marked_in(outcome.test_id, word, trusted):
                found.append((outcome, "a mark no trusted file sets"))
            continue
        rel = _relative(where, root)
        if rel is None or rel not in trusted:
            found.append((outcome, rel or where or "unknown code"))
    return found


def hidden_objection(
    suite: SuiteRun, root: str, trusted: Mapping[str, bytes], *, prefix: str, report: str
) -> str | None:
    """Why the hidden tests' run does not allow a PASS, naming each test that did not
    pass by id and the first line of its message (`report` "ids") or only counting them
    ("count"); never more of it. `trusted`: the trusted and hidden files by path. The
    run's own problem (exit status, records, the framework) is said when none is named."""
    problem = _run_problem(suite)
    if problem is None and len(suite.session) == 1:
        problem = framework_objection(suite.session[0].framework, root, trusted)
    bad = [(o, o.message) for o in suite.outcomes if o.outcome == "failed"]
    bad += [(o, f"{o.outcome} by {where}") for o, where in _skipped(suite.outcomes, root, trusted)]
    if not bad:
        return None if problem is None else f"the hidden tests did not pass: {problem}"
    if report == "count":
        return f"{len(bad)} hidden test(s) did not pass"
    shown = _listed(
        f"{o.test_id.removeprefix(prefix)}: {(why.strip().splitlines() or [''])[0][:200]}"
        for o, why in bad
    )
    return f"{len(bad)} hidden test(s) did not pass: {shown}"


def trusted_objections(
    deciding: SuiteRun, own: SuiteRun | None, root: str, trusted: Mapping[str, bytes]
) -> list[str | None]:
    """Each reason the trusted run does not allow a PASS (None where it has none): the
    framework modified, a trusted test module skipped whole or a trusted test skipped
    from outside the trusted files, the branch's own run (`own`, when it was another
    one) not passing. `root` is the worktree it ran in, `trusted` the trusted files."""
    found: list[str | None] = []
    if len(deciding.session) == 1:
        record = deciding.session[0]
        found.append(framework_objection(record.framework, root, trusted))
        found.append(collect_skip_objection(record.collect_skips, root, trusted))
    if skips := untrusted_skips(deciding.outcomes, root, trusted):
        found.append(f"{len(skips)} trusted test(s) did not run to a pass: {_listed(skips)}")
    if own is not None and (problem := _run_problem(own)) is not None:
        found.append(f"the branch's own tests did not pass: {problem}")
    return found


def _run_problem(run: SuiteRun) -> str | None:
    """Why a run's exit status or the gate's records of it fail it, or None."""
    verdict = with_evidence(from_exit_code(run.exit_code), run.evidence_objection())
    return verdict.reason if verdict.result == "FAIL" else None


def _listed(items: Iterable[str]) -> str:
    """The first MAX_LISTED of `items`, and how many more there are."""
    listed = list(items)
    more = len(listed) - MAX_LISTED
    return "; ".join(listed[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _relative(path: str, root: str) -> str | None:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _marked_in(test_id: str, word: bytes, trusted: Mapping[str, bytes]) -> bool:
    test_file = test_id.split("::", 1)[0]
    dirs = [str(p) for p in PurePosixPath(test_file).parents]
    conftests = [("" if d == "." else d + "/") + "conftest.py" for d in dirs]
    return any(word in trusted.get(path, b"") for path in (test_file, *conftests))


def framework_objection(
    changes: Iterable[tuple[str, str]], root: str, trusted: Mapping[str, bytes]
) -> str | None:
    """Why pytest's reporting path is not what the trusted setup installed: a piece of
    it replaced (by anything), or a reporting hook implemented by a file of the worktree
    that is not a trusted file, or by code with no file."""
    for what, where in changes:
        rel = _relative(where, root)
        trusted_file = rel is not None and rel in trusted
        installed = rel is None and where.startswith("/")  # a plugin of the interpreter's
        if what.startswith("pytest_") and (trusted_file or installed):
            continue
        return f"the test framework was modified by {rel or where} ({what})"
    return None


def collect_skip_objection(
    skips: Iterable[tuple[str, str]], root: str, trusted: Mapping[str, bytes]
) -> str | None:
    """A collector (a test module) skipped as a whole by anything but a trusted file:
    its tests were never collected, so they have not passed."""
    bad = []
    for collector, where in skips:
        rel = _relative(where, root) if where.startswith("/") else where
        if rel not in trusted:
            bad.append(f"{collector} by {rel or 'unknown code'}")
    if not bad:
        return None
    return f"{len(bad)} trusted test module(s) were skipped whole: {'; '.join(bad[:10])}"
