import logging
import uuid
from pathlib import Path

import pytest

from testkit.repofactory import OriginFactory
from tests.gateworld import WorldFactory, job
from worker.pipeline.runner import run_gate
from worker.settings import DEFAULT_TIMEOUT_S, Settings


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "1.5x", ""])
def test_a_bad_timeout_falls_back_to_900_with_a_warning(
    raw: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TESTGATE_TIMEOUT_S", raw)
    with caplog.at_level(logging.WARNING, logger="testgate.settings"):
        settings = Settings()
    assert settings.timeout_s == DEFAULT_TIMEOUT_S
    assert "TESTGATE_TIMEOUT_S" in caplog.text


def test_a_valid_timeout_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTGATE_TIMEOUT_S", "120")
    assert Settings().timeout_s == 120


def test_defaults_match_the_spec() -> None:
    s = Settings(_env_file=None)
    assert (s.enabled, s.repos, s.self_repo, s.target) == (True, "", "orchestrator", "tests/")
    assert (s.timeout_s, s.kill_grace_s, s.tree_kill) == (900, 5.0, True)
    assert (s.smoke_enabled, s.smoke_base_url) == (True, "http://localhost:8500")
    assert (s.infra_max_retries, s.infra_retry_delay_s) == (2, 30)
    assert s.broker_url == "redis://localhost:6379/0"
    assert s.result_backend == "redis://localhost:6379/1"
    assert s.git_url_template == "/srv/git/{repo}.git"
    assert s.advance_task == "orchestrator.advance_stage"
    assert s.handback_task == "orchestrator.test_gate_handback"
    assert s.orchestrator_queue == "orchestrator"


def test_a_setting_this_version_no_longer_has_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # A deployment's environment may still name it: the worker must start as before.
    monkeypatch.setenv("TESTGATE_WARM_PRELOAD_PLUGINS", "false")
    settings = Settings()
    assert settings.warm_pytest and not hasattr(settings, "warm_preload_plugins")


def test_a_garbled_kill_switch_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTGATE_ENABLED", "perhaps")
    assert Settings().enabled is False


def test_a_negative_retry_budget_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTGATE_INFRA_MAX_RETRIES", "-1")
    assert Settings().infra_max_retries == 2


def test_repo_scope_is_a_lower_cased_csv() -> None:
    assert Settings(repos=" Orchestrator, web-App ,,").repo_scope == {"orchestrator", "web-app"}


def test_the_visibility_timeout_outlasts_the_longest_suite() -> None:
    settings = Settings(timeout_s=900, kill_grace_s=5)
    assert settings.required_visibility_timeout_s(1800) > 1800 + 5
    assert settings.required_visibility_timeout_s(0) > 900 + 5


def test_a_relative_workdir_is_made_absolute_once_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TESTGATE_WORKDIR", "cache/testgate")
    settings = Settings()
    monkeypatch.chdir("/")  # later working directories do not move it
    assert settings.workdir == str(tmp_path / "cache/testgate")
    assert settings.workdir_path == tmp_path / "cache/testgate"


def test_a_home_relative_workdir_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tg")
    assert Settings(workdir="~/wd").workdir == "/home/tg/wd"


def test_a_job_checks_out_under_a_relative_workdir(
    tmp_path: Path, world: WorldFactory, origin: OriginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative, it failed every checkout (`git config` ran in the mirror, where the
    relative path named nothing) and was retried as an infrastructure fault."""
    monkeypatch.chdir(tmp_path)
    w = world(workdir="work")
    origin("passing", {"tests/test_ok.py": "def test_ok():\n    assert True\n"})
    monkeypatch.chdir("/")
    # A delivery id of its own: the job's cgroup is named by it, machine-wide.
    result = run_gate(job("passing"), w.ctx, attempt=0, delivery_id=f"d-{uuid.uuid4()}")
    assert result.kind == "advanced", result.detail
    assert [kwargs["result"] for _, kwargs in w.sender.sent] == ["PASS"]
    assert (tmp_path / "work").is_dir()
