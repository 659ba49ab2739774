"""Per-repo test contracts (docs/contract.md §3): what to run and what to smoke.

The self-hosting repo has a built-in contract; any other repo has one only if the
contracts file (TOML, `[repos.<name>]` tables) defines it. Loading is pure apart from
reading the file, and a broken file is reported with the table and field at fault.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.errors import ContractsFileError
from worker.settings import Settings
from worker.smoke import SmokeCheck

DEFAULT_SMOKE_CHECKS: tuple[SmokeCheck, ...] = (
    SmokeCheck(path="/health"),
    SmokeCheck(path="/status"),
    SmokeCheck(path="/queue", contains="serial_gate"),
)


_REF = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$"
VENV_KEY_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "requirements*.txt")


class HiddenTests(BaseModel):
    """Tests from another repository, run against the branch's code (docs/contract.md §14)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    path: str = "tests/"
    ref: str = Field(default="main", pattern=_REF)

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        if not value or value.startswith(("-", "/")) or ".." in value or "\0" in value:
            raise ValueError("must be a relative path inside the hidden repo")
        return value


@dataclass(frozen=True)
class TestContract:
    """How one repo is tested."""

    __test__ = False  # not a pytest test class, despite the name

    repo: str
    target: str
    timeout_s: int
    smoke_enabled: bool
    smoke_base_url: str
    smoke_checks: tuple[SmokeCheck, ...]
    env: tuple[tuple[str, str], ...] = ()
    setup: tuple[str, ...] = ()  # commands run in the worktree before the suite
    # Run after `setup`, in the worktree; with a venv, what they install goes to a layer
    # of this job's own (worker/suite/prepare.py), never into the cached venv.
    job_setup: tuple[str, ...] = ()
    setup_timeout_s: int = 600
    python: str = ""  # interpreter of the suite and of `python` in setup; "" = the worker's
    venv: bool = False  # run in a cached venv built by `setup`, keyed by venv_key_files
    venv_key_files: tuple[str, ...] = ()
    integrity: bool = False  # guard: removed or newly skipped tests vs main fail the branch
    classify: bool = False  # re-run failing tests on the branch and on main, say why they fail
    shards: int | Literal["auto"] = 1  # split the suite over this many shard tasks
    # Stop the suite after this many failing tests (pytest's --maxfail); 0 = run all.
    stop_after_failures: int = 0
    # Under containment, setup and suite reach the network (the host's, loopback and
    # its services included) only when the contract says so.
    network: bool = False
    # The verdict's run takes its tests, conftests and pytest configuration from the
    # merge base with this ref (docs/contract.md §14); the branch's own run can only object.
    trusted_tests: bool = False
    trusted_ref: str = "main"
    hidden_tests: HiddenTests | None = None
    hidden_report: Literal["ids", "count"] = "ids"  # what a report says of a failing one

    @property
    def setup_budget_s(self) -> int:
        """The longest the setup steps may take: each up to its timeout."""
        return (len(self.setup) + len(self.job_setup)) * self.setup_timeout_s

    @property
    def run_budget_s(self) -> int:
        """The longest a job's pytest runs may take: the suite's timeout for its own run
        and for each second look (the integrity guard and the classification share one)."""
        second_looks = (self.integrity or self.classify) + self.trusted_tests
        return self.timeout_s * (1 + second_looks + (self.hidden_tests is not None))


class _SmokeCheckEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    status: int = Field(default=200, ge=100, le=599)
    contains: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class _ContractEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str | None = None
    timeout_s: int | None = Field(default=None, gt=0)
    smoke_enabled: bool | None = None
    smoke_base_url: str | None = None
    smoke: list[_SmokeCheckEntry] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    setup: tuple[str, ...] = ()
    job_setup: tuple[str, ...] = ()
    setup_timeout_s: int = Field(default=600, gt=0)
    python: str = ""
    venv: bool = False
    integrity: bool = False
    classify: bool = False
    shards: Annotated[StrictInt, Field(ge=1, le=64)] | Literal["auto"] = 1
    stop_after_failures: StrictInt = Field(default=0, ge=0)
    network: bool = False
    trusted_tests: bool = False
    trusted_ref: str = Field(default="main", pattern=_REF)
    hidden_tests: HiddenTests | None = None
    hidden_report: Literal["ids", "count"] = "ids"
    venv_key_files: tuple[str, ...] = VENV_KEY_FILES

    @field_validator("setup")
    @classmethod
    def _splittable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for command in value:
            try:
                if not shlex.split(command):
                    raise ValueError("empty setup command")
            except ValueError as exc:
                raise ValueError(f"setup command {command!r} cannot be split: {exc}") from exc
        return value

    @field_validator("target")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (not value or value.startswith(("-", "/")) or ".." in value):
            raise ValueError("must be a relative path inside the repo, not an option")
        return value

    @model_validator(mode="after")
    def _whole_suite_for_a_second_look(self) -> _ContractEntry:
        # Each of these judges a whole run of the suite (against main, or of the trusted
        # tests); a sharded job has no such run, and would silently pass unguarded.
        judges = ("integrity", "classify", "trusted_tests", "hidden_tests")
        if self.shards != 1 and any(getattr(self, name) for name in judges):
            chosen = " and ".join(name for name in judges if getattr(self, name))
            raise ValueError(
                f"{chosen}: judged on whole runs of the suite, "
                "they cannot be combined with shards (set shards = 1)"
            )
        return self

    @field_validator("env")
    @classmethod
    def _no_testgate_env(cls, value: dict[str, str]) -> dict[str, str]:
        leaked = [key for key in value if key.upper().startswith("TESTGATE_")]
        if leaked:
            raise ValueError(f"may not set TESTGATE_* variables for the suite: {leaked}")
        return value


@dataclass(frozen=True)
class Contracts:
    """Every contract known to this worker, keyed by lower-case repo name."""

    by_repo: dict[str, TestContract]

    def for_repo(self, repo: str) -> TestContract | None:
        return self.by_repo.get(repo.strip().lower())

    @property
    def longest_timeout_s(self) -> int:
        """The longest run budget of any contract: what a job's lease must outlast."""
        return max((c.run_budget_s for c in self.by_repo.values()), default=0)

    @property
    def longest_setup_s(self) -> int:
        """The longest setup budget of any contract: a delivery runs setup, then suite."""
        return max((c.setup_budget_s for c in self.by_repo.values()), default=0)


def builtin_contract(settings: Settings) -> TestContract:
    """The self-hosting repo's contract: `pytest <target> -q` plus the default smoke."""
    return TestContract(
        repo=settings.self_repo,
        target=settings.target,
        timeout_s=settings.timeout_s,
        smoke_enabled=settings.smoke_enabled,
        smoke_base_url=settings.smoke_base_url,
        smoke_checks=_bounded(DEFAULT_SMOKE_CHECKS, settings),
    )


def _bounded(checks: tuple[SmokeCheck, ...], settings: Settings) -> tuple[SmokeCheck, ...]:
    """The checks with the worker's body bound: the runner passes only the checks."""
    return tuple(replace(c, max_body_bytes=settings.smoke_max_body_bytes) for c in checks)


def parse_contracts(data: dict[str, Any], settings: Settings) -> Contracts:
    """Build contracts from parsed TOML; the built-in one is kept unless overridden."""
    by_repo = {settings.self_repo.lower(): builtin_contract(settings)}
    repos = data.get("repos", {})
    if not isinstance(repos, dict):
        raise ContractsFileError("'repos' must be a table of [repos.<name>] tables")
    for name, raw in repos.items():
        if not isinstance(raw, dict):
            raise ContractsFileError(f"[repos.{name}] must be a table")
        try:
            entry = _ContractEntry.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ContractsFileError(f"[repos.{name}] {problems}") from exc
        by_repo[name.lower()] = _contract_from_entry(name, entry, settings)
    return Contracts(by_repo=by_repo)


def _contract_from_entry(name: str, entry: _ContractEntry, settings: Settings) -> TestContract:
    """The entry over the built-in contract: what it leaves unset or empty is the worker's."""
    given = entry.model_dump(exclude={"smoke", "env", "hidden_tests"})
    contract = replace(
        builtin_contract(settings),
        repo=name,
        env=tuple(sorted(entry.env.items())),
        hidden_tests=entry.hidden_tests,
        **{field: value for field, value in given.items() if value not in (None, "")},
    )
    if entry.smoke is None:
        return contract
    checks = tuple(SmokeCheck(**check.model_dump()) for check in entry.smoke)
    return replace(contract, smoke_checks=_bounded(checks, settings))


def load_contracts(settings: Settings) -> Contracts:
    """The built-in contract plus the contracts file, if one is configured; raises
    ContractsFileError with the file name and the fault."""
    if not settings.contracts_file:
        return parse_contracts({}, settings)
    path = Path(settings.contracts_file).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContractsFileError(f"cannot read contracts file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ContractsFileError(f"contracts file {path} is not valid TOML: {exc}") from exc
    try:
        return parse_contracts(data, settings)
    except ContractsFileError as exc:
        raise ContractsFileError(f"contracts file {path}: {exc}") from exc
