"""The warm pytest interpreter: a suite forked from it must be indistinguishable from a
cold `python -m pytest`, and whatever could make them differ runs cold. (Every test of
tests/suite/test_suite.py also runs both ways.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from testkit.fleet import ROOT, pid_alive
from tests.containment.warmdump import RUN_DIR, STATE_DUMP, per_run_dirs_named_alike
from tests.projects import project
from worker.containment.cgroup import JobCgroup
from worker.containment.sandbox import Limits, Sandbox, warm_interpreter
from worker.containment.warm_rules import (
    shadowing_module,
    startup_environment,
    suite_path_prefix,
)
from worker.suite.run import SuiteRun, run_suite
from worker.verdict import from_exit_code, with_evidence


def run(root: Path, tmp_path: Path, *, warm: bool, timeout_s: float = 60, **kw: Any) -> SuiteRun:
    sandbox = Sandbox(
        scratch_dir=tmp_path / "scratch",
        cookie=kw.pop("cookie", uuid.uuid4().hex),
        kill_grace_s=0.5,
        warm=warm_interpreter() if warm else None,
        **kw,
    )
    sandbox.scratch_dir.mkdir(exist_ok=True)
    return run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=timeout_s)


def dump(root: Path, tmp_path: Path, *, warm: bool, **kw: Any) -> dict[str, Any]:
    out = tmp_path / "dump.json"
    extra = {"DUMP_TO": str(out), **kw.pop("extra_env", {})}
    result = run(root, tmp_path, warm=warm, extra_env=extra, **kw)
    assert result.exit_code == 0, result.output_tail
    state: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return state


def test_a_warm_run_is_indistinguishable_from_a_cold_one(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_dump.py": STATE_DUMP})
    same = {"cookie": "c0ffee" * 5, "limits": Limits(max_file_mb=64)}
    cold = dump(root, tmp_path, warm=False, **same)
    warm = dump(root, tmp_path, warm=True, **same)
    assert cold.pop("ppid") == os.getpid()
    assert warm.pop("ppid") == warm_interpreter().pid  # it really was forked warm
    # The one difference by design: what the warm interpreter held before the fork is
    # frozen (zygote._freeze_what_is_preloaded); the suite's own objects are not.
    assert cold.pop("gc_frozen") == 0 and warm.pop("gc_frozen") > 1000
    warm_env, cold_env = warm.pop("env"), cold.pop("env")
    assert warm_env.pop("GATE_DUMP_AT") != cold_env.pop("GATE_DUMP_AT")  # a time: per run
    # Each run writes into a fresh directory of its own, under a random name.
    assert per_run_dirs_named_alike(warm_env) == per_run_dirs_named_alike(cold_env)
    warm_argv, cold_argv = warm.pop("argv"), cold.pop("argv")
    assert [RUN_DIR.sub("/run-*/", a) for a in warm_argv] == [
        RUN_DIR.sub("/run-*/", a) for a in cold_argv
    ]
    # /proc shows a fork the initial environment of the process it was forked from.
    assert cold.pop("cookie_in_proc") and not warm.pop("cookie_in_proc")
    assert warm == cold
    assert warm["own_session"] and warm["fsize"] == 64 * 1024**2
    assert warm_argv[0].endswith("pytest/__main__.py") and warm["main"] == warm_argv[0]


def test_start_up_variables_in_the_suites_environment_send_it_cold(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_dump.py": STATE_DUMP})
    state = dump(root, tmp_path, warm=True, extra_env={"PYTHONHASHSEED": "0"})
    assert state["ppid"] == os.getpid()
    assert state["flags"][list(sys.flags.__match_args__).index("hash_randomization")] == 0


def test_a_time_zone_of_its_own_sends_the_suite_cold(tmp_path: Path) -> None:
    # The warm interpreter's C library took its zone when it started; a POSIX TZ string
    # needs no tz database.
    zone = "import time\n\n\ndef test_zone():\n    assert time.tzname[0] == 'JST', time.tzname\n"
    root = project(tmp_path, {"tests/test_zone.py": zone})
    result = run(root, tmp_path, warm=True, extra_env={"TZ": "JST-9"})
    assert result.exit_code == 0, result.output_tail


def test_a_sitecustomize_on_the_suites_path_sends_it_cold_and_runs(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_dump.py": STATE_DUMP,
            "site/sitecustomize.py": "import os\nos.environ['SITE_RAN'] = 'yes'\n",
        },
    )
    state = dump(root, tmp_path, warm=True, extra_env={"PYTHONPATH": "site"})
    assert state["ppid"] == os.getpid() and state["site_ran"] == "yes"


def test_a_hanging_warm_suite_is_killed_and_the_next_one_still_runs_warm(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"tests/test_hang.py": "import time\n\n\ndef test_hang():\n    time.sleep(600)\n"},
    )
    hung = run(root, tmp_path, warm=True, timeout_s=3)
    assert hung.timed_out and hung.exit_code is None
    (root / "tests/test_hang.py").unlink()
    (root / "tests/test_dump.py").write_text(STATE_DUMP)
    assert dump(root, tmp_path, warm=True)["ppid"] == warm_interpreter().pid


def test_a_suite_that_kills_its_warm_interpreter_ran_and_fails(tmp_path: Path) -> None:
    pid_file = tmp_path / "suite.pid"
    root = project(
        tmp_path,
        {
            "tests/test_kill_parent.py": (
                "import os, signal, time\n\n\n"
                "def test_kills_the_warm_interpreter():\n"
                f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                "    os.kill(os.getppid(), signal.SIGKILL)\n"
                "    time.sleep(600)\n"
            )
        },
    )
    before = warm_interpreter().pid
    result = run(root, tmp_path, warm=True)
    # It started, so however it ended it ran: a FAIL of the code, never "could not start".
    assert result.started is True and result.ran and result.spawn_error is None
    assert result.exit_code is None
    verdict = with_evidence(from_exit_code(result.exit_code), result.evidence_objection())
    assert (verdict.result, verdict.outcome) == ("FAIL", "code-fail")
    assert not pid_alive(int(pid_file.read_text()))  # the orphaned suite was killed
    assert warm_interpreter().pid != before and pid_alive(warm_interpreter().pid)


def test_a_suite_the_warm_interpreter_cannot_set_up_never_ran(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_a.py": "def test_a():\n    pass\n"})
    missing = JobCgroup(path=tmp_path / "no-such-cgroup", max_pids=10)
    result = run(root, tmp_path, warm=True, cgroup=missing)
    assert not result.ran and result.spawn_error is not None
    assert "could not start the suite" in result.spawn_error
    assert "no-such-cgroup" in (tmp_path / "scratch" / "output.log").read_text()


def test_the_warm_interpreter_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from worker.containment.sandbox import warm_interpreter\n"
            "print(warm_interpreter().pid, flush=True)\n"
            "import time; time.sleep(600)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    zygote = int(owner.stdout.readline())
    assert pid_alive(zygote)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while pid_alive(zygote) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(zygote)


def test_startup_environment_keeps_what_the_interpreter_reads_as_it_starts() -> None:
    env = {
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": "src",
        "LANG": "C.UTF-8",
        "PATH": "/bin",
        "HOME": "/h",
        "PYTEST_ADDOPTS": "-x",
        "TZ": "Asia/Tokyo",
    }
    assert startup_environment(env) == {
        "PYTHONHASHSEED": "0",
        "LANG": "C.UTF-8",
        "TZ": "Asia/Tokyo",
    }


def test_the_path_prefix_is_the_worktree_then_pythonpath_made_absolute(tmp_path: Path) -> None:
    env = {"PYTHONPATH": f"src::{tmp_path}/plugins"}
    assert suite_path_prefix(tmp_path / "wt", env) == [
        str(tmp_path / "wt"),
        str(tmp_path / "wt" / "src"),
        str(tmp_path / "plugins"),
    ]


def test_a_package_or_module_named_like_a_preloaded_one_is_found(tmp_path: Path) -> None:
    (tmp_path / "a" / "pluggy").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "sitecustomize.py").write_text("")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "pluggy_extra.py").write_text("")
    preloaded = {"pytest", "pluggy"}
    assert shadowing_module([str(tmp_path / "a")], preloaded) == f"{tmp_path}/a/pluggy"
    assert shadowing_module([str(tmp_path / "b")], preloaded) == f"{tmp_path}/b/sitecustomize.py"
    assert shadowing_module([str(tmp_path / "c"), str(tmp_path / "absent")], preloaded) is None


def test_files_named_like_a_preloaded_module_that_no_import_loads_are_no_shadow(
    tmp_path: Path,
) -> None:
    for name in ("pytest.ini", "pluggy.txt", "pytest.d"):
        (tmp_path / name).write_text("")
    preloaded = {"pytest", "pluggy"}
    assert shadowing_module([str(tmp_path)], preloaded) is None
    (tmp_path / "pluggy.cpython-313-x86_64-linux-gnu.so").write_text("")
    assert shadowing_module([str(tmp_path)], preloaded) is not None


def test_two_suites_at_once_in_one_process_get_one_warm_start_and_one_cold(
    tmp_path: Path,
) -> None:
    """A threaded caller must never read another suite's replies: the second runs cold."""
    gate = tmp_path / "gate"
    suite = STATE_DUMP.replace(
        "def test_dump_the_interpreter():\n",
        "def test_dump_the_interpreter():\n"
        f"    while not os.path.exists({str(gate)!r}):\n"
        "        __import__('time').sleep(0.01)\n",
    )
    results: dict[str, dict[str, Any]] = {}

    def one(name: str) -> None:
        root = project(tmp_path / name, {"tests/test_dump.py": suite})
        results[name] = dump(root, tmp_path / name, warm=True)

    warm_interpreter()  # started before any job, as a pool process does at its start
    threads = [threading.Thread(target=one, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("*/scratch/output.log"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # both suites have started before either may finish
    gate.touch()
    for thread in threads:
        thread.join(timeout=60)
    parents = sorted(r["ppid"] == warm_interpreter().pid for r in results.values())
    assert parents == [False, True]
