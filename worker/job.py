"""The tester job (docs/contract.md §2): validation of what the orchestrator enqueued (pure).

A job that fails validation is never run: `parse_job` returns a `JobRejected` with a
reason, and the caller hands it back. Nothing here touches the filesystem; the rules
are strict enough that a valid `work_item_id` can never leave the job's worktree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError, field_validator
from pydantic_core.core_schema import ValidationInfo

# fullmatch is used everywhere: `$` would also match before a trailing newline.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# A full object name of a SHA-1 or a SHA-256 repository.
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
# Characters git forbids anywhere in a ref name (git-check-ref-format(1), rules 4-5, 9).
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_MAX_BRANCH_LEN = 255
MAX_REQUIRED_TESTS = 1000
_MAX_NODE_ID = 1000


def branch_name_problem(name: str) -> str | None:
    """Why `name` is not what `git check-ref-format --branch` accepts, or None.

    A pure re-statement of git's rules, so validation needs no subprocess; the tests
    cross-check it against git itself.
    """
    if not name:
        return "is empty"
    if len(name) > _MAX_BRANCH_LEN:
        return f"is longer than {_MAX_BRANCH_LEN} characters"
    if name.startswith("-"):
        return "starts with '-' (would be read as an option)"
    if name == "HEAD":
        return "is HEAD, not a branch"
    if _REF_FORBIDDEN.search(name):
        return "contains a space, control character or one of ~ ^ : ? * [ \\"
    if ".." in name or "@{" in name:
        return "contains '..' or '@{'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "has an empty path component"
    if name.endswith("."):
        return "ends with '.'"
    for component in name.split("/"):
        if component.startswith("."):
            return "has a path component starting with '.'"
        if component.endswith(".lock"):
            return "has a path component ending with '.lock'"
    return None


class Job(BaseModel):
    """A validated tester job. Only ever built through `parse_job`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    task_id: StrictInt
    repo: StrictStr
    work_item_id: StrictStr
    branch: StrictStr
    commit: StrictStr | None = None
    agent: StrictStr
    stage: StrictStr
    # pytest node ids that must pass in the run that decides (None: judged as before).
    required_tests: tuple[StrictStr, ...] | None = None

    @field_validator("task_id")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive integer")
        return value

    @field_validator("repo", "work_item_id")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                "must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ and must not contain '..'"
            )
        return value

    @field_validator("branch")
    @classmethod
    def _git_branch(cls, value: str) -> str:
        problem = branch_name_problem(value)
        if problem:
            raise ValueError(f"is not a valid git branch name: it {problem}")
        return value

    @field_validator("commit")
    @classmethod
    def _full_sha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _SHA.fullmatch(value):
            raise ValueError("must be a full commit name (40 or 64 hex digits)")
        return value.lower()

    @field_validator("agent", "stage")
    @classmethod
    def _tester_testing(cls, value: str, info: ValidationInfo) -> str:
        expected = "tester" if info.field_name == "agent" else "testing"
        if value != expected:
            raise ValueError(f"must be {expected!r}")
        return value

    @field_validator("required_tests")
    @classmethod
    def _node_ids(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value or len(value) > MAX_REQUIRED_TESTS:
            raise ValueError(f"must list 1 to {MAX_REQUIRED_TESTS} pytest node ids")
        for node_id in value:
            printable = 0 < len(node_id) <= _MAX_NODE_ID and node_id.isprintable()
            if not printable or node_id.startswith(("-", "/")) or node_id != node_id.strip():
                raise ValueError(f"{node_id[:80]!r} is not a pytest node id")
        if len(set(value)) != len(value):
            raise ValueError("lists a node id more than once")
        return value

    @property
    def report_path(self) -> str:
        """Where the report lives, relative to the checkout (docs/contract.md §5)."""
        return f"docs/work-items/{self.work_item_id}/13-test-report.md"


@dataclass(frozen=True)
class JobRejected:
    """A job that must be handed back, never run. `task_id`/`repo` as far as known."""

    reason: str
    task_id: int | None
    repo: str | None
    kind: Literal["invalid", "out-of-scope", "no-contract", "disabled"] = "invalid"


def parse_job(raw: Any) -> Job | JobRejected:
    """Validate the kwargs the orchestrator sent; never raises."""
    if not isinstance(raw, dict):
        return JobRejected(f"job must be a JSON object, got {type(raw).__name__}", None, None)
    try:
        return Job.model_validate(raw)
    except ValidationError as exc:
        return JobRejected(_describe(exc), _known_task_id(raw), _known_repo(raw))


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "job"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "invalid job: " + "; ".join(parts)


def _known_task_id(raw: dict[str, Any]) -> int | None:
    value = raw.get("task_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _known_repo(raw: dict[str, Any]) -> str | None:
    value = raw.get("repo")
    # Echo the repo back only if it is printable and short: it goes into logs and the
    # hand-back payload.
    if isinstance(value, str) and value.isprintable() and len(value) <= 200:
        return value
    return None
