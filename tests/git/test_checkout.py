"""Real bare origins: mirror per repo, worktree per job, always cleaned up."""

from __future__ import annotations

import shutil
import threading
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.repofactory import branch_tip, git, make_origin, push_commit
from worker.errors import CheckoutError
from worker.git.checkout import Checkout, checkout

FILES = {"tests/test_a.py": "def test_a():\n    pass\n"}


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origins", "app", FILES)


def open_checkout(
    tmp_path: Path,
    commit: str | None = None,
    branch: str = "feature/x",
    template: str | None = None,
) -> AbstractContextManager[Checkout]:
    return checkout(
        "app",
        branch,
        commit,
        workdir=tmp_path / "work",
        url_template=template or str(tmp_path / "origins" / "{repo}.git"),
        git_timeout_s=60,
    )


def test_the_branch_tip_is_checked_out_in_a_private_worktree(tmp_path: Path, origin: Path) -> None:
    with open_checkout(tmp_path) as co:
        assert co.commit == branch_tip(origin, "feature/x")
        assert (co.path / "tests/test_a.py").is_file()
        assert git(co.path, "rev-parse", "HEAD") == co.commit
        path = co.path
    assert not path.exists()
    assert list((tmp_path / "work" / "jobs").iterdir()) == []


def test_a_given_older_commit_is_checked_out_exactly(tmp_path: Path, origin: Path) -> None:
    old = branch_tip(origin, "feature/x")
    push_commit(origin, "feature/x", {"new.txt": "x"}, "newer")
    with open_checkout(tmp_path, commit=old) as co:
        assert co.commit == old
        assert not (co.path / "new.txt").exists()


def test_a_commit_that_is_not_on_origin_is_a_checkout_error(tmp_path: Path, origin: Path) -> None:
    with (
        pytest.raises(CheckoutError, match="not found on origin"),
        open_checkout(tmp_path, commit="0" * 40),
    ):
        pass


def test_a_missing_branch_is_a_checkout_error(tmp_path: Path, origin: Path) -> None:
    with (
        pytest.raises(CheckoutError, match="branch 'nope' not found"),
        open_checkout(tmp_path, branch="nope"),
    ):
        pass


def test_an_unreachable_origin_is_a_checkout_error_and_leaves_nothing(tmp_path: Path) -> None:
    with (
        pytest.raises(CheckoutError, match="clone failed"),
        open_checkout(tmp_path, template=str(tmp_path / "missing" / "{repo}.git")),
    ):
        pass
    assert list((tmp_path / "work" / "jobs").iterdir()) == []
    assert [p.name for p in (tmp_path / "work" / "mirrors").iterdir()] == ["app.lock"]


def test_the_worktree_is_removed_when_the_job_raises(tmp_path: Path, origin: Path) -> None:
    seen: list[Path] = []
    with pytest.raises(RuntimeError), open_checkout(tmp_path) as co:
        seen.append(co.path)
        raise RuntimeError("the job blew up")
    assert not seen[0].exists()
    assert git(tmp_path / "work" / "mirrors" / "app.git", "worktree", "list").count("\n") == 0


def test_the_mirror_is_reused_and_sees_new_commits(tmp_path: Path, origin: Path) -> None:
    with open_checkout(tmp_path):
        pass
    newer = push_commit(origin, "feature/x", {"later.txt": "y"}, "later")
    with open_checkout(tmp_path) as co:
        assert co.commit == newer
        assert (co.path / "later.txt").is_file()


def test_a_commit_already_in_the_mirror_needs_no_fetch(tmp_path: Path, origin: Path) -> None:
    with open_checkout(tmp_path) as first:
        known = first.commit
    shutil.rmtree(origin)  # any fetch would now fail
    with open_checkout(tmp_path, commit=known) as co:
        assert co.commit == known


def test_concurrent_jobs_get_separate_directories(tmp_path: Path, origin: Path) -> None:
    paths: list[Path] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def job() -> None:
        try:
            with open_checkout(tmp_path) as co:
                barrier.wait(timeout=30)  # all four hold a worktree at once
                paths.append(co.path)
                assert (co.path / "tests/test_a.py").is_file()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(set(paths)) == 4


def test_a_half_written_mirror_from_a_crashed_clone_is_replaced(
    tmp_path: Path, origin: Path
) -> None:
    broken = tmp_path / "work" / "mirrors" / "app.git"
    broken.mkdir(parents=True)
    (broken / "objects").mkdir()
    with open_checkout(tmp_path) as co:
        assert isinstance(co, Checkout)
        assert co.commit == branch_tip(origin, "feature/x")
