"""Gaming the verdict: each trick of tests/hostile/gaming.py against the default, the
integrity and the trusted contract, in-process with real git and real pytest runs; then
through the contained single-process worker (tests/hostile/conftest.py), with trusted
and hidden tests and required tests.

Under `trusted_tests` every trick must FAIL; every control gets its right verdict
under every contract. What the default and the integrity contracts make of the tricks
is printed (most of them get PASS there: that is why trusted tests exist)."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.repofactory import make_origin, show_file
from tests.gateworld import World, WorldFactory, job
from tests.hostile.gaming import CONTROLS, MAIN, MUL, TRICKS, trick_files
from tests.hostile.harness import (
    TRUSTED_REPO,
    Case,
    Fleet,
    honest_cases,
    problems_of,
    run_cases,
    summary,
)
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


# On RabbitMQ (what a suite can reach does not depend on the broker): one trick of each
# kind, as in test_attacks.py.
CORE_TRICKS = (
    "conftest-adds-xfail",
    "skiptest-from-code-under-test",
    "code-under-test-patches-pytest-on-import",
    "pytest-ini-addopts-p-branch-plugin",
    "test-moved-with-its-own-function",
)


def _trick(name: str) -> Case:
    return Case(name, lambda _: trick_files(name), "FAIL", "code-fail", repo=TRUSTED_REPO)


def _control(name: str) -> Case:
    files, expected = CONTROLS[name]
    outcome = "code-pass" if expected == "PASS" else "code-fail"
    return Case(name, lambda _: dict(files), expected, outcome, repo=TRUSTED_REPO)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_contained_worker_fails_every_trick_under_trusted_and_hidden_tests(
    fleet: Fleet,
) -> None:
    tricks = sorted(TRICKS) if fleet.broker_name == "redis" else CORE_TRICKS
    missing = Case(
        "required-test-missing",
        lambda _: dict(CONTROLS["honest-pass"][0]),
        "FAIL",
        "code-fail",
        repo=TRUSTED_REPO,
        job=(("required_tests", [MUL, "tests/test_calc.py::test_gone"]),),
    )
    required = Case(
        "required-test-passes",
        lambda _: dict(CONTROLS["honest-pass"][0]),
        "PASS",
        "code-pass",
        repo=TRUSTED_REPO,
        job=(("required_tests", [MUL]),),
    )
    cases = [*map(_trick, tricks), *map(_control, sorted(CONTROLS)), missing, required]
    runs = run_cases(fleet, [*cases, *honest_cases()])
    problems = problems_of(fleet, runs)
    print(f"{fleet.broker_name}:\n{summary(runs)}")
    assert not problems, "\n".join(problems) + "\nverdicts:\n" + summary(runs)
