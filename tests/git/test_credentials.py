"""The origin's credentials: given to git at fetch and push time, never in a file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.repofactory import branch_tip, git, make_origin
from tests.httpfixtures import GitHttpLog, git_http_server
from worker.errors import CheckoutError
from worker.git.checkout import checkout, forget_stored_urls
from worker.git.credentials import GitAuth, split_origin
from worker.report.publish import GitIdentity, publish_report

USER = "gate-bot"
TOKEN = "tok3n-S3CRET-4f1c9e"
ENCODED_TOKEN = "tok3n%2DS3CRET%2D4f1c9e"  # as a URL may carry it: git decodes it
REPORT = "docs/work-items/WI-1/13-test-report.md"


@pytest.mark.parametrize(
    ("url", "public", "auth"),
    [
        (
            "https://u:p%40ss@git.example/{repo}.git",
            "https://git.example/{repo}.git",
            ("u", "p@ss"),
        ),
        ("http://tok@127.0.0.1:8080/r.git", "http://127.0.0.1:8080/r.git", ("tok", "")),
        ("https://git.example/r.git", "https://git.example/r.git", None),
        ("/srv/git/{repo}.git", "/srv/git/{repo}.git", None),
        ("git@github.com:org/r.git", "git@github.com:org/r.git", None),
    ],
)
def test_the_url_is_split_from_its_credentials(
    url: str, public: str, auth: tuple[str, str] | None
) -> None:
    origin = split_origin(url)
    assert origin.url == public
    assert origin.auth == (GitAuth(*auth) if auth else None)
    assert "p%40ss" not in repr(origin) and "p@ss" not in repr(origin)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, GitHttpLog]]:
    make_origin(tmp_path / "origins", "app", {"tests/test_a.py": "def test_a():\n    pass\n"})
    with git_http_server(tmp_path / "origins", USER, TOKEN) as (base, log):
        yield base, log


def files_holding(root: Path, needles: tuple[str, ...]) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(needle.encode() in data for needle in needles):
                found.append(path)
    return found


def test_fetch_and_push_authenticate_and_no_file_holds_the_token(
    tmp_path: Path, served: tuple[str, GitHttpLog]
) -> None:
    base, log = served
    host = base.removeprefix("http://")
    template = f"http://{USER}:{ENCODED_TOKEN}@{host}/{{repo}}.git"
    workdir, home = tmp_path / "work", tmp_path / "home"
    identity = GitIdentity("test-runner", "test-runner@gate.example", home)
    for work_item in ("WI-1", "WI-2"):  # a clone, then a fetch into the mirror
        with checkout("app", "feature/x", None, workdir=workdir, url_template=template) as co:
            assert co.origin.url == f"{base}/app.git"
            left_in_reach = files_holding(workdir, (TOKEN, ENCODED_TOKEN))
            result = publish_report(
                co.mirror,
                co.commit,
                REPORT.replace("WI-1", work_item),
                "report\n",
                origin=co.origin,
                object_format=co.object_format,
                branch="feature/x",
                message="test: report",
                identity=identity,
            )
        assert result.pushed, result.detail
        assert left_in_reach == []
    origin = tmp_path / "origins" / "app.git"
    assert branch_tip(origin, "feature/x") == result.report_commit
    assert git(origin, "show", f"feature/x:{REPORT}") == "report"
    assert files_holding(workdir, (TOKEN, ENCODED_TOKEN)) == []
    assert files_holding(home, (TOKEN, ENCODED_TOKEN)) == []
    # Control: the server does refuse a request without the credentials.
    assert any(not authorized for _, _, authorized in log.requests)
    assert {method for method, _, authorized in log.requests if authorized} == {"GET", "POST"}


def test_without_the_credentials_the_origin_refuses(
    tmp_path: Path, served: tuple[str, GitHttpLog]
) -> None:
    base, _ = served
    with (
        pytest.raises(CheckoutError, match="clone failed"),
        checkout(
            "app", "feature/x", None, workdir=tmp_path / "w", url_template=f"{base}/{{repo}}.git"
        ),
    ):
        pass


def test_a_helper_planted_in_the_mirrors_config_is_never_asked(
    tmp_path: Path, served: tuple[str, GitHttpLog]
) -> None:
    """Only the worker's helper answers: one that a config file names (and that would
    give wrong credentials, or steal the right ones on `store`) is dropped."""
    base, _ = served
    template = f"http://{USER}:{TOKEN}@{base.removeprefix('http://')}/{{repo}}.git"
    marker = tmp_path / "planted-helper-ran"
    helper = f"!f() {{ touch {marker}; echo username=x; echo password=wrong; }}; f"
    workdir = tmp_path / "work"
    with checkout("app", "feature/x", None, workdir=workdir, url_template=template) as co:
        git(co.mirror, "config", "credential.helper", helper)
        first = co.commit
    with checkout("app", "feature/x", None, workdir=workdir, url_template=template) as co:
        assert co.commit == first
    assert not marker.exists()


def test_a_mirror_cloned_with_the_token_in_its_config_forgets_it(
    tmp_path: Path, served: tuple[str, GitHttpLog]
) -> None:
    """A mirror an earlier version cloned from the URL as given: the worker's start
    drops the URL, and fetches still work, by the URL they are given."""
    base, _ = served
    template = f"http://{USER}:{TOKEN}@{base.removeprefix('http://')}/{{repo}}.git"
    workdir = tmp_path / "work"
    with checkout("app", "feature/x", None, workdir=workdir, url_template=template) as co:
        git(co.mirror, "config", "remote.origin.url", template.format(repo="app"))
    assert files_holding(workdir, (TOKEN,)) == [co.mirror / "config"]
    forget_stored_urls(workdir)
    forget_stored_urls(workdir)  # nothing left to drop: no error
    assert files_holding(workdir, (TOKEN,)) == []
    with checkout("app", "feature/x", None, workdir=workdir, url_template=template) as again:
        assert again.commit == co.commit
