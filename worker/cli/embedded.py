"""The embedded main job: the whole gate on a local repository, in one process,
with Celery on its in-memory broker. No Redis, no orchestrator."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from celery.contrib.testing.worker import start_worker
from celery.exceptions import AlwaysEagerIgnored

from worker import names
from worker.celery_adapter.app import app
from worker.celery_adapter.runtime import configure
from worker.celery_adapter.tasks import run_test_gate
from worker.cli import tester_job
from worker.contracts import Contracts, HiddenTests, load_contracts
from worker.notify.alerts import send_alert
from worker.notify.events import CelerySender
from worker.pipeline.runner import GateContext
from worker.settings import Settings, load_settings
from worker.state import MemoryState

logger = logging.getLogger("testgate.embedded")


@dataclass(frozen=True)
class EmbeddedRun:
    summary: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]  # what reached the orchestrator queue
    counters: dict[str, int]


def run_embedded(
    repo_path: Path,
    *,
    branch: str,
    work_item_id: str,
    commit: str | None = None,
    task_id: int = 1,
    target: str = "tests/",
    timeout_s: int = 900,
    smoke_url: str = "",
    workdir: Path | None = None,
    contracts_file: Path | None = None,
    repo: str | None = None,
    required_tests: list[str] | None = None,
    trusted_tests: bool = False,
    hidden_tests: Path | None = None,
) -> EmbeddedRun:
    """Run one tester job against `repo_path` (a git repository, bare or not).

    The repository is named `repo` (default: from its path); a contracts file (the
    argument, else TESTGATE_CONTRACTS_FILE) gives it a contract as it would a worker's.
    `trusted_tests` judges it by its main's tests; `hidden_tests` also by the tests
    under `tests/` of that repository's main (both on top of the file's contract).
    Raises ContractsFileError for a file that a worker would refuse to start with.
    """
    repo_path = repo_path.resolve()
    repo = repo or _repo_name(repo_path)
    settings = load_settings(
        broker_url="memory://localhost/",
        result_backend="cache+memory://",
        repos=repo,
        self_repo=repo,
        target=target,
        timeout_s=timeout_s,
        smoke_enabled=bool(smoke_url),
        smoke_base_url=smoke_url or "http://localhost:8500",
        git_url_template=str(repo_path),
        webhook_url="",
        infra_retry_delay_s=0,
        **({"workdir": str(workdir)} if workdir else {}),
        **({"contracts_file": str(contracts_file)} if contracts_file else {}),
    )
    flags: dict[str, Any] = {"trusted_tests": True} if trusted_tests else {}
    links = {repo: repo_path}
    if hidden_tests is not None:
        links[f"{repo}-hidden"] = hidden_tests.resolve()
        flags["hidden_tests"] = HiddenTests(repo=f"{repo}-hidden")
    if flags:
        settings = settings.model_copy(update={"git_url_template": _by_name(settings, links)})
    contracts = load_contracts(settings)
    if flags and (found := contracts.for_repo(repo)) is not None:
        # The repo's contract (the file's, else the built-in one), the flags on top.
        contracts = Contracts(by_repo={**contracts.by_repo, repo.lower(): replace(found, **flags)})
    state = _install_in_process(settings, contracts, eager=True)
    job = tester_job(task_id, repo, work_item_id, branch, commit)
    if required_tests is not None:
        job["required_tests"] = required_tests
    print(f"job: {job}")
    print(f"origin: {repo_path} (smoke: {smoke_url or 'skipped, no --smoke-url'})")
    if settings.contracts_file:
        print(f"contracts: {settings.contracts_file}")
    try:
        summary = run_test_gate.apply(kwargs=job).get(propagate=False)
    finally:
        configure(None)
    events = _drain(settings.orchestrator_queue)
    if not isinstance(summary, dict):
        summary = {"kind": "error", "detail": repr(summary)}
    return EmbeddedRun(summary=summary, events=events, counters=state.counters())


@contextmanager
def embedded_fleet(settings: Settings, concurrency: int = 2) -> Iterator[MemoryState]:
    """Testgate workers in this process (threads), on the settings' in-memory broker."""
    state = _install_in_process(settings, load_contracts(settings), eager=False)
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=concurrency,
            perform_ping_check=False,
            queues=[names.TESTS_QUEUE],
        ):
            yield state
    finally:
        configure(None)


def _install_in_process(settings: Settings, contracts: Contracts, *, eager: bool) -> MemoryState:
    """Point the worker app at the settings' broker and give its jobs an in-memory state."""
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_always_eager=eager,
        task_eager_propagates=False,
    )
    state = MemoryState()
    configure(
        GateContext(
            settings=settings,
            contracts=contracts,
            state=state,
            events=CelerySender(app, settings.orchestrator_queue),
            alert=lambda text: send_alert(settings, text),
        )
    )
    return state


def _drain(queue_name: str) -> list[tuple[str, dict[str, Any]]]:
    """Every task message on `queue_name` in the memory broker, as (name, kwargs)."""
    events: list[tuple[str, dict[str, Any]]] = []
    with app.connection_for_write() as conn, conn.SimpleQueue(queue_name) as queue:
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                return events
            _args, kwargs, _embed = message.decode()
            events.append((str(message.headers.get("task")), dict(kwargs)))
            message.ack()


def _by_name(settings: Settings, links: dict[str, Path]) -> str:
    """A URL template for several local repositories: a directory of the workdir where
    each is a link by its name (kept, as a mirror's origin is its first URL)."""
    origins = settings.workdir_path / "embedded-origins"
    origins.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        link = origins / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return f"{origins}/{{repo}}"


def _repo_name(path: Path) -> str:
    name = path.name.removesuffix(".git") or "repo"
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).lstrip("._-")
    return (cleaned or "repo")[:100]


def quiet_celery_logs() -> None:
    """The embedded run prints the gate's steps, not Celery's plumbing."""
    for noisy in ("celery", "kombu", "kombu.connection", "amqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Events go by name to the orchestrator's queue on purpose, even in eager mode.
    warnings.filterwarnings("ignore", category=AlwaysEagerIgnored)
