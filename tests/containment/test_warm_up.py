"""Warm-up before the first job: a pool process starts the warm interpreters its
contracts' suites fork from (which interpreter and, contained, whether it has the
network and which repository's mirror it reads), so a first suite with its own
interpreter is not the one that pays for starting it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from testkit.fleet import pid_alive
from tests.contained import settings as contained_settings
from worker.containment.bwrap import SuiteView
from worker.containment.sandbox import warm_interpreter
from worker.containment.slot import process_slot
from worker.containment.view import WarmKind, contained_warm, warm_kinds, warm_up
from worker.containment.warm import stop_warm_pytest, warm_process_pids
from worker.contracts import TestContract, parse_contracts
from worker.settings import Settings

NO_AUTOLOAD = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def contracts(settings: Settings, **repos: dict[str, Any]) -> list[TestContract]:
    """The contracts file's contracts, in its order (the built-in one left out)."""
    parsed = parse_contracts({"repos": repos}, settings)
    return [parsed.by_repo[name.lower()] for name in repos]


def test_one_kind_per_interpreter_and_contained_network_in_the_contracts_order() -> None:
    settings = Settings(python="/opt/py/bin/python3")
    found = contracts(
        settings,
        quiet={"env": NO_AUTOLOAD},  # plugins are each run's: the same kind as `plain`
        plain={},
        again={"env": {**NO_AUTOLOAD, "OTHER": "x"}},  # `quiet`'s kind, another repository
        own={"python": "/usr/bin/python3.12", "network": True},
        built={"venv": True, "setup": ["python -m venv .venv"]},  # nothing to warm yet
    )
    assert warm_kinds(settings, found, contained=True, limit=9) == [
        WarmKind("/opt/py/bin/python3", False, "quiet"),
        WarmKind("/opt/py/bin/python3", False, "plain"),
        WarmKind("/opt/py/bin/python3", False, "again"),
        WarmKind("/usr/bin/python3.12", True, "own"),
    ]
    # Uncontained, the network and the repository are no part of the kind; `limit`
    # keeps the first ones.
    assert warm_kinds(settings, found, contained=False, limit=1) == [
        WarmKind("/opt/py/bin/python3", False)
    ]


def test_a_contract_finds_its_warm_interpreter_started() -> None:
    settings = Settings(containment="off")
    stop_warm_pytest()  # none left by other tests: only warm-up's count
    warm_up(settings, contracts(settings, quiet={"env": NO_AUTOLOAD}), no_mirror)
    started = warm_process_pids()
    job_gets = warm_interpreter(sys.executable)
    assert job_gets.process_pid in started and job_gets.forks == 0
    assert pid_alive(job_gets.process_pid)


def no_mirror(repo: str) -> Path:
    return Path("/nonexistent") / repo


def test_contained_warm_up_starts_one_per_network_and_repository_and_the_jobs_get_them() -> None:
    settings = contained_settings()
    slot = process_slot(settings.workdir_path)
    assert slot is not None
    stop_warm_pytest()

    def mirror_of(repo: str) -> Path:
        return settings.workdir_path / "mirrors" / f"{repo}.git"

    for repo in ("quiet", "online"):
        mirror_of(repo).mkdir(parents=True, exist_ok=True)
    warm_up(
        settings,
        contracts(settings, quiet={"env": NO_AUTOLOAD}, online={"network": True}, new={}),
        mirror_of,  # `new` has no mirror yet: its first job starts its warm interpreter
    )
    started = warm_process_pids()
    quiet = SuiteView(writable=(), readable=(mirror_of("quiet"),))
    online = SuiteView(writable=(), readable=(mirror_of("online"),), network=True)
    isolated = contained_warm(settings, quiet, sys.executable, slot)
    networked = contained_warm(settings, online, sys.executable, slot)
    assert isolated is not None and networked is not None
    assert {isolated.process_pid, networked.process_pid} == started
    assert isolated.jail and networked.jail
    assert (isolated.jail.network, networked.jail.network) == (False, True)
    assert mirror_of("quiet") in isolated.jail.readable
    assert mirror_of("online") not in isolated.jail.readable


def test_warm_up_of_an_interpreter_that_is_not_there_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(containment="off")
    stop_warm_pytest()
    # At its own level: an earlier test may have left the root logger's at ERROR.
    with caplog.at_level(logging.WARNING, logger="testgate.containment"):
        warm_up(
            settings, contracts(settings, gone={"python": "/nonexistent/bin/python3"}), no_mirror
        )
    assert warm_process_pids() == set()
    assert "no warm interpreter for" in caplog.text and "/nonexistent/bin/python3" in caplog.text
