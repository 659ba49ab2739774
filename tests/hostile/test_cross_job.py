"""Nothing a suite does outlives its job (docs/security.md): a hostile job of one
repository, then on the same pool process honest jobs of it and of other repositories,
which must get their own verdicts. Containment required, warm starts on, a worker of
one pool process and one of two (where a victim may also run on the process that did
not run the hostile job)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.hostile import cross_job as x
from tests.hostile.harness import (
    LAYER_REPO,
    OTHER_REPO,
    REPO,
    VENV_REPO,
    Case,
    Fleet,
    problems_of,
    run_cases,
    summary,
)

# What a suite can reach does not depend on the broker: Redis only, with one pool
# process and with two.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.parametrize(
        "fleet", [("redis", 1), ("redis", 2)], indirect=True, ids=["1-process", "2-processes"]
    ),
]


def victims(*repos: str) -> list[Case]:
    return [Case(f"victim-{r}", x.honest_failing, "FAIL", "code-fail", repo=r) for r in repos]


def judge(fleet: Fleet, cases: Sequence[Case]) -> None:
    """The first case alone, then the others at once (on two pool processes, spread
    over both: each may find what the first left)."""
    runs = run_cases(fleet, cases[:1]) + run_cases(fleet, cases[1:])
    problems = problems_of(fleet, runs)
    print(f"{fleet.broker_name}:\n{summary(runs)}")
    assert not problems, "\n".join(problems) + "\nverdicts:\n" + summary(runs)


def test_x_a_cached_venv_runs_nothing_of_the_branch(fleet: Fleet) -> None:
    # Its setup step's `python -m pip` finds the branch's pip.py first on sys.path when
    # the worktree is the setup's cwd; its suite finds the venv's site dir. First in the
    # module: the venv of these dependency files is not built yet.
    hijack = Case("x-pip-hijack", x.hijacks_pip_in_setup, "PASS", "code-pass", repo=VENV_REPO)
    judge(fleet, [hijack, *victims(VENV_REPO, OTHER_REPO)])


def test_x_what_a_job_installs_of_its_own_dies_with_it(fleet: Fleet) -> None:
    # Both branches' dependency files are the same: one cached venv, read-only to the
    # job's `pip install -e .`, which goes to a layer in the job's HOME.
    flip = Case("x-layer-flip", x.installs_a_flip, "PASS", "code-pass", repo=LAYER_REPO)
    honest = Case("victim-layer", x.installs_itself_honestly, "FAIL", "code-fail", repo=LAYER_REPO)
    judge(fleet, [flip, honest, *victims(OTHER_REPO)])


def test_x_nothing_a_suite_plants_reaches_a_later_job(fleet: Fleet) -> None:
    # The sandbox root, /dev, /var, /run, the temp dirs, every directory above the
    # worktree, HOME (user site, pip and git config), the interpreter's site dirs.
    planter = Case("x-plants", x.plants_everywhere, "PASS", "code-pass")
    judge(fleet, [planter, *victims(OTHER_REPO, REPO, VENV_REPO)])


def test_x_a_suite_sees_only_its_own_repository(fleet: Fleet) -> None:
    judge(
        fleet,
        [
            *victims(OTHER_REPO),  # its mirror exists before the snoop
            Case("x-snoop", x.sees_only_its_own_mirror, "PASS", "code-pass"),
        ],
    )


def test_x_no_marker_of_a_job_is_seen_by_the_next(fleet: Fleet) -> None:
    judge(
        fleet,
        [
            Case("x-mark", x.marks_every_writable_directory, "PASS", "code-pass"),
            # Twice each: on two pool processes, one likely lands on the marker's.
            *[
                Case(f"x-find-other-{n}", x.finds_no_marker, "PASS", "code-pass", repo=OTHER_REPO)
                for n in (1, 2)
            ],
            *[Case(f"x-find-same-{n}", x.finds_no_marker, "PASS", "code-pass") for n in (1, 2)],
            *victims(REPO),
        ],
    )
