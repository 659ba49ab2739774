"""Suites under bubblewrap: what they can and cannot reach, and that their outcome is
still read right. Real bwrap, real pytest runs; each attack asserts from outside."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from testkit.fleet import processes_running
from tests.contained import MODES, mirrors, run_contained
from tests.projects import project
from tests.tools import required_tool
from worker.containment.bwrap import (
    SuiteView,
    bwrap_missing,
    bwrap_prefix,
    interpreter_paths,
    owner_only_entries,
)
from worker.containment.sandbox import Sandbox
from worker.insuite import HERE as INSUITE_DIR
from worker.suite.run import SuiteRun, run_suite
from worker.verdict import from_exit_code, with_evidence

SECRET = f"s3cret-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    required_tool("bwrap", "bubblewrap")
    assert bwrap_missing() is None


def contained(
    root: Path, tmp_path: Path, mode: str = "cold", *, readable: tuple[Path, ...] = ()
) -> SuiteRun:
    """The suite run under bwrap: cold, or (in the pool process's slot, as a job) forked
    from the contained warm interpreter."""
    if mode == "warm":
        return run_contained(root, mode="warm", readable=readable)
    sandbox = Sandbox(
        scratch_dir=tmp_path / "scratch",
        cookie=uuid.uuid4().hex,
        kill_grace_s=0.5,
        view=SuiteView(
            writable=(),
            readable=(INSUITE_DIR, *interpreter_paths(sys.executable), *readable),
        ),
    )
    sandbox.scratch_dir.mkdir(exist_ok=True)
    return run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=60)


def verdict(run: SuiteRun) -> tuple[str, str]:
    decided = with_evidence(from_exit_code(run.exit_code), run.evidence_objection())
    return decided.result, decided.outcome


@pytest.mark.parametrize("mode", MODES)
def test_an_honest_suite_passes_and_a_failing_one_fails_under_containment(
    tmp_path: Path, mode: str
) -> None:
    passing = project(tmp_path / "p", {"tests/test_a.py": "def test_a():\n    assert 1\n"})
    failing = project(tmp_path / "f", {"tests/test_a.py": "def test_a():\n    assert 0\n"})
    assert verdict(contained(passing, tmp_path / "p", mode)) == ("PASS", "code-pass")
    assert verdict(contained(failing, tmp_path / "f", mode)) == ("FAIL", "code-fail")


@pytest.mark.parametrize("mode", MODES)
def test_the_suite_sees_none_of_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Its own processes only, no secret in any environ it can read, no worker HOME or
    workdir, no network, and uid 65534."""
    monkeypatch.setenv("TESTGATE_TELEGRAM_BOT_TOKEN", SECRET)
    private = tmp_path / "worker-home"
    private.mkdir()
    (private / "token").write_text(SECRET)
    root = project(
        tmp_path,
        {
            "tests/test_probe_world.py": (
                "import os, socket\n\n\n"
                "def test_nothing_of_the_worker_is_reachable():\n"
                "    found = []\n"
                "    for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
                "        try:\n"
                "            found.append(open(f'/proc/{pid}/environ', 'rb').read())\n"
                "        except OSError:\n"
                "            pass\n"
                f"    assert not any({SECRET!r}.encode() in env for env in found)\n"
                "    assert len([p for p in os.listdir('/proc') if p.isdigit()]) < 10\n"
                f"    assert not os.path.exists({str(private)!r})\n"
                "    assert os.getuid() == 65534\n"
                "    s = socket.socket()\n"
                "    s.settimeout(2)\n"
                "    assert s.connect_ex(('127.0.0.1', 6379)) != 0  # no Redis here\n"
            )
        },
    )
    run = contained(root, tmp_path, mode)
    assert verdict(run) == ("PASS", "code-pass"), run.output_tail
    assert SECRET not in run.output_tail


@pytest.mark.parametrize("mode", MODES)
def test_the_suite_cannot_write_what_the_worker_reads_or_runs(tmp_path: Path, mode: str) -> None:
    mirror = mirrors() / f"{uuid.uuid4().hex[:8]}.git"  # where a warm suite sees mirrors
    mirror.mkdir()
    (mirror / "config").write_text("[core]\n")
    site = Path(sys.prefix) / "lib"
    root = project(
        tmp_path,
        {
            "tests/test_write.py": (
                "import pytest\n\n\n"
                "@pytest.mark.parametrize('path', [\n"
                f"    {str(mirror / 'config')!r},\n"
                f"    {str(mirror / 'hooks-planted')!r},\n"
                f"    {str(site / 'evil.pth')!r},\n"
                f"    {str(INSUITE_DIR / 'plugins' / 'testgate_probe.py')!r},\n"
                "])\n"
                "def test_read_only(path):\n"
                "    with pytest.raises(OSError):\n"
                "        open(path, 'a').write('planted')\n"
            )
        },
    )
    run = contained(root, tmp_path, mode, readable=(mirror,))
    assert verdict(run) == ("PASS", "code-pass"), run.output_tail
    assert (mirror / "config").read_text() == "[core]\n"
    assert not (mirror / "hooks-planted").exists()
    assert not (site / "evil.pth").exists()


@pytest.mark.parametrize("mode", MODES)
def test_a_daemon_the_suite_leaves_dies_with_its_namespace(tmp_path: Path, mode: str) -> None:
    marker = f"600.{uuid.uuid4().int % 10**9}"
    root = project(
        tmp_path,
        {
            "tests/test_escape.py": (
                "import os, time\n\n\n"
                "def test_escapes():\n"
                "    if os.fork() == 0:\n"
                "        os.setsid()\n"
                "        if os.fork() == 0:\n"
                f"            os.execve('/bin/sleep', ['sleep', {marker!r}], {{}})\n"
                "        os._exit(0)\n"
                "    os.wait()\n"
                "    time.sleep(0.3)  # past the execve\n"
            )
        },
    )
    run = contained(root, tmp_path, mode)
    assert verdict(run) == ("PASS", "code-pass"), run.output_tail
    assert processes_running(["sleep", marker]) == []


@pytest.mark.parametrize(
    ("body", "exit_code"),
    [
        ("os._exit(126)", 126),
        ("os._exit(127)", 127),
        ("os._exit(0)", 0),
        ("os.kill(os.getpid(), signal.SIGKILL)", -9),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_a_suite_that_started_owns_how_it_ended(
    tmp_path: Path, body: str, exit_code: int, mode: str
) -> None:
    root = project(
        tmp_path,
        {
            "tests/test_end.py": (
                "import os, signal\n\n\n"
                "def test_ok():\n    pass\n\n\n"
                f"def test_ends():\n    {body}\n"
            )
        },
    )
    run = contained(root, tmp_path, mode)
    assert (run.started, run.ran, run.spawn_error, run.exit_code) == (True, True, None, exit_code)
    assert verdict(run) == ("FAIL", "code-fail")


def test_an_interpreter_the_view_lacks_never_started(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_a.py": "def test_a():\n    pass\n"})
    sandbox = Sandbox(
        scratch_dir=tmp_path / "scratch",
        cookie=uuid.uuid4().hex,
        view=SuiteView(writable=(), readable=(INSUITE_DIR,)),  # no interpreter prefix
    )
    sandbox.scratch_dir.mkdir()
    run = run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=30)
    if Path(sys.executable).resolve().is_relative_to("/usr"):
        pytest.skip("this interpreter lives in /usr, which every view has")
    assert (run.started, run.ran) == (False, False)
    assert run.spawn_error is not None and "never came up" in run.spawn_error


def test_owner_only_entries_are_found_and_their_subtrees_masked_whole(tmp_path: Path) -> None:
    (tmp_path / "public").write_text("x")
    (tmp_path / "shadow").write_text("x")
    (tmp_path / "shadow").chmod(0o600)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key").write_text("x")
    (tmp_path / "private").chmod(0o700)
    masked = owner_only_entries(tmp_path)
    assert sorted(p.name for p in masked) == ["private", "shadow"]
    assert all(not p.lstat().st_mode & stat.S_IROTH for p in masked)


def test_bwrap_prefix_binds_the_worktree_writable_and_denies_the_network_by_default(
    tmp_path: Path,
) -> None:
    argv = bwrap_prefix(SuiteView(writable=(), readable=(tmp_path / "ro",)), tmp_path / "wt")
    assert "--unshare-net" in argv and argv[-1] == "--"
    assert ["--bind", str(tmp_path / "wt"), str(tmp_path / "wt")] == argv[
        argv.index("--bind") : argv.index("--bind") + 3
    ]
    networked = bwrap_prefix(SuiteView(writable=(), network=True), tmp_path / "wt")
    assert "--unshare-net" not in networked


def test_a_host_without_bwrap_is_told_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from worker.containment.bwrap import bwrap_missing; print(bwrap_missing())",
        ],
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "bwrap (bubblewrap) is not installed" in done.stdout
