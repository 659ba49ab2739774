"""Gaming the verdict: each trick of tests/hostile/gaming.py against the default, the
integrity and the trusted contract, in-process with real git and real pytest runs.

Under `trusted_tests` every trick must FAIL; every control gets its right verdict
under every contract. What the default and the integrity contracts make of the tricks
is printed (most of them get PASS there: that is why trusted tests exist)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateworld import World, WorldFactory, job
from tests.hostile.gaming import CONTROLS, MAIN, TRICKS, trick_files
from tests.repofactory import make_origin, show_file
from worker.pipeline.runner import run_gate
from worker.report.orchestrator_gate import parse_tests_verdict

REPORT = "docs/work-items/WI-5/13-test-report.md"
CONTRACTS: dict[str, dict[str, Any]] = {
    "default": {},
    "integrity": {"integrity": True},
    "trusted": {"trusted_tests": True},
}


def _verdicts(w: World, branches: dict[str, dict[str, str]]) -> dict[str, tuple[str, str]]:
    """name -> (advance's result, the report's first line of why), one job each; the
    report and the advance must agree on the verdict."""
    found = {}
    for task_id, (name, files) in enumerate(branches.items(), start=10):
        make_origin(w.origins, name, files, main_files=MAIN)
        result = run_gate(job(name, task_id=task_id), w.ctx, attempt=0, delivery_id=name)
        assert result.kind == "advanced", (name, result)
        kwargs = w.sender.sent[-1][1]
        report = show_file(w.origins / f"{name}.git", "feature/x", REPORT)
        assert parse_tests_verdict(report) is (kwargs["result"] == "PASS"), name
        why = next(line for line in report.splitlines() if line.startswith("**Why:**"))
        found[name] = (kwargs["result"], why)
    return found


def _world(world: WorldFactory, names: list[str], contract: dict[str, Any]) -> World:
    entry = {"smoke_enabled": False, "timeout_s": 60, **contract}
    return world(contracts={name: entry for name in names})


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_every_control_gets_its_verdict_under_every_contract(
    world: WorldFactory, contract: str
) -> None:
    w = _world(world, list(CONTROLS), CONTRACTS[contract])
    found = _verdicts(w, {name: dict(files) for name, (files, _) in CONTROLS.items()})
    wrong = {n: found[n] for n, (_, expected) in CONTROLS.items() if found[n][0] != expected}
    assert not wrong, wrong


def test_every_trick_fails_under_trusted_tests(world: WorldFactory) -> None:
    w = _world(world, list(TRICKS), CONTRACTS["trusted"])
    found = _verdicts(w, {name: trick_files(name) for name in TRICKS})
    print("\n".join(f"{n}: {why}" for n, (_, why) in found.items()))
    green = {name: why for name, (result, why) in found.items() if result != "FAIL"}
    assert not green, green


@pytest.mark.parametrize("contract", ["default", "integrity"])
def test_what_the_other_contracts_make_of_the_tricks(world: WorldFactory, contract: str) -> None:
    w = _world(world, list(TRICKS), CONTRACTS[contract])
    found = _verdicts(w, {name: trick_files(name) for name in TRICKS})
    passed = sorted(name for name, (result, _) in found.items() if result == "PASS")
    print(f"{contract}: {len(passed)} of {len(TRICKS)} tricks got PASS: {passed}")
    assert len(found) == len(TRICKS)
