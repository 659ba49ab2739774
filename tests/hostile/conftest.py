"""A contained fleet for hostile suites, one per broker: a real `celery -A worker worker
-Q tests -c 1` with TESTGATE_CONTAINMENT=required, secrets planted in its environment,
its HOME and its workdir, a bare origin whose branches are the attacks, and a separate
Celery app playing the orchestrator (it never imports testgate)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from testkit.fleet import Orchestrator, WorkerProcess, fleet_env, purge_queues, worker_command
from testkit.repofactory import git, make_origin
from tests.hostile import gaming
from tests.hostile.harness import (
    HIDDEN_REPO,
    LAYER_REPO,
    OTHER_REPO,
    REPO,
    SLOW_REPO,
    TRUSTED_REPO,
    VENV_REPO,
    Fleet,
    Origin,
    Secrets,
    contracts_toml,
)
from tests.httpfixtures import git_http_server, http_server

REDIS = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ = os.environ.get("TESTGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
# Overridable so that two checkouts' hostile sessions on one Redis do not share a queue.
BROKER_DB = int(os.environ.get("TESTGATE_TEST_HOSTILE_BROKER_DB", "8"))
STATE_DB = int(os.environ.get("TESTGATE_TEST_HOSTILE_STATE_DB", "9"))
BROKERS = {"redis": f"{REDIS}/{BROKER_DB}", "rabbitmq": RABBITMQ}
# The worker's address space: a worker that reads a suite's /dev/zero or huge file
# without a bound dies of MemoryError here instead of eating the shared machine.
WORKER_MAX_MEMORY = 3 * 1024**3


def _with_credentials(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest.split('@', 1)[-1]}"


def _redis_user(secret: str) -> tuple[str, bool]:
    """A Redis ACL user whose password is a planted secret (Redis >= 6); the worker
    reaches its Redis with it. Returns (user, created)."""
    user = f"hostile-{uuid.uuid4().hex[:8]}"
    try:
        redis.Redis.from_url(REDIS).acl_setuser(
            user, enabled=True, passwords=[f"+{secret}"], keys=["*"], channels=["*"],
            commands=["+@all"],
        )  # fmt: skip
    except redis.RedisError:
        return user, False
    return user, True


def _clean(broker: str, state: str) -> None:
    redis.Redis.from_url(state).flushdb()
    if broker.startswith("redis://"):
        redis.Redis.from_url(broker).flushdb()
    else:
        purge_queues(broker)


def _start_worker(env: dict[str, str], log: Path, name: str, processes: int) -> WorkerProcess:
    """`celery -A worker worker -Q tests -c N`, exactly as an operator starts it, under
    an address-space limit (prlimit execs it: the pid is the worker's own)."""
    argv = ["prlimit", f"--as={WORKER_MAX_MEMORY}", "--", *worker_command(name, processes)]
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(process, log, name)


def _plant_files(home: Path, workdir: Path, found: Secrets) -> None:
    """Secrets a worker host has on disk: git credentials in its HOME, a file in its
    workdir (next to the mirrors and the jobs' checkouts)."""
    home.mkdir(parents=True)
    (home / ".git-credentials").write_text(
        f"https://gate:{found.values['home_git_credentials']}@git.example.invalid\n"
    )
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    (home / ".netrc").write_text(f"machine x login gate password {found.values['home_netrc']}\n")
    workdir.mkdir(parents=True)
    (workdir / "secrets.env").write_text(f"DEPLOY_TOKEN={found.values['workdir_file']}\n")


# Module-scoped: the fleet is gone before another module's workers start on the same
# `tests` queue (the integration suite's long-lived fleet has a vhost of its own).
@pytest.fixture(scope="module", params=sorted(BROKERS))
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """One contained single-process worker per broker, for every hostile test; a module
    may ask for (broker, pool processes) instead, by indirect parametrization."""
    if shutil.which("bwrap") is None:
        pytest.fail("bwrap is not installed: hostile suites need containment")
    broker_name, processes = (request.param, 1) if isinstance(request.param, str) else request.param
    tmp = tmp_path_factory.mktemp(f"hostile-{broker_name}")
    found = Secrets.make(
        "webhook_secret",
        "telegram_bot_token",
        "redis_password",
        "aws_secret",
        "home_git_credentials",
        "home_netrc",
        "workdir_file",
        "git_url_token",
    )
    user, acl = _redis_user(found.values["redis_password"])
    state_url = f"{REDIS}/{STATE_DB}"
    worker_state_url = _with_credentials(state_url, user, found.values["redis_password"])
    broker = BROKERS[broker_name]
    worker_broker = broker
    if broker_name == "redis" and acl:
        worker_broker = _with_credentials(broker, user, found.values["redis_password"])
    _clean(broker, state_url)
    origins = tmp / "origins"
    origins.mkdir()
    marks = tmp / "marks"  # where a filter or hook that ran outside the sandbox writes
    marks.mkdir()
    bare = make_origin(origins, REPO, {"seed.txt": "seed\n"}, branch="seed")
    for name in (SLOW_REPO, OTHER_REPO, VENV_REPO, LAYER_REPO):
        make_origin(origins, name, {"seed.txt": "seed\n"}, branch="seed")
    seed = {"seed.txt": "seed\n"}
    trusted = make_origin(origins, TRUSTED_REPO, seed, branch="seed", main_files=gaming.MAIN)
    make_origin(origins, HIDDEN_REPO, seed, branch="seed", main_files=gaming.HIDDEN)
    contracts = tmp / "contracts.toml"
    contracts.write_text(contracts_toml())
    home, workdir = tmp / "worker-home", tmp / "workdir"
    _plant_files(home, workdir, found)
    prefix = f"testgate-hostile-{uuid.uuid4().hex[:8]}:"
    with (
        http_server() as (alert_base, alerts),
        git_http_server(origins, "gate", found.values["git_url_token"]) as (git_base, _),
    ):
        # The origin behind basic auth, its token in the URL template as operators give it.
        git_host = git_base.removeprefix("http://")
        env = {
            **fleet_env(
                broker=worker_broker,
                state=worker_state_url if acl else state_url,
                prefix=prefix,
                workdir=workdir,
                origins=origins,
                contracts=contracts,
                repos=[REPO, SLOW_REPO, OTHER_REPO, VENV_REPO, TRUSTED_REPO, LAYER_REPO],
                alert_url=f"{alert_base}/alert",
            ),
            "TESTGATE_GIT_URL_TEMPLATE": (
                f"http://gate:{found.values['git_url_token']}@{git_host}/{{repo}}.git"
            ),
            "HOME": str(home),
            "TESTGATE_CONTAINMENT": "required",
            "TESTGATE_GIT_EMAIL_DOMAIN": "gate.example",
            "TESTGATE_WEBHOOK_SECRET": found.values["webhook_secret"],
            "TESTGATE_TELEGRAM_BOT_TOKEN": found.values["telegram_bot_token"],
            "TESTGATE_TELEGRAM_CHAT_ID": "42",
            "TESTGATE_TELEGRAM_API_BASE": f"{alert_base}/telegram",
            "AWS_SECRET_ACCESS_KEY": found.values["aws_secret"],
            "TESTGATE_SUITE_MAX_MEMORY_MB": "2048",
            "TESTGATE_SUITE_MAX_PIDS": "512",
        }
        log = tmp / "worker.log"
        worker = _start_worker(env, log, f"hostile-{prefix.strip(':')}", processes)
        orchestrator = Orchestrator.connect(broker, state_url)
        try:
            worker.wait_ready(orchestrator.app)
            yield Fleet(
                broker_name=broker_name,
                orchestrator=orchestrator,
                origin=Origin(bare, git(bare, "rev-parse", "refs/heads/main")),
                slow_origin=Origin(origins / f"{SLOW_REPO}.git", ""),
                others={
                    name: Origin(origins / f"{name}.git", "")
                    for name in (OTHER_REPO, VENV_REPO, LAYER_REPO)
                },
                workdir=workdir,
                marks=marks,
                alerts=alerts,
                worker=worker,
                secrets=found,
                broker_password_in_url=acl,
                trusted_origin=Origin(trusted, git(trusted, "rev-parse", "refs/heads/main")),
            )
        finally:
            worker.stop()
            _clean(broker, state_url)
            if acl:
                redis.Redis.from_url(REDIS).acl_deluser(user)
