"""Settings, read once from the environment (prefix ``TESTGATE_``) and passed in.

A worker must survive any bad value it can survive: a malformed or out-of-range
number falls back to its default with a WARNING instead of crashing the process
(SPEC §8: "malformed or <= 0 -> 900 with a WARNING, never a crash").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, field_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger("testgate.settings")

DEFAULT_TIMEOUT_S = 900
# A delivery is held for the whole suite plus checkout, smoke and push; this is the
# slack on top of timeout + kill grace that the broker must allow before it may
# hand the same message to another worker.
DELIVERY_OVERHEAD_S = 600

# Where the field default is not the safe answer to a garbled value: an operator who
# typed something unreadable into the kill-switch most likely meant "off", and "off"
# only hands the job back to the orchestrator's old path.
_FAIL_SAFE_FALLBACKS: dict[str, Any] = {"enabled": False}


class Settings(BaseSettings):
    """Every row of SPEC §8, plus a few operational knobs."""

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
    infra_max_retries: int = Field(default=2, ge=0)
    infra_retry_delay_s: int = Field(default=30, ge=0)
    # Starts of one attempt allowed when the process running it keeps dying (OOM,
    # a suite that kills its worker): then the job fails closed instead of looping.
    max_deliveries: int = Field(default=3, ge=1)
    # Retries of an advance's publish while the broker is away (kombu's own, with
    # backoff: 8 is about 27 s); after them the job's message is given back unacked.
    event_publish_retries: int = Field(default=8, ge=0)
    delivery_overhead_s: int = Field(default=DELIVERY_OVERHEAD_S, ge=0)
    # The run lease (worker/lease.py): renewed every third of it while a delivery runs,
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
    # (worker/warm.py): the same run without ~130 ms of start-up CPU. Off: cold starts.
    warm_pytest: bool = True
    git_email_domain: str = "testgate.invalid"
    agent_home_dir: str = ""
    broker_url: str = "redis://localhost:6379/0"
    result_backend: str = "redis://localhost:6379/1"
    git_url_template: str = "/srv/git/{repo}.git"
    workdir: str = "~/.cache/testgate"
    contracts_file: str = ""
    advance_task: str = "orchestrator.advance_stage"
    handback_task: str = "orchestrator.test_gate_handback"
    orchestrator_queue: str = "orchestrator"
    webhook_url: str = ""
    webhook_secret: str = ""
    alert_webhook_url: str = ""
    telegram_bot_token: str = ""
    telegram_chat_id: str = ""
    telegram_api_base: str = "https://api.telegram.org"

    # Operational additions (not in SPEC §8, additive only).
    state_url: str = ""
    key_prefix: str = "testgate:"
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

    def required_visibility_timeout_s(self, longest_timeout_s: int) -> int:
        """The shortest broker visibility timeout that never redelivers a live job."""
        suite = max(self.timeout_s, longest_timeout_s)
        return int(suite + self.kill_grace_s + self.delivery_overhead_s)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)
