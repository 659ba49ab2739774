"""The report commit: made outside the suite's reach, only on top of the tested commit,
as test-runner, to the feature branch only, never forced, and `pushed` only when the
origin agrees.

Each attack is what a hostile suite can do to its worktree and to every git dir it
can write (the worktree's git dir and, without containment, the shared mirror), or
what a hostile branch can ship; the report commit must come out the same every time.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.repofactory import GIT_ENV, branch_tip, git, make_origin, push_change, push_commit
from tests.integration.scenarios import FORGED_REPORT
from worker.git.checkout import Checkout, checkout
from worker.report.publish import GitIdentity, PublishResult, publish_report

REPORT = "docs/work-items/WI-1/13-test-report.md"
TEXT = "---\nresult: FAIL\nstatus: failed\n---\nreal report\n"
BRANCH = "feature/x"

Attack = Callable[[Checkout], None]


@pytest.fixture
def identity(tmp_path: Path) -> GitIdentity:
    return GitIdentity("test-runner", "test-runner@gate.example", tmp_path / "home")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origins", "app", {REPORT: FORGED_REPORT, "a.txt": "a"})


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that any planted filter, hook or fsmonitor creates when it runs."""
    return tmp_path / "planted-code-ran"


@pytest.fixture
def evil_script(tmp_path: Path, marker: Path) -> Path:
    """Touches the marker, then behaves as a pass-through filter (stdin to stdout)."""
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\nexit 0\n")
    script.chmod(0o755)
    return script


def publish(
    tmp_path: Path,
    identity: GitIdentity,
    *,
    attack: Attack | None = None,
    branch: str = BRANCH,
    rel_path: str = REPORT,
) -> tuple[PublishResult, str]:
    """Check out the branch as a job would, let `attack` run as the suite would, then
    publish. Returns the result and the tested commit."""
    with checkout(
        "app",
        BRANCH,
        None,
        workdir=tmp_path / "work",
        url_template=str(tmp_path / "origins" / "{repo}.git"),
    ) as co:
        if attack is not None:
            attack(co)
        result = publish_report(
            co.mirror,
            co.commit,
            rel_path,
            TEXT,
            origin=co.origin,
            object_format=co.object_format,
            branch=branch,
            message="test: test gate FAIL for WI-1",
            identity=identity,
        )
    return result, co.commit


def assert_exact_report_on_branch(origin: Path, result: PublishResult, tested: str) -> None:
    """The branch tip is the report commit: exactly TEXT at REPORT as a regular file,
    only parent the tested commit, nothing else changed but what stood at REPORT."""
    assert result.pushed, result.detail
    commit = result.report_commit
    assert commit is not None and branch_tip(origin, BRANCH) == commit
    assert git(origin, "rev-list", "--parents", "-n", "1", commit).split() == [commit, tested]
    entry = git(origin, "ls-tree", commit, "--", REPORT)
    assert entry.startswith("100644 blob ") and entry.endswith(f"\t{REPORT}")
    raw = subprocess.run(
        ["git", "cat-file", "blob", f"{commit}:{REPORT}"],
        cwd=origin,
        capture_output=True,
        check=True,
    ).stdout
    assert raw == TEXT.encode()
    assert git(origin, "ls-tree", "-r", "--name-only", commit, "--", "docs/work-items/WI-1") == (
        REPORT
    )
    # The objects the gate wrote itself are ones git accepts in its strictest check.
    git(origin, "fsck", "--strict", "--no-dangling")


def ship(origin: Path, change: Callable[[Path], None]) -> None:
    push_change(origin, BRANCH, change, "the branch ships something at the report path")


def plant_in_every_git_dir(co: Checkout, *settings: tuple[str, str]) -> None:
    """What a suite reaches through `git rev-parse --git-dir / --git-common-dir`."""
    git_dir = Path(git(co.path, "rev-parse", "--absolute-git-dir"))
    common = Path(git(co.path, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    assert common.resolve() == co.mirror.resolve()
    for key, value in settings:
        git(co.path, "config", "--file", str(common / "config"), key, value)
        git(co.path, "config", "--file", str(git_dir / "config.worktree"), key, value)


def prove_it_runs(co: Checkout, marker: Path, *git_args: str) -> None:
    """Positive control: the planted code does run for git in the suite's worktree."""
    env = {**os.environ, **GIT_ENV, "HOME": str(co.path)}
    subprocess.run(["git", *git_args], cwd=co.path, env=env, capture_output=True, check=False)
    assert marker.exists(), f"the planted code did not run for git {git_args}"
    marker.unlink()


# -- the ordinary path ----------------------------------------------------------------


def test_the_report_lands_on_the_feature_branch_as_test_runner(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    main_before = branch_tip(origin, "main")
    result, tested = publish(tmp_path, identity)
    assert (result.written, result.pushed) == (True, True)
    assert_exact_report_on_branch(origin, result, tested)
    assert git(origin, "log", "-1", "--format=%an|%ae|%cn|%ce|%s", BRANCH) == (
        "test-runner|test-runner@gate.example|test-runner|test-runner@gate.example|"
        "test: test gate FAIL for WI-1"
    )
    assert branch_tip(origin, "main") == main_before


def test_a_sha256_repository_gets_the_same_report_commit(
    tmp_path: Path, identity: GitIdentity
) -> None:
    origin = make_origin(
        tmp_path / "origins", "app", {REPORT: FORGED_REPORT}, object_format="sha256"
    )
    result, tested = publish(tmp_path, identity)
    assert len(tested) == 64
    assert_exact_report_on_branch(origin, result, tested)


def test_a_second_identical_report_makes_no_new_commit(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    first, _ = publish(tmp_path, identity)
    second, tested = publish(tmp_path, identity)
    assert tested == first.report_commit
    assert second.pushed and second.report_commit == first.report_commit


@pytest.mark.parametrize("protected", ["main", "master"])
def test_a_report_is_never_pushed_to_main(
    tmp_path: Path, origin: Path, identity: GitIdentity, protected: str
) -> None:
    main_before = branch_tip(origin, "main")
    result, _ = publish(tmp_path, identity, branch=protected)
    assert result.pushed is False and f"never push to {protected}" in result.detail
    assert branch_tip(origin, "main") == main_before
    assert protected == "main" or "master" not in git(origin, "branch", "--list")


def test_a_report_path_that_is_not_plain_is_refused(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    tip = branch_tip(origin, BRANCH)
    for bad in ("../escaped.md", "/abs.md", "docs/.git/x.md", "docs//x.md", ":(glob)docs"):
        result, _ = publish(tmp_path, identity, rel_path=bad)
        assert (result.written, result.pushed) == (False, False), bad
        assert "not a plain relative path" in result.detail
    assert branch_tip(origin, BRANCH) == tip


# -- the branch moved, or the origin does not hold the commit ------------------------


def test_a_moved_branch_rejects_the_push_and_is_not_forced(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    def someone_pushes(co: Checkout) -> None:
        push_commit(origin, BRANCH, {"b.txt": "b"}, "someone else pushed")

    result, _ = publish(tmp_path, identity, attack=someone_pushes)
    assert result.written and not result.pushed
    assert "not pushed" in result.detail and "never forced" in result.detail
    assert git(origin, "log", "-1", "--format=%s", BRANCH) == "someone else pushed"
    assert result.report_commit is not None
    assert result.report_commit not in git(origin, "rev-list", "--all")


def test_pushed_is_false_when_the_origin_does_not_hold_the_report_commit(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    # The origin accepts the push, then its own hook moves the branch back.
    before = branch_tip(origin, BRANCH)
    hook = origin / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ngit update-ref refs/heads/{BRANCH} {before}\n")
    hook.chmod(0o755)
    result, _ = publish(tmp_path, identity)
    assert result.written and not result.pushed
    assert f"at {before}" in result.detail
    assert branch_tip(origin, BRANCH) == before


def test_an_untested_commit_made_in_the_worktree_is_never_pushed(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    untested: list[str] = []

    def commit_new_code(co: Checkout) -> None:
        (co.path / "backdoor.py").write_text("OWNED = True\n")
        report = co.path / REPORT
        report.write_text(FORGED_REPORT)
        git(co.path, "add", "-A")
        git(co.path, "commit", "-q", "-m", "untested")
        untested.append(git(co.path, "rev-parse", "HEAD"))

    result, tested = publish(tmp_path, identity, attack=commit_new_code)
    assert_exact_report_on_branch(origin, result, tested)
    assert untested[0] not in git(origin, "rev-list", "--all")
    assert "backdoor.py" not in git(origin, "ls-tree", "-r", "--name-only", BRANCH)


# -- the branch ships something else at the report path ------------------------------


def test_a_report_path_shipped_as_a_symlink_to_a_forged_pass_is_replaced(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    def link(work: Path) -> None:
        (work / "forged.md").write_text(FORGED_REPORT)
        (work / REPORT).unlink()
        (work / REPORT).symlink_to("../../../forged.md")

    ship(origin, link)
    result, tested = publish(tmp_path, identity)
    assert_exact_report_on_branch(origin, result, tested)
    assert git(origin, "show", f"{BRANCH}:forged.md") == FORGED_REPORT.strip()


def test_a_report_path_shipped_as_a_directory_is_replaced(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    def directory(work: Path) -> None:
        (work / REPORT).unlink()
        (work / REPORT).mkdir()
        (work / REPORT / "index.md").write_text(FORGED_REPORT)
        (work / REPORT / "deeper").mkdir()
        (work / REPORT / "deeper" / "x.md").write_text(FORGED_REPORT)

    ship(origin, directory)
    result, tested = publish(tmp_path, identity)
    assert_exact_report_on_branch(origin, result, tested)


@pytest.mark.parametrize("parent", ["docs/work-items/WI-1", "docs/work-items", "docs"])
def test_a_parent_of_the_report_shipped_as_a_symlink_is_replaced(
    tmp_path: Path, origin: Path, identity: GitIdentity, parent: str
) -> None:
    def link_parent(work: Path) -> None:
        shutil.rmtree(work / "docs")
        (work / "elsewhere" / "work-items" / "WI-1").mkdir(parents=True)
        (work / "elsewhere" / "work-items" / "WI-1" / "13-test-report.md").write_text(FORGED_REPORT)
        real = {"docs": "elsewhere", "docs/work-items": "elsewhere/work-items"}
        for above in ("docs", "docs/work-items"):
            if len(above) < len(parent):
                (work / above).mkdir(exist_ok=True)
        depth = parent.count("/")
        target = real.get(parent, "elsewhere/work-items/WI-1")
        (work / parent).symlink_to("../" * depth + target)

    ship(origin, link_parent)
    result, tested = publish(tmp_path, identity)
    assert_exact_report_on_branch(origin, result, tested)
    forged = git(origin, "show", f"{BRANCH}:elsewhere/work-items/WI-1/13-test-report.md")
    assert forged == FORGED_REPORT.strip()


def test_a_parent_of_the_report_shipped_as_a_file_is_replaced(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    def file_parent(work: Path) -> None:
        shutil.rmtree(work / "docs")
        (work / "docs").mkdir()
        (work / "docs" / "work-items").write_text("a file where a directory goes\n")

    ship(origin, file_parent)
    result, tested = publish(tmp_path, identity)
    assert_exact_report_on_branch(origin, result, tested)


@pytest.mark.parametrize("where", [REPORT, "docs/work-items/WI-1", "docs"])
def test_a_submodule_at_the_report_path_or_a_parent_is_replaced(
    tmp_path: Path, origin: Path, identity: GitIdentity, where: str
) -> None:
    sub_commit = branch_tip(origin, "main")

    def remove_docs(work: Path) -> None:
        shutil.rmtree(work / "docs")
        if where != "docs":
            (work / "docs" / "keep").mkdir(parents=True)
            (work / "docs" / "keep" / "k.md").write_text("kept\n")

    def gitlink(work: Path) -> None:
        git(work, "update-index", "--add", "--cacheinfo", f"160000,{sub_commit},{where}")

    push_change(origin, BRANCH, remove_docs, "a submodule entry", then_in_index=gitlink)
    assert git(origin, "ls-tree", BRANCH, "--", where).startswith("160000 commit ")
    result, tested = publish(tmp_path, identity)
    assert_exact_report_on_branch(origin, result, tested)
    if where != "docs":
        assert git(origin, "show", f"{BRANCH}:docs/keep/k.md") == "kept"


# -- the suite plants code in every git dir it can write -----------------------------


def test_a_gitattributes_clean_filter_configured_in_the_mirror_never_runs(
    tmp_path: Path, origin: Path, identity: GitIdentity, marker: Path, evil_script: Path
) -> None:
    def attributes(work: Path) -> None:
        (work / ".gitattributes").write_text("* filter=evil\n*.md filter=evil text eol=crlf\n")

    ship(origin, attributes)

    def plant_filter(co: Checkout) -> None:
        plant_in_every_git_dir(
            co,
            ("filter.evil.clean", str(evil_script)),
            ("filter.evil.smudge", str(evil_script)),
            ("filter.evil.process", str(evil_script)),
            ("filter.evil.required", "true"),
        )
        info = co.mirror / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_text("* filter=evil\n")
        (co.path / "new.md").write_text("x\n")
        prove_it_runs(co, marker, "add", "new.md")

    result, tested = publish(tmp_path, identity, attack=plant_filter)
    assert_exact_report_on_branch(origin, result, tested)
    assert not marker.exists()


def test_hooks_planted_in_the_mirror_never_run(
    tmp_path: Path, origin: Path, identity: GitIdentity, marker: Path, evil_script: Path
) -> None:
    hook_names = (
        "pre-commit",
        "commit-msg",
        "post-commit",
        "pre-push",
        "post-index-change",
        "reference-transaction",
        "pre-auto-gc",
        "post-checkout",
    )

    def plant_hooks(co: Checkout) -> None:
        elsewhere = tmp_path / "hooks-elsewhere"
        for hooks in (co.mirror / "hooks", elsewhere):
            hooks.mkdir(exist_ok=True)
            for name in hook_names:
                shutil.copy(evil_script, hooks / name)
                (hooks / name).chmod(0o755)
        plant_in_every_git_dir(co, ("core.hooksPath", str(elsewhere)))
        prove_it_runs(co, marker, "commit", "--allow-empty", "-q", "-m", "hooked")

    result, tested = publish(tmp_path, identity, attack=plant_hooks)
    assert_exact_report_on_branch(origin, result, tested)
    assert not marker.exists()


def test_an_fsmonitor_command_planted_in_the_mirror_never_runs(
    tmp_path: Path, origin: Path, identity: GitIdentity, marker: Path, evil_script: Path
) -> None:
    def plant_fsmonitor(co: Checkout) -> None:
        plant_in_every_git_dir(
            co, ("core.fsmonitor", str(evil_script)), ("core.untrackedCache", "true")
        )
        prove_it_runs(co, marker, "status")

    result, tested = publish(tmp_path, identity, attack=plant_fsmonitor)
    assert_exact_report_on_branch(origin, result, tested)
    assert not marker.exists()


def test_config_that_redirects_the_push_or_runs_programs_is_never_read(
    tmp_path: Path, origin: Path, identity: GitIdentity, marker: Path, evil_script: Path
) -> None:
    decoy = make_origin(tmp_path / "decoys", "app", {"x": "x"})
    included = tmp_path / "included.cfg"
    included.write_text(f"[core]\n\tsshCommand = {evil_script}\n")

    def plant_config(co: Checkout) -> None:
        plant_in_every_git_dir(
            co,
            ("remote.origin.url", str(decoy)),
            ("remote.origin.pushurl", str(decoy)),
            ("remote.origin.receivepack", str(evil_script)),
            ("remote.origin.mirror", "true"),
            (f"url.{decoy}.insteadOf", str(origin)),
            (f"url.{decoy}.pushInsteadOf", str(origin)),
            ("commit.gpgSign", "true"),
            ("gpg.program", str(evil_script)),
            ("core.pager", str(evil_script)),
            ("credential.helper", f"!{evil_script}"),
            ("include.path", str(included)),
        )
        prove_it_runs(co, marker, "commit", "--allow-empty", "-q", "-m", "signed")

    decoy_tip = branch_tip(decoy, BRANCH)
    result, tested = publish(tmp_path, identity, attack=plant_config)
    assert_exact_report_on_branch(origin, result, tested)
    assert branch_tip(decoy, BRANCH) == decoy_tip
    assert not marker.exists()


def test_git_variables_in_the_workers_environment_are_not_inherited(
    tmp_path: Path,
    origin: Path,
    identity: GitIdentity,
    marker: Path,
    evil_script: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "env.cfg"
    config.write_text(f"[core]\n\thooksPath = {tmp_path}\n[commit]\n\tgpgSign = true\n")
    (tmp_path / "pre-push").symlink_to(evil_script)

    def poison_environment(co: Checkout) -> None:  # only publish runs git after this
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
        monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
        monkeypatch.setenv("GIT_CONFIG_KEY_0", "gpg.program")
        monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(evil_script))
        monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "foreign-index"))
        monkeypatch.setenv("GIT_DIR", str(co.mirror))

    result, tested = publish(tmp_path, identity, attack=poison_environment)
    monkeypatch.undo()
    assert_exact_report_on_branch(origin, result, tested)
    assert not marker.exists()
    assert not (tmp_path / "foreign-index").exists()


def test_the_worktree_the_suite_mangled_is_not_used(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    def mangle(co: Checkout) -> None:
        report = co.path / REPORT
        report.unlink()
        report.symlink_to(tmp_path / "outside.md")
        (co.path / ".git").unlink()  # the worktree's pointer to its git dir
        (co.path / ".git").write_text("gitdir: /nonexistent\n")
        os.chmod(co.path, stat.S_IRUSR | stat.S_IXUSR)

    try:
        result, tested = publish(tmp_path, identity, attack=mangle)
    finally:
        for job in (tmp_path / "work" / "jobs").glob("*/src"):
            job.chmod(0o755)
    assert_exact_report_on_branch(origin, result, tested)
    assert not (tmp_path / "outside.md").exists()


# -- the suite rewrites objects in the mirror ----------------------------------------


def rewrite_object(mirror: Path, sha: str, kind: str, content: bytes) -> None:
    """Put `content` under the name `sha` as a loose object, as a suite that can write
    the mirror could; prove that git then reads it for `sha`."""
    loose = mirror / "objects" / sha[:2] / sha[2:]
    loose.parent.mkdir(exist_ok=True)
    # Replaced, not written through: a mirror cloned from a local origin shares its
    # object files with the origin by hard links.
    loose.unlink(missing_ok=True)
    loose.write_bytes(zlib.compress(f"{kind} {len(content)}\0".encode() + content))
    shown = subprocess.run(
        ["git", "cat-file", kind, sha], cwd=mirror, capture_output=True, check=False
    ).stdout
    assert shown == content, "git does not read the rewritten object"


def evil_tree(mirror: Path) -> bytes:
    blob = git(mirror, "hash-object", "-w", "/dev/null")
    return b"100644 backdoor.py\0" + bytes.fromhex(blob)


def test_a_rewritten_tree_on_the_report_path_stops_the_publish(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    before = branch_tip(origin, BRANCH)

    def rewrite_root(co: Checkout) -> None:
        root = git(co.mirror, "rev-parse", f"{co.commit}^{{tree}}")
        rewrite_object(co.mirror, root, "tree", evil_tree(co.mirror))

    result, _ = publish(tmp_path, identity, attack=rewrite_root)
    assert (result.written, result.pushed, result.report_commit) == (False, False, None)
    assert "the mirror was altered" in result.detail
    assert branch_tip(origin, BRANCH) == before


def test_a_rewritten_subtree_elsewhere_never_reaches_the_origin(
    tmp_path: Path, identity: GitIdentity
) -> None:
    origin = make_origin(
        tmp_path / "origins", "app", {REPORT: FORGED_REPORT, "src/app.py": "print(1)\n"}
    )
    real_src = git(origin, "rev-parse", f"{BRANCH}:src")

    def rewrite_src(co: Checkout) -> None:
        rewrite_object(co.mirror, real_src, "tree", evil_tree(co.mirror))

    result, tested = publish(tmp_path, identity, attack=rewrite_src)
    assert_exact_report_on_branch(origin, result, tested)
    assert git(origin, "rev-parse", f"{BRANCH}:src") == real_src
    assert git(origin, "ls-tree", "-r", "--name-only", BRANCH, "--", "src") == "src/app.py"


def test_a_tested_commit_that_is_not_a_commit_of_the_mirror_is_refused(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    before = branch_tip(origin, BRANCH)
    with checkout(
        "app",
        BRANCH,
        None,
        workdir=tmp_path / "work",
        url_template=str(tmp_path / "origins" / "{repo}.git"),
    ) as co:
        tree = git(co.mirror, "rev-parse", f"{co.commit}^{{tree}}")
        for tested in ("0" * 40, tree, "HEAD", co.commit[:12]):
            result = publish_report(
                co.mirror,
                tested,
                REPORT,
                TEXT,
                origin=co.origin,
                object_format=co.object_format,
                branch=BRANCH,
                message="m",
                identity=identity,
            )
            assert (result.written, result.pushed, result.report_commit) == (False, False, None)
    assert branch_tip(origin, BRANCH) == before
