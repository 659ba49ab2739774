from pathlib import Path

import pytest

from worker import client
from worker.settings import Settings

JOB = {
    "task_id": 1,
    "repo": "orchestrator",
    "work_item_id": "WI-1",
    "branch": "f/x",
    "agent": "tester",
    "stage": "testing",
}


def test_the_self_hosting_repo_applies_by_default() -> None:
    assert client.applies("orchestrator", Settings(contracts_file="")) is True
    assert client.applies("ORCHESTRATOR", Settings(contracts_file="")) is True


def test_the_kill_switch_turns_everything_off() -> None:
    assert client.applies("orchestrator", Settings(enabled=False)) is False


def test_a_listed_repo_without_a_contract_does_not_apply() -> None:
    settings = Settings(repos="orchestrator,web", contracts_file="")
    assert client.applies("web", settings) is False
    assert client.applies("orchestrator", settings) is True


def test_a_listed_repo_with_a_contract_applies(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[repos.web]\ntarget = "tests"\n')
    settings = Settings(repos="web", contracts_file=str(path))
    assert client.applies("web", settings) is True
    assert client.applies("orchestrator", settings) is False  # not in the CSV scope


def test_a_broken_contracts_file_means_nothing_applies(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[repos.web")
    assert client.applies("orchestrator", Settings(contracts_file=str(path))) is False


@pytest.mark.parametrize("repo", [None, 42, ["orchestrator"]])
def test_applies_never_raises_on_garbage(repo: object) -> None:
    assert client.applies(repo, Settings(contracts_file="")) is False


def test_should_intercept_needs_tester_testing_and_scope() -> None:
    settings = Settings(contracts_file="")
    assert client.should_intercept(JOB, settings) is True
    assert client.should_intercept({**JOB, "agent": "developer"}, settings) is False
    assert client.should_intercept({**JOB, "stage": "review"}, settings) is False
    assert client.should_intercept({**JOB, "repo": "web"}, settings) is False
    assert client.should_intercept("not a job", settings) is False


def test_enqueue_refuses_an_invalid_job_before_sending() -> None:
    with pytest.raises(client.InvalidJob, match="work_item_id"):
        client.enqueue({**JOB, "work_item_id": "../x"})


def test_snapshot_never_raises_and_reports_settings_without_redis() -> None:
    snap = client.snapshot(Settings(state_url="redis://127.0.0.1:1/0", timeout_s=120))
    assert snap["enabled"] is True
    assert snap["timeout_s"] == 120
    assert snap["counters_unavailable"] == 1
