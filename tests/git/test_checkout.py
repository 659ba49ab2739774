"""Real bare origins: mirror per repo, worktree per job, always cleaned up."""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from testkit.repofactory import branch_tip, git, make_origin, push_commit
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
    job_dir: Path | None = None,
) -> AbstractContextManager[Checkout]:
    return checkout(
        "app",
        branch,
        commit,
        workdir=tmp_path / "work",
        url_template=template or str(tmp_path / "origins" / "{repo}.git"),
        git_timeout_s=60,
        job_dir=job_dir,
    )


def test_the_branch_tip_is_checked_out_in_a_private_worktree(tmp_path: Path, origin: Path) -> None:
    with open_checkout(tmp_path) as co:
        assert co.commit == branch_tip(origin, "feature/x")
        assert (co.path / "tests/test_a.py").is_file()
        assert git(co.path, "rev-parse", "HEAD") == co.commit
        path = co.path
    assert not path.exists()
    assert list((tmp_path / "work" / "jobs").iterdir()) == []


@pytest.mark.parametrize("given", [False, True], ids=["tip", "commit"])
def test_a_sha256_repository_is_checked_out_at_its_64_hex_commit(
    tmp_path: Path, given: bool
) -> None:
    origin = make_origin(tmp_path / "origins", "app", FILES, object_format="sha256")
    tip = branch_tip(origin, "feature/x")
    assert len(tip) == 64
    with open_checkout(tmp_path, commit=tip if given else None) as co:
        assert (co.commit, co.object_format) == (tip, "sha256")
        assert git(co.path, "rev-parse", "HEAD") == tip
        assert (co.path / "tests/test_a.py").is_file()


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


def test_the_worktree_is_one_git_knows_and_forgets_with_the_job(
    tmp_path: Path, origin: Path
) -> None:
    mirror = tmp_path / "work" / "mirrors" / "app.git"
    with open_checkout(tmp_path) as co:
        listed = git(mirror, "worktree", "list", "--porcelain")
        assert f"worktree {co.path}\nHEAD {co.commit}\ndetached" in listed
        assert git(co.path, "status", "--porcelain") == ""  # the index matches the files
        assert git(co.path, "rev-parse", "--git-common-dir") == str(mirror)
    assert git(mirror, "worktree", "list", "--porcelain").count("worktree ") == 1  # the mirror
    assert not any((mirror / "worktrees").glob("*"))


def test_jobs_of_different_branches_fetch_at_the_same_time(tmp_path: Path, origin: Path) -> None:
    branches = [f"feature/b{i}" for i in range(4)]
    for name in branches:
        git(origin, "branch", name, "feature/x")
    with open_checkout(tmp_path):
        pass  # the mirror exists; every branch moves on after it
    tips = {b: push_commit(origin, b, {f"{b}.txt": b}, f"on {b}") for b in branches}
    got: dict[str, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(branches))

    def job(branch: str) -> None:
        try:
            barrier.wait(timeout=30)
            with open_checkout(tmp_path, branch=branch) as co:
                assert (co.path / f"{branch}.txt").read_text() == branch
                got[branch] = co.commit
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(b,)) for b in branches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and got == tips


def test_a_slot_reused_after_its_process_died_gets_a_fresh_worktree(
    tmp_path: Path, origin: Path
) -> None:
    """A process that died mid-job left its worktree's record; the slot's directory was
    emptied and is given to the next job, whose checkout takes the path over."""
    slot = tmp_path / "slot"
    mirror = tmp_path / "work" / "mirrors" / "app.git"
    with open_checkout(tmp_path, job_dir=slot):
        shutil.copytree(mirror / "worktrees", tmp_path / "left-behind")
    shutil.copytree(tmp_path / "left-behind", mirror / "worktrees")  # as if never removed
    with open_checkout(tmp_path, job_dir=slot) as co:
        assert git(co.path, "rev-parse", "HEAD") == co.commit
        assert git(mirror, "worktree", "list", "--porcelain").count("worktree ") == 2
    assert not any((mirror / "worktrees").glob("*"))


def test_housekeeping_prunes_the_records_of_worktrees_that_died_with_their_process(
    tmp_path: Path, origin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.git.checkout as module

    mirror = tmp_path / "work" / "mirrors" / "app.git"
    with open_checkout(tmp_path) as co:
        shutil.copytree(mirror / "worktrees", tmp_path / "left-behind")
    shutil.copytree(tmp_path / "left-behind", mirror / "worktrees")  # its job dir is gone
    monkeypatch.setattr(module, "_GC_LOOSE_IN_ONE_DIR", -1)
    with open_checkout(tmp_path) as co:  # a fetch, then housekeeping
        assert [r.name for r in (mirror / "worktrees").iterdir()] == [
            Path(git(co.path, "rev-parse", "--git-dir")).name
        ]
        assert git(co.path, "rev-parse", "HEAD") == co.commit


@pytest.mark.parametrize("swap", ["fifo", "link-to-dev-zero", "huge"])
def test_housekeeping_is_not_blocked_by_what_a_running_suite_made_of_its_dot_git(
    tmp_path: Path, origin: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """A job's suite may swap its worktree's `.git` for a FIFO (reading it would block
    for ever, with the repo's lock held), a link to a device that never ends, or a huge
    file, while another job's fetch runs the housekeeping that reads every `.git`."""
    import worker.git.checkout as module

    monkeypatch.setattr(module, "_GC_LOOSE_IN_ONE_DIR", -1)
    done: list[str] = []
    with open_checkout(tmp_path) as hostile:
        dot_git = hostile.path / ".git"
        dot_git.unlink()
        if swap == "fifo":
            os.mkfifo(dot_git)
        elif swap == "link-to-dev-zero":
            dot_git.symlink_to("/dev/zero")
        else:
            with dot_git.open("wb") as handle:
                handle.truncate(10 << 30)  # sparse: 10 GiB of zeros

        def honest_job() -> None:
            with open_checkout(tmp_path) as co:  # a fetch, then housekeeping
                done.append(git(co.path, "rev-parse", "HEAD"))

        thread = threading.Thread(target=honest_job, daemon=True)
        thread.start()
        thread.join(timeout=60)
        assert done == [hostile.commit]
