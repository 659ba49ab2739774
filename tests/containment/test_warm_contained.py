"""Warm starts inside the sandbox: a suite forked from the contained warm interpreter
is what a cold contained start would be, for the worker's interpreter and a venv's;
nothing of one job reaches the next; a suite that attacks its warm interpreter fails
and the next job is unaffected. Real bwrap, real pytest runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from testkit.fleet import pid_alive, processes_running
from tests.contained import run_contained, settings, warm_for, workdir
from tests.containment.warmdump import RUN_DIR, STATE_DUMP, per_run_dirs_named_alike
from tests.projects import project
from worker.containment import warm as warm_module
from worker.containment.bwrap import SuiteView, interpreter_paths
from worker.containment.cgroup import open_job_cgroup, remove_stale_cgroups
from worker.containment.limits import Limits
from worker.containment.sandbox import Sandbox
from worker.containment.slot import process_slot, slot_path
from worker.containment.view import contained_warm
from worker.containment.warm import may_start, stop_warm_pytest
from worker.insuite import HERE as INSUITE_DIR
from worker.suite.reruns import collect_ids, rerun_ids
from worker.suite.run import SuiteRun, run_suite
from worker.suite.venvs import in_venv
from worker.verdict import from_exit_code, with_evidence

PASSING = {"tests/test_a.py": "def test_a():\n    assert 1\n"}


def verdict(run: SuiteRun) -> tuple[str, str]:
    decided = with_evidence(from_exit_code(run.exit_code), run.evidence_objection())
    return decided.result, decided.outcome


def dump(root: Path, mode: str, python: str = sys.executable, **kw: Any) -> dict[str, Any]:
    out = slot_path(workdir()) / "suite" / "out" / "dump.json"
    found: dict[str, Any] = {}

    def read(_slot: object) -> None:
        found.update(json.loads(out.read_text()))

    result = run_contained(
        root,
        mode=mode,
        python=python,
        extra_env={"DUMP_TO": str(out), **kw.pop("extra_env", {})},
        after=read,
        **kw,
    )
    assert result.exit_code == 0, result.output_tail
    return found


def assert_alike(warm: dict[str, Any], cold: dict[str, Any]) -> None:
    assert (cold.pop("ppid"), warm.pop("ppid")) == (1, 2)  # bwrap's init; the zygote
    # The one difference by design: what the warm interpreter held before the fork is
    # frozen (zygote._freeze_what_is_preloaded); the suite's own objects are not.
    assert cold.pop("gc_frozen") == 0 and warm.pop("gc_frozen") > 1000
    warm_env, cold_env = warm.pop("env"), cold.pop("env")
    assert warm_env.pop("GATE_DUMP_AT") != cold_env.pop("GATE_DUMP_AT")  # a time: per run
    assert per_run_dirs_named_alike(warm_env) == per_run_dirs_named_alike(cold_env)
    warm_argv, cold_argv = warm.pop("argv"), cold.pop("argv")
    assert [RUN_DIR.sub("/run-*/", a) for a in warm_argv] == [
        RUN_DIR.sub("/run-*/", a) for a in cold_argv
    ]
    # /proc shows a fork the initial environment of the process it was forked from.
    assert cold.pop("cookie_in_proc") and not warm.pop("cookie_in_proc")
    assert warm == cold
    # Like a cold contained start, it shares the session of the sandbox's init.
    assert not warm["own_session"] and warm["fsize"] == 64 * 1024**2


def test_a_contained_warm_run_is_indistinguishable_from_a_contained_cold_one(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, {"tests/test_dump.py": STATE_DUMP})
    same: dict[str, Any] = {"cookie": "c0ffee" * 5, "limits": Limits(max_file_mb=64)}
    cold = dump(root, "cold", **same)
    warm = dump(root, "warm", **same)
    assert_alike(warm, cold)


def test_a_contained_warm_run_in_a_venv_is_indistinguishable_from_a_cold_one(
    tmp_path: Path,
) -> None:
    venv = workdir() / "venvs" / f"v-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    python = str(venv / "bin" / "python")
    root = project(tmp_path, {"tests/test_dump.py": STATE_DUMP})
    same: dict[str, Any] = {
        "cookie": "c0ffee" * 5,
        "limits": Limits(max_file_mb=64),
        "adjust": lambda sandbox: in_venv(sandbox, venv),
    }
    cold = dump(root, "cold", python=python, **same)
    warm = dump(root, "warm", python=python, **same)
    assert cold["env"]["VIRTUAL_ENV"] == str(venv)
    assert any(p.startswith(str(venv)) for p in warm["path"])  # the venv's site-packages
    assert_alike(warm, cold)


def test_a_suite_that_kills_its_contained_warm_interpreter_fails_and_the_next_passes(
    tmp_path: Path,
) -> None:
    killer = project(
        tmp_path / "k",
        {
            "tests/test_kill.py": (
                "import os, signal, time\n\n\n"
                "def test_kills_the_zygote():\n"
                "    os.kill(os.getppid(), signal.SIGKILL)\n"
                "    time.sleep(600)\n"
            )
        },
    )
    result = run_contained(killer, mode="warm")
    assert (result.started, result.ran, result.spawn_error) == (True, True, None)
    assert verdict(result) == ("FAIL", "code-fail")
    honest = project(tmp_path / "h", {"tests/test_dump.py": STATE_DUMP})
    assert dump(honest, "warm")["ppid"] == 2  # a new warm interpreter, and it is used


# Read-only in every sandbox: its root, /dev, /var and the directories masking /etc's
# owner-only ones.
READ_ONLY = """
ETC = [os.path.join("/etc", d) for d in os.listdir("/etc")]
READ_ONLY = ["/", "/dev", "/var", "/etc", *(d for d in ETC if os.path.isdir(d))]
"""

DIRTY = (
    """\
import ctypes, os, stat, subprocess, time
"""
    + READ_ONLY
    + """

def test_leaves_everything_it_can():
    for place in READ_ONLY:
        try:
            open(os.path.join(place, "left-by-a"), "w").write("a")
        except OSError:
            pass
    for place in ("/tmp", "/var/tmp", "/dev/shm", os.environ["HOME"], os.environ["TMPDIR"]):
        open(os.path.join(place, "left-by-a"), "w").write("a")
    os.makedirs("/tmp/locked/deeper")
    os.chmod("/tmp/locked/deeper", 0)
    os.chmod("/tmp/locked", 0)
    libc = ctypes.CDLL(None)
    assert libc.shmget(0x5EC2E7, 4096, 0o1600) >= 0  # IPC_CREAT | 0600
    if os.fork() == 0:  # a daemon: new session, re-parented away, no environment
        os.setsid()
        if os.fork() == 0:
            os.execve("/bin/sleep", ["sleep", "{marker}"], {{}})
        os._exit(0)
    os.wait()
    time.sleep(0.3)
"""
)

CLEAN = (
    """\
import os
"""
    + READ_ONLY
    + """

def test_sees_nothing_of_job_a():
    places = ("/tmp", "/var/tmp", "/dev/shm", os.environ["HOME"], os.environ["TMPDIR"])
    for place in (*places, *READ_ONLY):
        assert not os.path.exists(os.path.join(place, "left-by-a")), place
    assert not os.path.lexists("/tmp/locked")
    assert open("/proc/sysvipc/shm").read().splitlines()[1:] == []
    others = {int(p) for p in os.listdir("/proc") if p.isdigit()} - {1, 2, os.getpid()}
    cmdlines = [open(f"/proc/{p}/cmdline", "rb").read() for p in others]
    assert not any(b"sleep" in c for c in cmdlines), cmdlines
"""
)


def test_nothing_of_one_job_is_seen_by_the_next(tmp_path: Path) -> None:
    marker = f"600.{uuid.uuid4().int % 10**9}"
    dirty = project(tmp_path / "a", {"tests/test_a.py": DIRTY.format(marker=marker)})
    first = run_contained(dirty, mode="warm")
    assert verdict(first) == ("PASS", "code-pass"), first.output_tail
    assert processes_running(["sleep", marker]) == []  # the daemon died with the run
    assert first.leftover_killed >= 1
    clean = project(tmp_path / "b", {"tests/test_b.py": CLEAN})
    second = run_contained(clean, mode="warm", after=lambda slot: None)
    assert verdict(second) == ("PASS", "code-pass"), second.output_tail
    assert not any(slot_path(workdir()).iterdir())  # the slot is emptied after each job


def test_the_suite_cannot_read_the_zygotes_descriptors_or_trace_it(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_zygote.py": (
                "import os, pytest\n\n\n"
                "def test_the_zygote_is_closed_to_the_suite():\n"
                "    assert os.getppid() == 2\n"
                "    for fd in os.listdir('/proc/2/fd'):  # numbers only, nothing to open\n"
                "        with pytest.raises(OSError):\n"
                "            os.readlink(f'/proc/2/fd/{fd}')\n"
                "        with pytest.raises(OSError):\n"
                "            os.open(f'/proc/2/fd/{fd}', os.O_RDONLY)\n"
                "    with pytest.raises(OSError):\n"
                "        open('/proc/2/environ', 'rb').read()\n"
                "    with pytest.raises(OSError):\n"
                "        open('/proc/2/mem', 'rb')\n"
            )
        },
    )
    result = run_contained(root, mode="warm")
    assert verdict(result) == ("PASS", "code-pass"), result.output_tail


FORK_BOMB = (
    "import os, time\n\n\n"
    "def test_bomb():\n"
    "    while True:\n"
    "        if os.fork() == 0:\n"
    "            time.sleep(600)\n"
    "            os._exit(0)\n"
)


def test_a_fork_bomb_in_a_contained_warm_run_fails_and_the_next_job_passes(
    tmp_path: Path,
) -> None:
    probe = open_job_cgroup(f"probe-{uuid.uuid4().hex[:8]}", 10)
    if probe is None:
        pytest.skip("no writable pids cgroup here")
    probe.remove()
    stop_warm_pytest()  # the next contained warm interpreter is made with this limit
    limited = {"suite_max_pids": 40}
    try:
        bomb = project(tmp_path / "bomb", {"tests/test_bomb.py": FORK_BOMB})
        result = run_contained(bomb, mode="warm", settings_kw=limited)
        assert (result.ran, result.exit_code) == (True, 1), result.output_tail
        assert "BlockingIOError" in result.output_tail
        assert result.leftover_killed >= 30
        [note] = result.limit_notes
        assert "limit of 40 processes" in note
        honest = project(tmp_path / "honest", {"tests/test_dump.py": STATE_DUMP})
        assert dump(honest, "warm", settings_kw=limited)["ppid"] == 2
    finally:
        stop_warm_pytest()


def test_a_full_pool_runs_a_new_view_cold_until_its_least_used_one_idles() -> None:
    assert may_start([], 0, 4, 8)
    assert may_start([1, 2, 3], 4, 4, 8)
    # Five repositories in turn: the fifth runs cold, none of the four is restarted.
    assert not may_start([1, 2, 3, 4], 5, 4, 8)
    assert not may_start([1, 2, 3, 4], 9, 4, 8)
    assert may_start([1, 2, 3, 4], 10, 4, 8)  # the first idled for more than 8 requests


def test_more_views_than_kept_take_turns_without_restarting_one_per_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(warm_module, "MAX_CONTAINED", 1)
    monkeypatch.setattr(warm_module, "CONTAINED_IDLE_USES", 2)
    slot = process_slot(workdir())
    assert slot is not None
    first, second = SuiteView(writable=()), SuiteView(writable=(), network=True)
    try:
        kept = contained_warm(settings(), first, sys.executable, slot)
        assert kept is not None
        for _ in range(2):
            assert contained_warm(settings(), second, sys.executable, slot) is None
            assert contained_warm(settings(), first, sys.executable, slot) is kept
        for _ in range(2):  # `first` idle for up to CONTAINED_IDLE_USES requests: kept
            assert contained_warm(settings(), second, sys.executable, slot) is None
        assert kept.alive()
        # Idle for more: it makes way.
        other = contained_warm(settings(), second, sys.executable, slot)
        assert other is not None and other.alive() and not kept.alive()
    finally:
        stop_warm_pytest()


def test_a_networked_contract_gets_a_warm_interpreter_of_its_own(tmp_path: Path) -> None:
    slot = process_slot(workdir())
    assert slot is not None
    stop_warm_pytest()  # both kinds alive at once: room for two in the pool
    isolated = warm_for(SuiteView(writable=()), sys.executable, slot)
    networked = warm_for(SuiteView(writable=(), network=True), sys.executable, slot)
    assert isolated is not networked and isolated.jail and networked.jail
    assert (isolated.jail.network, networked.jail.network) == (False, True)
    assert pid_alive(isolated.process_pid) and pid_alive(networked.process_pid)
    # A run whose view differs in network is refused by the other.
    assert networked.jail.refusal(SuiteView(writable=()), ()) is not None


SWAP = """\
import os


def test_swaps_the_slot_for_links():
    cwd, home = os.getcwd(), os.environ["HOME"]
    suite = os.path.dirname(home)
    os.rename(cwd, cwd + "-moved")
    os.symlink({victim!r}, cwd)
    for name in ("home", "tmp", "out"):
        os.rename(os.path.join(suite, name), os.path.join(suite, name + "-moved"))
        os.symlink({victim!r}, os.path.join(suite, name))
"""


def test_links_a_warm_run_leaves_in_the_slot_never_become_a_later_runs_binds(
    tmp_path: Path,
) -> None:
    """A warm contained run can write its whole slot; a later (cold) run of the same job
    must neither bind a link's target writable nor write through it."""
    victim = workdir() / f"victim-{uuid.uuid4().hex[:8]}"
    victim.mkdir()
    attacker = project(tmp_path, {"tests/test_swap.py": SWAP.format(victim=str(victim))})
    later: list[SuiteRun] = []

    def run_cold_in_the_same_slot(slot: Any) -> None:
        sandbox = Sandbox(
            scratch_dir=tmp_path / "scratch",
            cookie=uuid.uuid4().hex,
            view=SuiteView(writable=(), readable=(INSUITE_DIR, *interpreter_paths(sys.executable))),
            suite_dir=slot.suite,
        )
        sandbox.scratch_dir.mkdir()
        later.append(
            run_suite(slot.src, sandbox, python=sys.executable, target="tests/", timeout_s=60)
        )
        for name in ("home", "tmp", "out"):
            assert not (slot.suite / name).is_symlink()

    first = run_contained(attacker, mode="warm", after=run_cold_in_the_same_slot)
    assert first.ran  # (its own JUnit XML then had nowhere to go: a FAIL, its doing)
    [second] = later
    assert not second.ran and second.spawn_error and "no longer a directory" in second.spawn_error
    assert list(victim.iterdir()) == []


def test_a_hanging_contained_warm_suite_is_killed_and_the_next_one_runs_warm(
    tmp_path: Path,
) -> None:
    hanging = project(
        tmp_path / "hang",
        {"tests/test_hang.py": "import time\n\n\ndef test_hang():\n    time.sleep(600)\n"},
    )
    hung = run_contained(hanging, mode="warm", timeout_s=3)
    assert hung.timed_out and hung.exit_code is None and not hung.ran
    honest = project(tmp_path / "next", {"tests/test_dump.py": STATE_DUMP})
    assert dump(honest, "warm")["ppid"] == 2


def test_collections_and_re_runs_of_a_contained_job_fork_warm_too(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_a.py": "def test_a():\n    pass\n"})
    found: list[Any] = []

    def collect_and_rerun(slot: Any) -> None:
        view = SuiteView(writable=(), readable=(INSUITE_DIR, *interpreter_paths(sys.executable)))
        warm = warm_for(view, sys.executable, slot)
        sandbox = Sandbox(
            scratch_dir=tmp_path / "scratch",
            cookie=uuid.uuid4().hex,
            view=view,
            suite_dir=slot.suite,
            warm=warm,
        )
        sandbox.scratch_dir.mkdir()
        before = warm.forks
        kw: dict[str, Any] = {"python": sys.executable, "target": "tests/", "timeout_s": 60}
        found.append(collect_ids(slot.src, sandbox, label="t", **kw).ids)
        found.append(rerun_ids(slot.src, sandbox, ids={"tests/test_a.py::test_a"}, label="t", **kw))
        found.append(warm.forks - before)

    run_contained(root, mode="warm", after=collect_and_rerun)
    assert found == [
        frozenset({"tests/test_a.py::test_a"}),
        {"tests/test_a.py::test_a": "passed"},
        2,
    ]


def test_the_cgroup_of_a_killed_pool_processs_warm_interpreter_is_removed_later() -> None:
    stale = open_job_cgroup("warm-p999999999-dead", 10)  # empty: removed
    if stale is None:
        pytest.skip("no writable pids cgroup here")
    mine = open_job_cgroup(f"warm-p{os.getpid()}-alive", 10)  # has a member: kept
    assert mine is not None
    sleeper = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$0"; exec sleep 60', mine.procs_file])
    while not mine.members():
        time.sleep(0.01)
    try:
        remove_stale_cgroups("warm-p", lambda name: "999999999" in name or "alive" in name)
        assert not stale.path.exists() and mine.path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        stale.remove()
        mine.remove()
