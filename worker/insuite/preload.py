"""Which auto-loaded pytest plugins a warm interpreter may import before any job.

A cold `python -m pytest` imports the plugins that installed packages register (entry
point group `pytest11`) with the job's environment, working directory, argv and clock,
and with their distributions' modules marked for assertion rewriting. A warm
interpreter that imported them earlier gave them its own. So a plugin is preloaded only
when its import was seen not to depend on any of that: each one is first imported in a
throwaway fork of the warm interpreter that watches the import, and only one that

- read the environment only by name (the names and the values it saw are reported:
  a run whose environment differs in any of them starts cold),
- did not ask for the working directory, resolve a relative path, open or list a
  relative path, or change directory,
- did not read sys.argv or sys.path (pytest-xdist keeps a copy of sys.path "at
  interpreter startup" for its workers: a warm one would hand them the zygote's),
- did not write the environment (a warm fork is given the job's environment whole),
- did not read the clock (time's time, monotonic and perf_counter, localtime/gmtime/
  ctime/strftime without a time given, datetime's now/today/utcnow),
- did not ask for its process id (a warm fork has another one than the import saw),
- drew no randomness (os.urandom, a Random seeded from the system, uuid4),
- started no thread, wrote nothing to stdout or stderr and raised no warning,
- and imported without an error

(or one whose every such read is a statement audited in worker/insuite/known_reads.py,
which each fork then makes again or whose condition each run is checked against)
is then imported by the warm interpreter itself, through an assertion-rewriting import
hook marked as pytest marks its own (so its modules are rewritten as a cold run
rewrites them, and pytest does not warn that they were imported before it could);
every other one is left to each run, as before. Its forks then hold what a cold start's
import would have made, as far as the inputs watched above go (reads through C code
that bypasses them are not seen: docs/security.md), and pytest's own loading finds the
module imported. What the plugin's hooks do at
configure time and later runs in each fork, with the job's environment, as in a cold
start.

Stdlib and pytest only, run by the zygote (worker/insuite/zygote.py) before it serves
any job.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import linecache
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple

_NO_AUTOLOAD = "PYTEST_DISABLE_PLUGIN_AUTOLOAD"
_REWRITER = "_pytest/assertion/rewrite.py"
_REASON_BYTES = 300


def modules_to_preload() -> list[str]:
    """The installed plugins' modules, then the top-level packages a pytest session with
    those plugins imports besides (a plugin may import its library only in its hooks:
    hypothesis's plugin imports hypothesis when the session ends), in the order they were
    first imported."""
    plugins = installed_plugin_modules()
    if not plugins:
        return []
    return list(dict.fromkeys([*plugins, *_session_imports()]))


def _session_imports() -> list[str]:
    """Top-level non-stdlib modules an empty pytest session imports that this process
    has not, seen in a throwaway fork that runs one (`--collect-only` of an empty dir)."""
    before = set(sys.modules)

    def run() -> object:
        import pytest

        with tempfile.TemporaryDirectory(prefix="testgate-preload-") as empty:
            pytest.main(["-q", "-p", "no:cacheprovider", "--co", "--rootdir", empty, empty])
        stdlib = sys.stdlib_module_names
        return [n for n in sys.modules if n not in before and "." not in n and n not in stdlib]

    found = _in_fork(run)
    return [str(name) for name in found] if isinstance(found, list) else []


def _in_fork(work: Callable[[], object]) -> object:
    """What `work` returns (JSON-able), run in a throwaway fork with its output caught;
    None when it failed."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's answer arrives through the pipe
        os.close(read_end)
        try:
            with _output_caught():
                answer = work()
            os.write(write_end, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return None


def installed_plugin_modules() -> list[str]:
    """The modules of the `pytest11` entry points, in pytest's order, each once; none
    when the warm interpreter's own environment disables autoloading."""
    if os.environ.get(_NO_AUTOLOAD):
        return []
    from importlib.metadata import distributions

    found: dict[str, None] = {}
    for dist in distributions():  # pluggy's own walk: distributions, then entry points
        for entry in dist.entry_points:
            if entry.group == "pytest11":
                found[entry.module] = None
    return list(found)


def _load_known_reads() -> ModuleType:
    """known_reads.py, loaded by path as this module is in the zygote (no package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_reads.py")
    spec = importlib.util.spec_from_file_location("_testgate_known_reads", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"the known reads module was not found at {path}")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]  # no suite sees it
    return module


known_reads = _load_known_reads()


class Covered(NamedTuple):
    """An audited statement (known_reads.py) that an import made its reads in."""

    module: str
    statement: str
    remedy: str


class Watched(NamedTuple):
    reason: str  # why the import could differ from a cold one; "" when it cannot
    env_read: dict[str, str | None]  # the variables it read by name, with the values seen
    covered: list[Covered]  # the statements each fork makes again or each run is checked for


@dataclass
class Preloaded:
    plugins: list[str] = field(default_factory=list)  # imported in the warm interpreter
    refused: dict[str, str] = field(default_factory=dict)  # module -> why not
    env_read: dict[str, str | None] = field(default_factory=dict)  # what their imports read
    # What each fork runs once it is the job's process (known_reads.py), by name.
    again: dict[str, Callable[[], None]] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)  # known_reads remedies each run meets

    def redone(self) -> list[str]:
        return list(self.again)


def preload_plugins(modules: list[str]) -> Preloaded:
    """Import each of `modules` that imports cleanly (checked in a fork first)."""
    done = Preloaded()
    hook = _rewriting_hook()
    sys.meta_path.insert(0, hook)
    try:
        for module in modules:
            if module in sys.modules:
                continue  # already imported by pytest's own import: nothing to decide
            watched = _check_in_fork(module)
            if watched.reason:
                done.refused[module] = watched.reason
                continue
            try:
                __import__(module)
            except Exception as exc:  # noqa: BLE001 - a plugin failing here is left to the run
                failed = f"import failed in the warm interpreter: {exc!r}"
                done.refused[module] = failed[:_REASON_BYTES]
                continue
            done.plugins.append(module)
            done.env_read.update(watched.env_read)
            _keep_remedies(done, watched.covered)
    finally:
        sys.meta_path.remove(hook)  # each run's pytest installs its own
    return done


def _keep_remedies(done: Preloaded, covered: list[Covered]) -> None:
    """What each fork must do again, and each run meet, for the reads `covered`. The
    check's fork built the same Again objects, so building them here cannot fail."""
    for read in covered:
        if read.remedy == known_reads.AGAIN:
            label = f"{read.module}: {read.statement}"
            done.again.setdefault(label, known_reads.Again(read.module, read.statement))
        elif read.remedy in known_reads.FIXES:
            done.again.setdefault(read.remedy, known_reads.FIXES[read.remedy])
        elif read.remedy not in done.conditions:
            done.conditions.append(read.remedy)


def _rewriting_hook() -> Any:
    """pytest's assertion-rewriting import hook, with exactly the names a cold run's
    pytest marks for rewriting (the modules of every distribution with a pytest11
    entry point: pytest's own function does the marking), and the defaults of a config
    (enable_assertion_pass_hook off: a run whose configuration may turn it on, or turn
    rewriting off, starts cold; worker/containment/warm_rules.py)."""
    from types import SimpleNamespace

    from _pytest.assertion import AssertionState
    from _pytest.assertion.rewrite import AssertionRewritingHook, assertstate_key
    from _pytest.config import Config
    from _pytest.stash import Stash

    class _Trace:
        root = SimpleNamespace(get=lambda *_: lambda *_a: None)

    config: Any = SimpleNamespace(stash=Stash(), trace=_Trace())

    defaults = {"python_files": ["test_*.py", "*_test.py"], "enable_assertion_pass_hook": False}

    def getini(name: str) -> Any:
        return defaults[name]  # pytest's defaults; a KeyError is a pytest this does not know

    config.getini = getini
    config.stash[assertstate_key] = AssertionState(config, "rewrite")
    hook = AssertionRewritingHook(config)
    stand_in = SimpleNamespace(pluginmanager=SimpleNamespace())
    Config._mark_plugins_for_rewrite(stand_in, hook, disable_autoload=False)  # type: ignore[arg-type]
    return hook


def _check_in_fork(module: str) -> Watched:
    """Why importing `module` could differ from a cold start's import ("" if it cannot),
    the environment variables it read, with the values it saw (None: unset), and the
    audited statements its reads were made in."""

    def check() -> object:
        try:
            watched = watched_import(module)
        except BaseException as exc:  # noqa: BLE001 - anything at all is a refusal
            watched = Watched(f"the watched import failed: {exc!r}", {}, [])
        return {
            "reason": watched.reason[:_REASON_BYTES],
            "env_read": watched.env_read,
            "covered": watched.covered,
        }

    answer = _in_fork(check)
    try:
        assert isinstance(answer, dict)  # noqa: S101 - narrowed for the type checker
        return Watched(
            str(answer["reason"]),
            {str(k): v for k, v in dict(answer["env_read"]).items()},
            [Covered(*map(str, read)) for read in answer["covered"]],
        )
    except (AssertionError, KeyError, TypeError, ValueError):
        return Watched("the watched import ended without an answer", {}, [])


class Read(NamedTuple):
    """Something an import did that a warm start would see differently."""

    what: str  # the refusal's words
    kind: str  # cwd, clock, sys.path, pid, random or argv; "" for what no fork can redo
    module: str  # the module whose top-level statement made it
    filename: str
    line: int


def watched_import(module: str) -> Watched:
    """Import `module` in this (throwaway) process while watching what it reads: the
    first thing it did that a warm start would see differently and that no audited
    statement covers (or ""), the environment variables it read with their values, and
    the audited statements that made the others. The process is left changed: call it
    in a fork only."""
    seen: list[Read] = []
    env_read: dict[str, str | None] = {}
    by_name: list[Read] = []
    # Garbage made before the import would otherwise be collected while it runs, and a
    # finalizer's reads (a redis-py pool's os.getpid, say) counted as the import's.
    gc.collect()
    with _output_caught() as output, _watching(seen, env_read, by_name):
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                __import__(module)
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                return Watched(f"its import raised {exc!r}", dict(env_read), [])
        # The watch stays on in this process: what is decided below is not the import's.
        reads, env_read, by_name = list(seen), dict(env_read), list(by_name)
    reason, covered = _uncovered(reads)
    if not reason:
        fixed = _fixed_variables(by_name)
        covered.extend(read for read in fixed.values() if read not in covered)
        env_read = {name: value for name, value in env_read.items() if name not in fixed}
    if not reason and caught:
        reason = f"its import warned: {caught[0].message}"
    if not reason and output():
        reason = "its import wrote to stdout or stderr"
    if not reason and _threads() > 1:
        reason = "its import started a thread"
    return Watched(reason, env_read, [] if reason else covered)


def _fixed_variables(reads: list[Read]) -> dict[str, Covered]:
    """The variables every read of which (by name) an audited statement made that a fix
    computes again from the job's environment, with that statement."""
    fixed: dict[str, Covered] = {}
    for name in dict.fromkeys(read.kind.removeprefix("env:") for read in reads):
        found = None
        for read in (r for r in reads if r.kind == f"env:{name}"):
            statement, entry = _audited(read)
            if entry is None or entry.remedy not in known_reads.FIXES:
                found = None
                break
            found = Covered(read.module, statement, entry.remedy)
        if found is not None:
            fixed[name] = found
    return fixed


def _audited(read: Read) -> tuple[str, Any]:
    """The text of the statement that made `read`, and the known_reads entry that covers
    it (None: none does, or it is a read no fork can make again)."""
    statement = linecache.getline(read.filename, read.line).strip()
    entry = known_reads.covering(read.kind, read.module, statement) if read.kind else None
    return statement, entry


def _uncovered(reads: list[Read]) -> tuple[str, list[Covered]]:
    """The first read no audited statement covers ("" if none), and the statements
    that cover the others, each once, in the order of their reads. A statement whose
    remedy is to be made again must be one the fork can make again."""
    covered: list[Covered] = []
    for read in reads:
        statement, entry = _audited(read)
        if entry is None:
            return read.what, []
        found = Covered(read.module, statement, entry.remedy)
        if found in covered:
            continue
        if entry.remedy == known_reads.AGAIN:
            try:
                known_reads.Again(read.module, statement)
            except (KeyError, ValueError, SyntaxError) as exc:
                return f"{read.what}, in a statement that cannot be made again: {exc!r}", []
        covered.append(found)
    return "", covered


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


@contextlib.contextmanager
def _output_caught() -> Iterator[Callable[[], bool]]:
    """fds 1 and 2 into a temporary file for the block; whether anything was written."""
    sink = tempfile.TemporaryFile()  # noqa: SIM115 - the throwaway process keeps it
    for fd in (1, 2):
        os.dup2(sink.fileno(), fd)
    # Python's own streams too, wherever they pointed (a capturing pytest, say).
    sys.stdout = open(sink.fileno(), "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(sink.fileno(), "w", closefd=False)  # noqa: SIM115

    def written() -> bool:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        return os.fstat(sink.fileno()).st_size > 0

    yield written


@contextlib.contextmanager
def _watching(
    seen: list[Read], env_read: dict[str, str | None], by_name: list[Read]
) -> Iterator[None]:
    """Record in `seen` every read of what differs between a warm and a cold import,
    with its kind and the top-level statement of the module that made it; in `env_read`
    each variable read by name with the value it gave, and in `by_name` where each such
    read was made (the statement that asked, outside os and os.path)."""
    import datetime
    import random
    import time

    def note(what: str, kind: str = "") -> None:
        # pytest's own rewriting of the plugin's modules names its pyc files by pid:
        # that is the same in a cold run, not the plugin's doing.
        if not sys._getframe(2).f_code.co_filename.endswith(_REWRITER):
            seen.append(Read(what, kind, *_statement_site()))

    # Replaced, not cleared (B003): the watched import sees the same values, read through it.
    def named(name: str) -> None:
        by_name.append(Read(f"its import read {name}", f"env:{name}", *_asking_site()))

    os.environ = _RecordingEnviron(os.environ, note, env_read, named)  # type: ignore[assignment]  # noqa: B003
    os.environb = _RecordingEnviron(os.environb, note, {})  # type: ignore[assignment]
    sys.argv = _RecordingList(sys.argv, "sys.argv", note)
    sys.path = _RecordingList(sys.path, "sys.path", note)
    _record_calls(os, ("getcwd", "getcwdb"), note, kind="cwd")
    _record_calls(os, ("urandom",), note, kind="random")
    _record_calls(os, ("getpid",), note, kind="pid")
    _record_calls(os, ("chdir", "fchdir", "getppid", "putenv", "unsetenv"), note)
    clocks = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns")
    _record_calls(time, clocks, note, kind="clock")
    _record_calls(time, ("localtime", "gmtime", "ctime"), note, only_without_args=1, kind="clock")
    _record_calls(time, ("strftime",), note, only_without_args=2, kind="clock")
    _record_system_seeding(random.Random, note)
    datetime.datetime = _recording_datetime(datetime.datetime, note)  # type: ignore[misc]
    datetime.date = _recording_datetime(datetime.date, note)  # type: ignore[misc]

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event in ("open", "os.listdir", "os.scandir") and args:
            path = args[0]
            if path is None or (isinstance(path, (str, bytes)) and not _absolute(path)):
                note(f"its import used the working directory ({event} {path!r})", "cwd")

    sys.addaudithook(audit)  # cannot be removed: one more reason to run in a fork
    yield


def _statement_site() -> tuple[str, str, int]:
    """The module, file and line of the innermost top-level statement being run (the
    statement of an importing module that made the read, through whatever it called).
    Its text is read only after the watch: reading a file here would be watched too."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and code.co_filename != __file__:
            return str(frame.f_globals.get("__name__", "")), code.co_filename, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return "", "", 0


# The modules through which code reads the environment without being the one that asks.
_ENVIRON_PLUMBING = frozenset(
    {"<frozen os>", "<frozen posixpath>", "<frozen genericpath>", __file__, os.__file__}
)


def _asking_site() -> tuple[str, str, int]:
    """The module, file and line of the statement that asked for a variable."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in _ENVIRON_PLUMBING:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "", "", 0
    return str(frame.f_globals.get("__name__", "")), frame.f_code.co_filename, frame.f_lineno


def _absolute(path: str | bytes) -> bool:
    return path.startswith("/") if isinstance(path, str) else path.startswith(b"/")


class _RecordingEnviron(dict):  # type: ignore[type-arg]
    """A copy of the environment that records every read by name with the value it
    gave, and notes a read of all of it or any write (it is what os.environ is for the
    watched import)."""

    def __init__(
        self,
        real: Any,
        note: Callable[..., None],
        reads: dict[Any, Any],
        named: Callable[[str], None] = lambda _name: None,
    ) -> None:
        super().__init__(real)
        self._note = note
        self._reads = reads
        self._named = named

    def _read(self, what: object) -> None:
        if what == "all of it":
            self._note("its import read the whole environment")
        elif isinstance(what, str):
            self._reads[what] = super().get(what)
            self._named(what)
        else:
            self._note(f"its import read the environment ({what!r})")

    def __getitem__(self, key: Any) -> Any:
        self._read(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._read(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._read(key)
        return super().__contains__(key)

    def __iter__(self) -> Iterator[Any]:
        self._read("all of it")
        return super().__iter__()

    def keys(self) -> Any:
        self._read("all of it")
        return super().keys()

    def items(self) -> Any:
        self._read("all of it")
        return super().items()

    def values(self) -> Any:
        self._read("all of it")
        return super().values()

    def copy(self) -> dict[Any, Any]:
        self._read("all of it")
        return dict(super().items())

    def _write(self, key: object) -> None:
        self._note(f"its import wrote the environment ({key!r})")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._write(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._write(key)
        super().__delitem__(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._write(key)
        return super().setdefault(key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        self._write(key)
        return super().pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._write("several keys")
        super().update(*args, **kwargs)

    def clear(self) -> None:
        self._write("all of it")
        super().clear()


class _RecordingList(list):  # type: ignore[type-arg]
    """sys.argv or sys.path for the watched import: a read by its code is noted (the
    import system's own walk of sys.path, frozen code, is not the module's doing)."""

    def __init__(self, real: list[str], what: str, note: Callable[..., None]) -> None:
        super().__init__(real)
        self._what = what
        self._note = note

    def _read(self) -> None:
        if not sys._getframe(2).f_code.co_filename.startswith("<frozen importlib"):
            self._note(f"its import read {self._what}", self._what)

    def __getitem__(self, index: Any) -> Any:
        self._read()
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[str]:
        self._read()
        return super().__iter__()

    def __len__(self) -> int:
        self._read()
        return super().__len__()

    def __contains__(self, item: object) -> bool:
        self._read()
        return super().__contains__(item)


def _record_system_seeding(cls: Any, note: Callable[..., None]) -> None:
    """A Random seeded from the system (no seed given) would be the same in every fork."""
    original = cls.seed

    def seed(self: Any, a: Any = None, *args: Any, **kwargs: Any) -> Any:
        if a is None:
            note("its import seeded a Random from the system", "random")
        return original(self, a, *args, **kwargs)

    cls.seed = seed


def _record_calls(
    owner: Any,
    names: tuple[str, ...],
    note: Callable[..., None],
    only_without_args: int = 0,
    kind: str = "",
) -> None:
    """Wrap owner.<name> so that calling it is noted (with `only_without_args` = n: only
    calls with fewer than n positional arguments, the ones that read the clock)."""
    for name in names:
        original = getattr(owner, name)
        label = f"{getattr(owner, '__name__', owner)}.{name}"

        def wrapper(*args: Any, _original: Any = original, _label: str = label) -> Any:
            if not only_without_args or len(args) < only_without_args:
                note(f"its import called {_label}", kind)
            return _original(*args)

        setattr(owner, name, wrapper)


def _recording_datetime(cls: Any, note: Callable[..., None]) -> Any:
    def reads_clock(name: str) -> Any:
        original = getattr(cls, name)

        def method(klass: Any, *args: Any, **kwargs: Any) -> Any:
            note(f"its import called {cls.__name__}.{name}", "clock")
            return original(*args, **kwargs)

        return classmethod(method)

    methods = {n: reads_clock(n) for n in ("now", "today", "utcnow") if hasattr(cls, n)}
    return type(cls.__name__, (cls,), methods)
