"""`testgate sample` + `testgate run`: the README's first command, embedded (no Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from testkit.fleet import pid_alive, run_cli
from testkit.repofactory import git, make_origin
from tests.projects import escaping_daemon_project
from worker.cli.sample import GREEN_BRANCH, RED_BRANCH
from worker.report.orchestrator_gate import parse_tests_verdict

pytestmark = pytest.mark.timeout(120)


PASSING = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"

# No Redis may be needed: every Redis setting points at a closed port.
NO_REDIS = {
    "TESTGATE_BROKER_URL": "redis://127.0.0.1:1/0",
    "TESTGATE_RESULT_BACKEND": "redis://127.0.0.1:1/1",
}


def run_gate(
    origin: Path,
    branch: str,
    work_item: str,
    tmp_path: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`testgate run` on `origin` with `extra` options, with no Redis reachable."""
    return run_cli(
        "run",
        str(origin),
        "--branch",
        branch,
        "--work-item",
        work_item,
        "--workdir",
        str(tmp_path / "work"),
        *extra,
        env={**NO_REDIS, **(env or {})},
        cwd=tmp_path,
    )


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    done = run_cli("sample", str(tmp_path / "sample"), env=NO_REDIS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "sample"


def test_run_on_a_green_branch_passes_and_commits_the_report(sample: Path, tmp_path: Path) -> None:
    done = run_gate(sample, GREEN_BRANCH, "WI-1", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    assert "event on the orchestrator queue: orchestrator.advance_stage(" in done.stdout
    report = git(sample, "show", f"{GREEN_BRANCH}:docs/work-items/WI-1/13-test-report.md")
    assert parse_tests_verdict(report) is True
    assert git(sample, "status", "--porcelain") == ""  # the user's checkout is untouched


def test_run_on_a_red_branch_fails_with_exit_code_1(sample: Path, tmp_path: Path) -> None:
    done = run_gate(sample, RED_BRANCH, "WI-2", tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verdict: FAIL" in done.stdout
    assert "tests/test_subtract.py::test_subtract" in git(
        sample, "show", f"{RED_BRANCH}:docs/work-items/WI-2/13-test-report.md"
    )


def test_run_with_a_bad_work_item_is_handed_back(sample: Path, tmp_path: Path) -> None:
    done = run_gate(sample, GREEN_BRANCH, "../x", tmp_path)
    assert done.returncode == 2
    assert "orchestrator.test_gate_handback" in done.stdout
    assert "work_item_id" in done.stdout


def test_run_kills_what_the_suite_daemonised(tmp_path: Path) -> None:
    """`testgate run` is a child subreaper like a pool process: a daemon the suite left
    (new session, environment cleared, so neither its cookie nor its process tree leads
    to it) is re-parented to the run, then killed and reaped when the suite ends."""
    project, pid_file = escaping_daemon_project(tmp_path)
    files = {str(p.relative_to(project)): p.read_text() for p in project.rglob("*.py")}
    origin = make_origin(tmp_path / "origins", "escape", files)
    # No pids cgroup (as for a non-root user): only the subreaper can catch it. And no
    # containment: under bubblewrap the daemon dies with the suite's PID namespace, and
    # could not tell its pid to the test.
    uncaught = {"TESTGATE_SUITE_MAX_PIDS": "0", "TESTGATE_CONTAINMENT": "off"}
    done = run_gate(origin, "feature/x", "WI-9", tmp_path, env=uncaught)
    daemon = int(pid_file.read_text())
    alive = pid_alive(daemon)
    if alive:
        os.kill(daemon, signal.SIGKILL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    assert not alive, "the daemonised leftover outlived `testgate run`"
    assert "killed 1 process(es) a job left behind (adopted)" in done.stderr


FLAVOURED = {
    "tests/test_flavour.py": (
        "import os\n\n\n"
        "def test_the_contract_set_the_flavour():\n"
        "    assert os.environ.get('FLAVOUR') == 'contracted'\n"
    )
}
FLAVOUR_CONTRACT = '[repos.calc]\ntarget = "tests/"\nenv = {FLAVOUR = "contracted"}\n'


def run_flavoured(origin: Path, tmp_path: Path, *extra: str, env: dict[str, str]) -> str:
    done = run_gate(origin, "feature/x", "WI-3", tmp_path, *extra, env=env)
    return f"rc={done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_run_takes_a_contracts_file_as_a_worker_does(tmp_path: Path, how: str) -> None:
    """The contract's env reaches the suite only when the file is read: the same run
    without it fails, so the PASS is the contract's doing."""
    origin = make_origin(tmp_path / "origins", "calc", FLAVOURED)
    contracts = tmp_path / "contracts.toml"
    contracts.write_text(FLAVOUR_CONTRACT)
    if how == "option":
        done = run_flavoured(origin, tmp_path, "--contracts", str(contracts), env={})
    else:
        done = run_flavoured(origin, tmp_path, env={"TESTGATE_CONTRACTS_FILE": str(contracts)})
    assert done.startswith("rc=0"), done
    assert f"contracts: {contracts}" in done
    assert "verdict: PASS" in done

    without = run_flavoured(origin, tmp_path, env={})
    assert without.startswith("rc=1"), without
    assert "verdict: FAIL" in without


def test_run_names_the_repo_as_its_contract_does(tmp_path: Path) -> None:
    origin = make_origin(tmp_path / "origins", "checkout-under-another-name", FLAVOURED)
    contracts = tmp_path / "contracts.toml"
    contracts.write_text(FLAVOUR_CONTRACT)
    done = run_flavoured(origin, tmp_path, "--contracts", str(contracts), "--repo", "calc", env={})
    assert done.startswith("rc=0"), done
    assert "'repo': 'calc'" in done


def test_run_refuses_a_broken_contracts_file_with_its_fault(tmp_path: Path) -> None:
    origin = make_origin(tmp_path / "origins", "calc", FLAVOURED)
    contracts = tmp_path / "contracts.toml"
    contracts.write_text('[repos.calc]\ntimeout_s = "soon"\n')
    done = run_flavoured(origin, tmp_path, "--contracts", str(contracts), env={})
    assert done.startswith("rc=2"), done
    assert "[repos.calc] timeout_s" in done


def test_run_is_traced_by_the_otel_variables(sample: Path, tmp_path: Path) -> None:
    done = run_gate(sample, GREEN_BRANCH, "WI-4", tmp_path, env={"OTEL_TRACES_EXPORTER": "console"})
    assert done.returncode == 0, done.stdout + done.stderr
    for span in ("testgate.job", "testgate.checkout", "testgate.suite", "testgate.push"):
        assert f'"name": "{span}"' in done.stdout, span


def test_run_on_a_sha256_repository_tests_its_64_hex_commit_and_pushes_the_report(
    tmp_path: Path,
) -> None:
    files = {"calc.py": "def add(a, b):\n    return a + b\n", "tests/test_add.py": PASSING}
    origin = make_origin(tmp_path / "origins", "calc256", files, object_format="sha256")
    tested = git(origin, "rev-parse", "feature/x")
    done = run_gate(origin, "feature/x", "WI-256", tmp_path, "--commit", tested)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    assert f'"commit": "{tested}"' in done.stdout
    assert '"report_pushed": true' in done.stdout
    assert git(origin, "rev-parse", "feature/x^") == tested
    report = git(origin, "show", "feature/x:docs/work-items/WI-256/13-test-report.md")
    assert parse_tests_verdict(report) is True


def test_a_configured_secret_the_suite_prints_is_masked_in_the_report_and_the_event(
    tmp_path: Path,
) -> None:
    token, hook = "tg-token-5d1e8b7c", "hook-secret-0a9f"
    leak = f"def test_leak():\n    print('found {token} and {hook}')\n    assert '{hook}' == 'no'\n"
    origin = make_origin(tmp_path / "origins", "leaky", {"tests/test_leak.py": leak})
    secrets = {"TESTGATE_TELEGRAM_BOT_TOKEN": token, "TESTGATE_WEBHOOK_SECRET": hook}
    done = run_gate(origin, "feature/x", "WI-7", tmp_path, env=secrets)
    assert done.returncode == 1, done.stdout + done.stderr
    report = git(origin, "show", "feature/x:docs/work-items/WI-7/13-test-report.md")
    assert "found *** and ***" in report
    assert token not in report and hook not in report
    event = done.stdout.split("orchestrator.advance_stage(", 1)[1].split("\n", 1)[0]
    assert token not in event and hook not in event


def test_run_honours_required_tests_each_named_by_its_fate(sample: Path, tmp_path: Path) -> None:
    passing = "tests/test_calc.py::test_add"
    missing = "tests/test_calc.py::test_gone"

    def run_requiring(*ids: str, work_item: str) -> subprocess.CompletedProcess[str]:
        options = [arg for node in ids for arg in ("--required-test", node)]
        return run_gate(sample, GREEN_BRANCH, work_item, tmp_path, *options)

    green = run_requiring(passing, work_item="WI-3")
    assert green.returncode == 0, green.stdout + green.stderr
    red = run_requiring(passing, missing, work_item="WI-4")
    assert red.returncode == 1, red.stdout + red.stderr
    report = git(sample, "show", f"{GREEN_BRANCH}:docs/work-items/WI-4/13-test-report.md")
    assert f"1 required test(s) did not pass: {missing} was not run" in report
    malformed = run_requiring(passing, passing, work_item="WI-5")
    assert malformed.returncode == 2
    assert "more than once" in malformed.stdout


def test_run_with_trusted_and_hidden_tests(sample: Path, tmp_path: Path) -> None:
    hidden = make_origin(
        tmp_path / "hidden",
        "acceptance",
        {"README.md": "# acceptance\n"},
        main_files={
            "tests/test_accept.py": (
                "from calc import multiply\n\n\n"
                "def test_square():\n    assert multiply(3, 3) == 9\n\n\n"
                "def test_wrong():\n    assert multiply(2, 2) == 5  # SOURCE-OF-HIDDEN\n"
            )
        },
    )
    done = run_gate(
        sample, GREEN_BRANCH, "WI-6", tmp_path, "--trusted-tests", "--hidden-tests", str(hidden)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = git(sample, "show", f"{GREEN_BRANCH}:docs/work-items/WI-6/13-test-report.md")
    assert "1 hidden test(s) did not pass: tests/test_accept.py::test_wrong: assert 4 == 5" in (
        report
    )
    assert "with the tests of main at " in report
    assert "SOURCE-OF-HIDDEN" not in report and "test_square" not in report
