import subprocess

import pytest

from worker.job import Job, JobRejected, branch_name_problem, parse_job

VALID = {
    "task_id": 7,
    "repo": "orchestrator",
    "work_item_id": "WI-42",
    "branch": "feature/login",
    "agent": "tester",
    "stage": "testing",
}


def job_with(**changes: object) -> dict[str, object]:
    return {**VALID, **changes}


def test_a_valid_job_parses_and_names_its_report_path() -> None:
    job = parse_job(VALID)
    assert isinstance(job, Job)
    assert job.report_path == "docs/work-items/WI-42/13-test-report.md"
    assert job.commit is None


@pytest.mark.parametrize("digits", [40, 64], ids=["sha1", "sha256"])
def test_a_full_commit_name_of_either_format_is_taken_in_lower_case(digits: int) -> None:
    job = parse_job(job_with(commit="AB" * (digits // 2)))
    assert isinstance(job, Job)
    assert job.commit == "ab" * (digits // 2)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"work_item_id": "../../etc"}, "work_item_id"),
        ({"work_item_id": "a..b"}, "work_item_id"),
        ({"work_item_id": ".hidden"}, "work_item_id"),
        ({"work_item_id": "WI/1"}, "work_item_id"),
        ({"work_item_id": "WI-1\n"}, "work_item_id"),
        ({"work_item_id": "x" * 101}, "work_item_id"),
        ({"repo": "../other"}, "repo"),
        ({"repo": ""}, "repo"),
        ({"branch": "-upload-pack=evil"}, "branch"),
        ({"branch": "--force"}, "branch"),
        ({"branch": "a..b"}, "branch"),
        ({"branch": "a b"}, "branch"),
        ({"branch": "HEAD"}, "branch"),
        ({"branch": "x.lock"}, "branch"),
        ({"branch": "feature/"}, "branch"),
        ({"branch": "a@{1}"}, "branch"),
        ({"commit": "abc123"}, "commit"),
        ({"commit": "g" * 40}, "commit"),
        ({"commit": "a" * 41}, "commit"),
        ({"commit": "a" * 63}, "commit"),
        ({"commit": "a" * 65}, "commit"),
        ({"agent": "developer"}, "agent"),
        ({"stage": "review"}, "stage"),
        ({"task_id": 0}, "task_id"),
        ({"task_id": -3}, "task_id"),
        ({"task_id": "7"}, "task_id"),
        ({"task_id": True}, "task_id"),
    ],
)
def test_an_invalid_field_is_rejected_with_its_name_in_the_reason(
    changes: dict[str, object], field: str
) -> None:
    rejected = parse_job(job_with(**changes))
    assert isinstance(rejected, JobRejected)
    assert rejected.reason.startswith("invalid job: ")
    assert f"{field}:" in rejected.reason


def test_a_missing_field_is_rejected_and_the_known_task_id_is_kept() -> None:
    raw = dict(VALID)
    del raw["branch"]
    rejected = parse_job(raw)
    assert isinstance(rejected, JobRejected)
    assert "branch: Field required" in rejected.reason
    assert rejected.task_id == 7
    assert rejected.repo == "orchestrator"


def test_a_job_that_is_not_an_object_is_rejected() -> None:
    rejected = parse_job(["not", "a", "dict"])
    assert isinstance(rejected, JobRejected)
    assert "JSON object" in rejected.reason


def test_unknown_extra_fields_are_ignored() -> None:
    assert isinstance(parse_job(job_with(priority="high")), Job)


BRANCH_CORPUS = [
    "main",
    "feature/x",
    "a/b/c",
    "x@",
    "a@b",
    "@",
    "é",
    "refs/heads/x",
    "v1.2",
    "a-b_c",
    "HEAD",
    "-x",
    "a..b",
    "a b",
    "a.lock",
    "a/.b",
    "a/",
    "/a",
    "a@{1}",
    "a\\b",
    "a:b",
    "a~b",
    "a^b",
    "a?b",
    "a*b",
    "a[b",
    "a.",
    "a//b",
    ".a",
    "a/b.lock/c",
    "tab\there",
    "del\x7f",
    "ok.lockx",
    "x/y.",
    "",
]


@pytest.mark.parametrize("name", BRANCH_CORPUS)
def test_branch_validation_agrees_with_git_check_ref_format(name: str) -> None:
    if "\x00" in name:
        pytest.skip("git cannot receive NUL in argv")
    git_ok = (
        subprocess.run(
            ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
        ).returncode
        == 0
    )
    assert (branch_name_problem(name) is None) == git_ok


def test_required_tests_are_optional_and_kept_in_order() -> None:
    plain = parse_job(VALID)
    assert isinstance(plain, Job) and plain.required_tests is None
    ids = ["tests/test_a.py::test_x", "tests/test_a.py::TestC::test_y[1-2]"]
    job = parse_job(job_with(required_tests=ids))
    assert isinstance(job, Job) and job.required_tests == tuple(ids)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("tests/test_a.py::test_x", "required_tests"),
        ([], "1 to 1000"),
        (["t.py::a"] * 2, "more than once"),
        ([f"t.py::test_{i}" for i in range(1001)], "1 to 1000"),
        (["t.py::a", 3], "required_tests.1"),
        (["--co"], "not a pytest node id"),
        (["t.py::a\nb"], "not a pytest node id"),
        ([""], "not a pytest node id"),
    ],
)
def test_a_malformed_required_tests_list_is_handed_back_with_its_reason(
    value: object, words: str
) -> None:
    rejected = parse_job(job_with(required_tests=value))
    assert isinstance(rejected, JobRejected)
    assert words in rejected.reason and rejected.task_id == 7
