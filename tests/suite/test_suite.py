"""Real pytest subprocesses in tmp projects: exit codes, timeouts and the whole-job kill,
the environment allowlist, bounded output."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.fleet import pid_alive
from tests.projects import escaping_daemon_project, project
from worker.containment.cgroup import JobCgroup, open_job_cgroup
from worker.containment.sandbox import Limits, Sandbox, sandbox_environment, warm_interpreter
from worker.containment.warm import WarmPytest
from worker.suite.progress import Progress
from worker.suite.run import SuiteRun, run_suite
from worker.suite.tally import Tally

# Every test here runs twice: pytest started cold, and forked from the warm interpreter.
_started: dict[str, WarmPytest | None] = {"warm": None}


@pytest.fixture(autouse=True, params=["cold", "warm"])
def start(request: pytest.FixtureRequest) -> Iterator[str]:
    _started["warm"] = warm_interpreter() if request.param == "warm" else None
    yield request.param
    _started["warm"] = None


def warm() -> WarmPytest | None:
    return _started["warm"]


def run(
    root: Path,
    tmp_path: Path,
    timeout_s: float = 60,
    python: str = sys.executable,
    tail_bytes: int = 4096,
    limits: Limits | None = None,
) -> SuiteRun:
    sandbox = Sandbox(
        scratch_dir=tmp_path / "scratch",
        cookie=uuid.uuid4().hex,
        kill_grace_s=0.5,
        limits=limits or Limits(),
        warm=warm(),
    )
    sandbox.scratch_dir.mkdir(exist_ok=True)
    return run_suite(
        root, sandbox, python=python, target="tests/", timeout_s=timeout_s, tail_bytes=tail_bytes
    )


def test_a_passing_suite_exits_0_with_the_probes_counts(tmp_path: Path) -> None:
    root = project(
        tmp_path, {"tests/test_a.py": "def test_a():\n    pass\n\ndef test_b():\n    pass\n"}
    )
    result = run(root, tmp_path)
    assert (result.exit_code, result.ran, result.timed_out) == (0, True, False)
    assert result.tally == Tally(tests=2, failing=(), skipped=0)
    assert "2 passed" in result.output_tail
    assert result.command[1:5] == ("-m", "pytest", "tests/", "-q")
    assert not any(arg.startswith("--junitxml") for arg in result.command)


def test_a_failing_suite_exits_1_and_names_the_failing_test(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_a.py": "import pytest\n\n\ndef test_bad():\n    assert 1 == 2\n\n\n"
            "@pytest.fixture\ndef broken():\n    raise RuntimeError('no db')\n\n\n"
            "def test_erroring(broken):\n    pass\n\n\n"
            "@pytest.mark.skip\ndef test_skipped():\n    pass\n\n\n"
            "@pytest.mark.xfail\ndef test_known():\n    assert 0\n"
        },
    )
    result = run(root, tmp_path)
    assert result.exit_code == 1 and result.ran
    assert result.tally == Tally(
        tests=4,
        failing=("tests/test_a.py::test_bad", "tests/test_a.py::test_erroring"),
        skipped=2,
    )
    messages = {o.test_id: o.message for o in result.outcomes}
    assert "assert 1 == 2" in messages["tests/test_a.py::test_bad"]
    assert "no db" in messages["tests/test_a.py::test_erroring"]


def test_under_xdist_each_test_is_recorded_once_and_counted_by_the_controller(
    tmp_path: Path,
) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_a.py": "".join(f"def test_{i}():\n    assert {i} != 3\n" for i in range(8)),
            "pytest.ini": "[pytest]\naddopts = -n 2\n",
        },
    )
    result = run(root, tmp_path)
    assert result.exit_code == 1, result.output_tail
    ids = [o.test_id for o in result.outcomes]
    assert sorted(ids) == sorted(f"tests/test_a.py::test_{i}" for i in range(8))
    assert result.tally == Tally(tests=8, failing=("tests/test_a.py::test_3",), skipped=0)


def test_an_in_process_pytest_run_of_the_suites_own_reaches_none_of_the_gates_records(
    tmp_path: Path,
) -> None:
    # The probe is loaded by the `-p` of the gate's own command line: a nested pytest.main
    # must not get it, or the inner run's three failures would be counted as the suite's.
    inner = "".join(f"def test_{name}():\n    assert 0\n\n" for name in "xyz")
    root = project(
        tmp_path,
        {
            "inner/test_inner.py": inner,
            "tests/test_outer.py": (
                "import os\nimport pytest\n\n\n"
                "def test_runs_pytest_in_process():\n"
                "    here = os.path.dirname(os.path.dirname(__file__))\n"
                "    inner = os.path.join(here, 'inner')\n"
                "    code = pytest.main([inner, '-q', '-p', 'no:cacheprovider', '-s'])\n"
                "    assert code == 1\n"
            ),
        },
    )
    result = run(root, tmp_path)
    assert result.exit_code == 0, result.output_tail
    assert result.tally == Tally(tests=1, failing=(), skipped=0)
    outer = "tests/test_outer.py::test_runs_pytest_in_process"
    assert [o.test_id for o in result.outcomes] == [outer]
    assert result.evidence_objection() is None


def test_no_tests_collected_exits_5(tmp_path: Path) -> None:
    assert run(project(tmp_path, {}), tmp_path).exit_code == 5


def test_a_conftest_that_fails_to_import_is_a_ran_suite_with_exit_4(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/conftest.py": "import no_such_module_here\n",
            "tests/test_a.py": "def test_a():\n    pass\n",
        },
    )
    result = run(root, tmp_path)
    assert result.ran
    assert result.exit_code == 4  # pytest: usage error
    assert "no_such_module_here" in result.output_tail


def test_a_suite_killed_by_a_signal_it_did_not_get_from_us_ran_with_a_negative_code(
    tmp_path: Path,
) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_a.py": "import os, signal\n\n\n"
            "def test_oom():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        },
    )
    result = run(root, tmp_path)
    assert (result.exit_code, result.ran, result.timed_out) == (-9, True, False)


def test_a_hanging_suite_is_killed_with_its_new_session_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    root = project(
        tmp_path,
        {
            "tests/test_hang.py": (
                "import subprocess, time\n\n\n"
                "def test_hang():\n"
                "    child = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
                f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
                "    time.sleep(600)\n"
            )
        },
    )
    started = time.monotonic()
    result = run(root, tmp_path, timeout_s=2)
    assert (result.exit_code, result.timed_out, result.ran) == (None, True, False)
    assert time.monotonic() - started < 30
    assert not pid_alive(int(pid_file.read_text()))


def test_a_double_forked_daemon_is_killed_after_a_passing_run(tmp_path: Path) -> None:
    """Found by the cookie its program inherited from the suite's environment. (A warm
    fork's exec-less daemon shows the warm interpreter's initial environment in /proc:
    that one is the cgroup's or the subreaper's, as a daemon that clears its environment
    is: test_subreaper.py.)"""
    pid_file = tmp_path / "daemon.pid"
    # The pid file appears only once the daemon's own program runs.
    daemon = f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file} && exec sleep 600"
    root = project(
        tmp_path,
        {
            "tests/test_daemon.py": (
                "import os, time\n\n\n"
                "def test_spawns_a_daemon():\n"
                "    if os.fork() == 0:\n"
                "        os.setsid()\n"
                "        if os.fork() == 0:\n"
                f"            os.execv('/bin/sh', ['sh', '-c', {daemon!r}])\n"
                "        os._exit(0)\n"
                "    os.wait()\n"
                f"    while not os.path.exists({str(pid_file)!r}):\n"
                "        time.sleep(0.01)\n"
            )
        },
    )
    result = run(root, tmp_path)
    assert result.exit_code == 0
    assert result.leftover_killed >= 1
    assert not pid_alive(int(pid_file.read_text()))


def test_no_testgate_variable_or_broker_url_reaches_the_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTGATE_BROKER_URL", "redis://secret@127.0.0.1:6379/0")
    monkeypatch.setenv("TESTGATE_TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    root = project(
        tmp_path,
        {
            "tests/test_env.py": (
                "import os\n\n\n"
                "def test_clean():\n"
                "    assert [k for k in os.environ if k.startswith('TESTGATE_')] == []\n"
                "    assert 'AWS_SECRET_ACCESS_KEY' not in os.environ\n"
                "    assert not any('redis://' in v for v in os.environ.values())\n"
            )
        },
    )
    assert run(root, tmp_path).exit_code == 0


def test_the_environment_is_an_allowlist_and_extra_cannot_inject_testgate_keys(
    tmp_path: Path,
) -> None:
    env = sandbox_environment(
        {"PATH": "/bin", "SECRET": "x", "LANG": "C.UTF-8"},
        home=tmp_path / "h",
        tmpdir=tmp_path / "t",
        cookie="c",
        extra={"PYTHONPATH": "src", "TESTGATE_X": "1"},
    )
    assert env["PATH"] == "/bin" and env["LANG"] == "C.UTF-8" and env["PYTHONPATH"] == "src"
    assert "SECRET" not in env and "TESTGATE_X" not in env
    assert env["HOME"] == str(tmp_path / "h")


def test_huge_output_is_streamed_to_disk_and_only_a_bounded_tail_is_kept(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_loud.py": (
                "import sys\n\n\n"
                "def test_loud():\n"
                "    block = 'z' * (1 << 20)\n"
                "    for _ in range(100):\n"
                "        sys.stdout.write(block)\n"
                "    assert False\n"
            )
        },
    )
    result = run(root, tmp_path, tail_bytes=4096)
    assert result.exit_code == 1
    assert result.output_bytes > 100_000_000
    assert len(result.output_tail.encode()) <= 4096
    assert "1 failed" in result.output_tail


def test_a_missing_interpreter_is_a_spawn_error_not_a_run(tmp_path: Path) -> None:
    result = run(project(tmp_path, {}), tmp_path, python=str(tmp_path / "nope"))
    assert result.ran is False and result.exit_code is None
    assert result.spawn_error is not None and "nope" in result.spawn_error


def test_a_missing_worktree_is_a_spawn_error(tmp_path: Path) -> None:
    result = run(tmp_path / "absent", tmp_path)
    assert result.ran is False and result.spawn_error


def test_the_worker_process_itself_is_never_a_target(tmp_path: Path) -> None:
    from worker.containment.proctree import job_processes

    assert os.getpid() not in job_processes("no-such-cookie", os.getpid())


def test_a_memory_hog_fails_its_suite_under_the_memory_limit(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_hog.py": (
                "def test_hog():\n    hog = bytearray(3 * 1024 ** 3)\n    assert hog\n"
            )
        },
    )
    result = run(root, tmp_path, limits=Limits(max_memory_mb=1024))
    assert result.ran and result.exit_code == 1
    assert "MemoryError" in result.output_tail


def test_a_disk_filler_fails_its_suite_under_the_file_size_limit(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_fill.py": (
                "def test_fill(tmp_path):\n"
                "    with open(tmp_path / 'big', 'wb') as out:\n"
                "        out.write(b'x' * (20 * 1024 * 1024))\n"
            )
        },
    )
    result = run(root, tmp_path, limits=Limits(max_file_mb=10))
    assert result.ran and result.exit_code == 1
    assert "File too large" in result.output_tail


def test_no_file_descriptor_of_the_worker_is_inherited(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as a careless library would leave it
    pipe_name = os.readlink(f"/proc/self/fd/{write_end}")
    try:
        root = project(
            tmp_path,
            {
                "tests/test_fds.py": (
                    "import os\n\n\n"
                    "def test_the_workers_pipe_is_not_open_here():\n"
                    "    fds = [f'/proc/self/fd/{fd}' for fd in os.listdir('/proc/self/fd')]\n"
                    "    names = [os.readlink(fd) for fd in fds if os.path.exists(fd)]\n"
                    f"    assert {pipe_name!r} not in names\n"
                )
            },
        )
        assert run(root, tmp_path).exit_code == 0
    finally:
        os.close(read_end)
        os.close(write_end)


def test_progress_is_reported_while_the_suite_runs(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_steps.py": "".join(
                f"def test_{i}():\n    import time\n    time.sleep(0.4)\n    assert {i} != 2\n\n"
                for i in range(5)
            )
        },
    )
    seen: list[Progress] = []
    sandbox = Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex, warm=warm())
    sandbox.scratch_dir.mkdir()
    result = run_suite(
        root, sandbox, python=sys.executable, target="tests/", timeout_s=60, progress=seen.append
    )
    assert result.exit_code == 1
    assert seen[-1] == Progress(total=5, done=5, failed=1)
    assert any(p.done < 5 for p in seen), "nothing was reported before the end"
    assert [p.done for p in seen] == sorted(p.done for p in seen)


NETWORK_PROBE = (
    "import socket\n\n\n"
    "def test_probe():\n"
    "    with socket.socket() as sock:\n"
    "        sock.settimeout(5)\n"
    "        reached = sock.connect_ex(('127.0.0.1', {port})) == 0\n"
    "    assert reached is {expected}\n"
)


@pytest.mark.parametrize(("isolated", "reachable"), [(False, True), (True, False)])
def test_network_isolation_cuts_the_suite_off_from_the_workers_network(
    tmp_path: Path, isolated: bool, reachable: bool
) -> None:
    if isolated and shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        root = project(
            tmp_path, {"tests/test_net.py": NETWORK_PROBE.format(port=port, expected=reachable)}
        )
        sandbox = Sandbox(
            scratch_dir=tmp_path / "scratch",
            cookie=uuid.uuid4().hex,
            isolate_network=isolated,
            warm=warm(),
        )
        sandbox.scratch_dir.mkdir()
        result = run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=60)
    assert result.exit_code == 0, result.output_tail


@pytest.fixture
def job_cgroup() -> Iterator[JobCgroup]:
    group = open_job_cgroup(f"test-{uuid.uuid4().hex[:12]}", max_pids=40)
    if group is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with a pids cgroup: it must be writable there")
        pytest.skip("no writable pids cgroup here (not root, or no delegated cgroup v2)")
    yield group
    group.remove()
    assert not group.path.exists()


def run_in(root: Path, tmp_path: Path, group: JobCgroup, *, cookie: str | None = None) -> SuiteRun:
    sandbox = Sandbox(
        scratch_dir=tmp_path / "scratch",
        cookie=cookie or uuid.uuid4().hex,
        kill_grace_s=0.5,
        cgroup=group,
        warm=warm(),
    )
    sandbox.scratch_dir.mkdir(exist_ok=True)
    return run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=120)


FORK_BOMB = (
    "import os, time\n\n\n"
    "def test_bomb():\n"
    "    while True:\n"  # every child sleeps, so the count only grows until forks fail
    "        if os.fork() == 0:\n"
    "            time.sleep(600)\n"
    "            os._exit(0)\n"
)


def test_a_fork_bomb_hits_the_job_cgroup_and_fails_its_suite_even_as_root(
    tmp_path: Path, job_cgroup: JobCgroup
) -> None:
    root = project(tmp_path, {"tests/test_bomb.py": FORK_BOMB})
    result = run_in(root, tmp_path, job_cgroup)
    assert (result.ran, result.exit_code) == (True, 1)
    assert "BlockingIOError" in result.output_tail
    assert result.leftover_killed >= 30  # the sleeping children, killed after the run
    assert job_cgroup.members() == set()
    [note] = result.limit_notes
    assert "limit of 40 processes" in note and "fork bomb" in note


def test_a_daemon_that_clears_its_environment_escapes_the_cookie_alone(tmp_path: Path) -> None:
    """Why the cgroup exists: without it this daemon outlives the job."""
    root, pid_file = escaping_daemon_project(tmp_path)
    assert run(root, tmp_path).exit_code == 0
    daemon = int(pid_file.read_text())
    try:
        assert pid_alive(daemon)
    finally:
        os.kill(daemon, 9)


def test_a_daemon_that_clears_its_environment_is_still_killed_by_its_cgroup(
    tmp_path: Path, job_cgroup: JobCgroup
) -> None:
    root, pid_file = escaping_daemon_project(tmp_path)
    result = run_in(root, tmp_path, job_cgroup)
    assert result.exit_code == 0
    assert not pid_alive(int(pid_file.read_text()))
    assert result.leftover_killed >= 1 and result.limit_notes == ()


def test_a_redelivery_empties_the_cgroup_a_dead_delivery_left(tmp_path: Path) -> None:
    name = f"test-{uuid.uuid4().hex[:12]}"
    first = open_job_cgroup(name, max_pids=10)
    if first is None:
        pytest.skip("no writable pids cgroup here")
    import subprocess

    orphan = subprocess.Popen([*first.enter_prefix(), "sleep", "600"])
    try:
        while orphan.pid not in first.members():
            time.sleep(0.01)
        again = open_job_cgroup(name, max_pids=10)  # what the next delivery does
        assert again is not None and again.path == first.path
        assert orphan.wait(timeout=10) == -9
        again.remove()
    finally:
        orphan.kill()
        orphan.wait()


def test_progress_counts_a_test_once_however_many_subtests_it_reports(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_sub.py": (
                "def test_all_fine(subtests):\n"
                "    for k in range(5):\n"
                "        with subtests.test(k=k):\n"
                "            assert k >= 0\n\n\n"
                "def test_one_bad(subtests):\n"
                "    for k in range(5):\n"
                "        with subtests.test(k=k):\n"
                "            assert k != 3\n"
            )
        },
    )
    seen: list[Progress] = []
    sandbox = Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex, warm=warm())
    sandbox.scratch_dir.mkdir()
    result = run_suite(
        root, sandbox, python=sys.executable, target="tests/", timeout_s=60, progress=seen.append
    )
    assert result.exit_code == 1
    assert seen[-1] == Progress(total=2, done=2, failed=1)
