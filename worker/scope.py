"""Is a repo in testgate's scope? (docs/contract.md §2 `applies`). Pure."""

from __future__ import annotations

from dataclasses import replace

from worker.contracts import Contracts
from worker.job import Job, JobRejected
from worker.settings import Settings


def scope_rejection(
    repo: str, settings: Settings, contracts: Contracts | None
) -> JobRejected | None:
    """None if testgate runs jobs for `repo`; else why not (to hand back)."""
    if not settings.enabled:
        return JobRejected(
            "testgate is disabled (kill-switch TESTGATE_ENABLED=false)", None, repo, "disabled"
        )
    name = repo.strip().lower()
    scope = settings.repo_scope or frozenset({settings.self_repo.strip().lower()})
    if name not in scope:
        return JobRejected(f"repo {repo!r} is not in testgate's scope", None, repo, "out-of-scope")
    if contracts is None or contracts.for_repo(name) is None:
        return JobRejected(f"repo {repo!r} has no test contract", None, repo, "no-contract")
    return None


def job_rejection(job: Job, settings: Settings, contracts: Contracts | None) -> JobRejected | None:
    rejection = scope_rejection(job.repo, settings, contracts)
    return None if rejection is None else replace(rejection, task_id=job.task_id)
