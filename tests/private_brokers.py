"""Brokers of its own for each pytest-xdist process, so that test sessions running side
by side never take each other's jobs: a redis-server on a free loopback port, and a
RabbitMQ vhost on the machine's RabbitMQ. Tests find them through the same variables a
developer sets by hand (TESTGATE_TEST_REDIS, TESTGATE_TEST_RABBITMQ), read when the test
modules are imported, which is after pytest_configure has run."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tests.redisserver import RedisServer

REDIS_VAR = "TESTGATE_TEST_REDIS"
RABBITMQ_VAR = "TESTGATE_TEST_RABBITMQ"
RABBITMQ_FLEET_VAR = "TESTGATE_TEST_RABBITMQ_FLEET"  # tests/integration/harness.py
RABBITMQ_HOST = "amqp://guest:guest@127.0.0.1:5672"


def start(workdir: Path) -> Callable[[], None]:
    """Start this process's brokers unless the developer named some; the function
    that drops what outlives the process (the vhosts)."""
    stops: list[Callable[[], None]] = []
    if REDIS_VAR not in os.environ:
        # Not stopped here: it ends with this process, after the last Celery result
        # object subscribed to it is collected (stopped earlier, each of those retries
        # its reconnect for 20 s at exit).
        server = RedisServer(workdir)
        server.start()
        os.environ[REDIS_VAR] = server.url
    # Two vhosts: the integration suite's fleet lives for the whole session, while
    # other tests' workers come and go on the `tests` queue of the first.
    for var in (RABBITMQ_VAR, RABBITMQ_FLEET_VAR):
        if var not in os.environ:
            vhost = f"testgate-{uuid.uuid4().hex[:8]}"
            _rabbitmqctl("add_vhost", vhost)
            stops.append(partial(_rabbitmqctl, "delete_vhost", vhost))
            _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            os.environ[var] = f"{RABBITMQ_HOST}/{vhost}"

    def stop_all() -> None:
        for stop in stops:
            stop()

    return stop_all


def _rabbitmqctl(*args: str) -> None:
    # Loud: processes sharing one vhost would take each other's jobs and fail elsewhere.
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=False, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
