from pathlib import Path

import pytest

from worker.contracts import load_contracts
from worker.errors import ContractsFileError
from worker.settings import Settings


def test_without_a_file_only_the_self_hosting_repo_has_a_contract() -> None:
    contracts = load_contracts(Settings(contracts_file=""))
    builtin = contracts.for_repo("Orchestrator")
    assert builtin is not None
    assert builtin.target == "tests/"
    assert [c.path for c in builtin.smoke_checks] == ["/health", "/status", "/queue"]
    assert builtin.smoke_checks[2].contains == "serial_gate"
    assert contracts.for_repo("web") is None


def test_a_contracts_file_adds_repos_with_their_own_target_timeout_and_smoke(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(
        '[repos.web]\ntarget = "src/tests"\ntimeout_s = 60\n'
        'smoke_base_url = "http://127.0.0.1:9"\n'
        'smoke = [{path = "/ping", status = 204}]\nenv = {PYTHONPATH = "src"}\n'
    )
    contracts = load_contracts(Settings(contracts_file=str(path)))
    web = contracts.for_repo("WEB")
    assert web is not None
    assert (web.target, web.timeout_s, web.smoke_base_url) == (
        "src/tests",
        60,
        "http://127.0.0.1:9",
    )
    assert web.smoke_checks[0].path == "/ping" and web.smoke_checks[0].status == 204
    assert dict(web.env) == {"PYTHONPATH": "src"}
    assert contracts.for_repo("orchestrator") is not None
    assert contracts.longest_timeout_s == 900


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[repos.web\n", "not valid TOML"),
        ("[repos.web]\ntimeout_s = -1\n", "timeout_s"),
        ('[repos.web]\ntarget = "--co"\n', "target"),
        ('[repos.web]\ntarget = "../up"\n', "target"),
        ('[repos.web]\nsmoke = [{path = "health"}]\n', "smoke.0.path"),
        ('[repos.web]\ncolour = "blue"\n', "colour"),
        ('[repos.web]\nenv = {TESTGATE_BROKER_URL = "x"}\n', "TESTGATE_"),
        ("repos = 3\n", "must be a table"),
        ("[repos.web]\nintegrity = true\nshards = 2\n", "cannot be combined with shards"),
        ('[repos.web]\nclassify = true\nshards = "auto"\n', "cannot be combined with shards"),
        ("[repos.web]\ntrusted_tests = true\nshards = 2\n", "cannot be combined with shards"),
        ('[repos.web]\ntrusted_ref = "--upload-pack=x"\n', "trusted_ref"),
        ('[repos.web]\nhidden_tests = {repo = "h"}\nshards = 2\n', "cannot be combined"),
        ('[repos.web]\nhidden_tests = {repo = "../h"}\n', "hidden_tests.repo"),
        ('[repos.web]\nhidden_tests = {repo = "h", path = "/etc"}\n', "hidden_tests.path"),
        ('[repos.web]\nhidden_tests = {repo = "h", branch = "x"}\n', "hidden_tests.branch"),
        ('[repos.web]\nhidden_report = "source"\n', "hidden_report"),
    ],
)
def test_a_broken_contracts_file_is_refused_with_the_fault_named(
    tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(text)
    with pytest.raises(ContractsFileError) as raised:
        load_contracts(Settings(contracts_file=str(path)))
    assert words in str(raised.value)
    assert str(path) in str(raised.value)


def test_a_missing_contracts_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractsFileError, match="cannot read"):
        load_contracts(Settings(contracts_file=str(tmp_path / "absent.toml")))


def test_trusted_tests_default_off_and_read_with_their_ref_and_one_more_run_budget(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(
        "[repos.web]\ntimeout_s = 100\n\n[repos.api]\ntrusted_tests = true\n"
        'trusted_ref = "release/2"\ntimeout_s = 100\n'
    )
    contracts = load_contracts(Settings(contracts_file=str(path)))
    web, api = contracts.for_repo("web"), contracts.for_repo("api")
    assert web is not None and api is not None
    assert (web.trusted_tests, web.trusted_ref, web.run_budget_s) == (False, "main", 100)
    assert (api.trusted_tests, api.trusted_ref, api.run_budget_s) == (True, "release/2", 200)


def test_hidden_tests_are_read_with_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text('[repos.web]\nhidden_tests = {repo = "web-acceptance"}\ntimeout_s = 50\n')
    web = load_contracts(Settings(contracts_file=str(path))).for_repo("web")
    assert web is not None and web.hidden_tests is not None
    assert (web.hidden_tests.repo, web.hidden_tests.path, web.hidden_tests.ref) == (
        "web-acceptance",
        "tests/",
        "main",
    )
    assert (web.hidden_report, web.run_budget_s) == ("ids", 100)
