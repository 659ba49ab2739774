"""Where the sharding tests' workers run (tests/integration/test_sharding.py and
test_sharding_contained.py): Redis databases and brokers of their own, apart from the
shared fleet's (tests/integration/harness.py)."""

from __future__ import annotations

import os

REDIS = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
BROKER_DB, STATE_DB = 4, 5
BROKERS = {
    "redis": f"{REDIS}/{BROKER_DB}",
    "rabbitmq": os.environ.get("TESTGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//"),
}
BRANCH = "feature/x"
