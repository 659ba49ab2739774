"""Settings, read once from the environment (prefix ``TESTGATE_``) and passed in.

A worker must survive any bad value it can survive: a malformed or out-of-range
number falls back to its default with a WARNING instead of crashing the process
(docs/contract.md §9: "malformed or <= 0 -> 900 with a WARNING, never a crash").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, field_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker import names

logger = logging.getLogger("testgate.settings")

DEFAULT_TIMEOUT_S = 900

# Besides suite and setup, a delivery's worst case counts each network git step at
# git_timeout_s (mirror clone or fetch, the job's fetch, the report push, the integrity
# guard's fetch of the base); local git steps take seconds and live in the overhead.
GIT_NETWORK_STEPS = 4
# A mirror's locks (its branch's for a fetch, the repo's for a clone or housekeeping,
# worker/git/checkout.py) are taken around network steps twice per job (checkout,
# integrity base), each time possibly behind every other job of the host, each
# holding them for up to two network steps: 2 x 2 network steps per other job.
LOCK_WAIT_STEPS_PER_OTHER_JOB = 2 * 2

# An invalid value of a safety switch falls back to its safe side, not its default: a
# garbled kill-switch most likely meant "off", which only hands jobs back.
_FAIL_SAFE_FALLBACKS: dict[str, Any] = {"enabled": False, "containment": "required"}


class Settings(BaseSettings):
    """Every row of docs/contract.md §9, plus a few operational knobs."""

    model_config = SettingsConfigDict(env_prefix="TESTGATE_", extra="ignore")

    enabled: bool = True
    repos: str = ""
    self_repo: str = "orchestrator"
    target: str = "tests/"
    timeout_s: int = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    kill_grace_s: float = Field(default=5.0, ge=0)
    tree_kill: bool = True
    smoke_enabled: bool = True
    smoke_base_url: str = "http://localhost:8500"
    # How far into a smoke answer's body a check's `contains` is looked for (streamed).
    smoke_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    infra_max_retries: int = Field(default=2, ge=0)
    infra_retry_delay_s: int = Field(default=30, ge=0)
    # Starts of one attempt allowed when the process running it keeps dying (OOM,
    # a suite that kills its worker): then the job fails closed instead of looping.
    max_deliveries: int = Field(default=3, ge=1)
    # Retries of an advance's publish while the broker is away (kombu's own, with
    # backoff: 8 is about 27 s); after them the job's message is given back unacked.
    event_publish_retries: int = Field(default=8, ge=0)
    # A delivery is held for the whole suite plus checkout, smoke and push; this is the
    # slack on top of those that the broker must allow before it may hand the same
    # message to another worker.
    delivery_overhead_s: int = Field(default=600, ge=0)
    # The run lease (worker/pipeline/lease.py): renewed every third of it while a delivery runs,
    # so a dead delivery's job can be taken over after at most this long.
    lease_s: float = Field(default=30.0, gt=0)
    # Limits of the suite's processes (0 = none): a memory hog or a disk filler ends as
    # a FAIL of that suite, never as a dead worker or a full disk.
    suite_max_memory_mb: int = Field(default=8192, ge=0)
    suite_max_file_mb: int = Field(default=2048, ge=0)
    suite_max_processes: int = Field(default=0, ge=0)  # RLIMIT_NPROC: per user, not per job
    # Processes and threads of one job, by a pids cgroup where the worker may create one
    # (root, or a delegated cgroup v2 subtree): stops a fork bomb even as root.
    suite_max_pids: int = Field(default=2048, ge=0)
    # Run setup and suite in a network namespace of their own (needs `unshare`, and root
    # or user namespaces). Off by default: many suites need the network.
    suite_network_isolation: bool = False
    # `python -m pytest` forked from a warm interpreter that has imported pytest already
    # (worker/containment/warm.py): the same run without ~130 ms of start-up CPU. Off: cold starts.
    warm_pytest: bool = True
    # How the suite is kept from the worker (worker/containment/bwrap.py): "required"
    # refuses to start without bubblewrap, "auto" uses it when it works and says so when
    # it does not, "off" runs suites as the worker's own user, with its view (unsafe).
    containment: Literal["auto", "required", "off"] = "auto"
    git_email_domain: str = "testgate.invalid"
    agent_home_dir: str = ""
    broker_url: str = "redis://localhost:6379/0"
    result_backend: str = "redis://localhost:6379/1"
    git_url_template: str = "/srv/git/{repo}.git"
    workdir: str = "~/.cache/testgate"
    contracts_file: str = ""
    advance_task: str = names.ADVANCE_TASK
    handback_task: str = names.HANDBACK_TASK
    orchestrator_queue: str = names.ORCHESTRATOR_QUEUE
    webhook_url: str = ""
    webhook_secret: str = ""
    alert_webhook_url: str = ""
    telegram_bot_token: str = ""
    telegram_chat_id: str = ""
    telegram_api_base: str = "https://api.telegram.org"

    # Operational additions (additive only; listed in docs/contract.md §9 too).
    state_url: str = ""
    key_prefix: str = names.KEY_PREFIX
    visibility_timeout_s: int = Field(default=0, ge=0)
    output_tail_bytes: int = Field(default=4096, gt=0)
    git_timeout_s: int = Field(default=300, gt=0)
    python: str = ""

    @field_validator("*", mode="wrap")
    @classmethod
    def _fall_back_to_default(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: Any
    ) -> Any:
        """A value that does not validate becomes the field's default, loudly."""
        try:
            return handler(value)
        except ValidationError as exc:
            field = cls.model_fields[info.field_name]
            if field.default is PydanticUndefined:
                raise
            fallback = _FAIL_SAFE_FALLBACKS.get(info.field_name, field.default)
            logger.warning(
                "setting TESTGATE_%s=%r is invalid (%s) -> using default %r",
                info.field_name.upper(),
                value,
                exc.errors()[0]["msg"],
                fallback,
            )
            return fallback

    @field_validator("workdir", mode="after")
    @classmethod
    def _absolute_workdir(cls, value: str) -> str:
        """Resolved once, against the directory the worker starts in: git runs in
        mirrors and worktrees with other working directories, where a relative path
        would name something else and fail every checkout."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return str(path)
        try:
            return str(Path.cwd() / path)
        except OSError as exc:  # the start directory was deleted
            raise ValueError(f"relative, and the current directory is unknown ({exc})") from exc

    @property
    def workdir_path(self) -> Path:
        return Path(self.workdir).expanduser()

    @property
    def home_dir(self) -> Path:
        """HOME for the report commit: the configured one, else a private one."""
        if self.agent_home_dir:
            return Path(self.agent_home_dir).expanduser()
        return self.workdir_path / "home"

    @property
    def repo_scope(self) -> frozenset[str]:
        """The CSV scope, lower-cased; empty means the self-hosting repo only."""
        return frozenset(r.strip().lower() for r in self.repos.split(",") if r.strip())

    @property
    def state_redis_url(self) -> str:
        """Where shared counters and the job ledger live."""
        if self.state_url:
            return self.state_url
        for url in (self.result_backend, self.broker_url):
            if url.startswith(("redis://", "rediss://", "unix://")):
                return url
        return "redis://localhost:6379/0"

    def required_visibility_timeout_s(
        self, longest_timeout_s: int, longest_setup_s: int = 0, concurrency: int = 1
    ) -> int:
        """The shortest broker visibility timeout that never redelivers a live job:
        everything one delivery may take, each part at its bound. `longest_setup_s`:
        the contracts' setup steps at their timeouts; `concurrency`: jobs per host,
        which share (and may wait for) a mirror's locks."""
        suite = max(self.timeout_s, longest_timeout_s) + self.kill_grace_s
        git = GIT_NETWORK_STEPS * self.git_timeout_s
        lock_waits = LOCK_WAIT_STEPS_PER_OTHER_JOB * max(concurrency - 1, 0) * self.git_timeout_s
        # A deferred job's retry is delivered, and held unacked, before its countdown.
        held_countdown = self.infra_retry_delay_s
        return int(
            suite + longest_setup_s + git + lock_waits + held_countdown + self.delivery_overhead_s
        )


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)
