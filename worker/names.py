"""Every name that crosses the wire, written once: tasks, queues and shared-state keys.

The orchestrator sends and receives these by name (it never imports testgate), so a
change here is a change of the contract (docs/contract.md §2 and §8): never rename one
without the orchestrator. The in-suite variable names belong to `worker.insuite`.
"""

from __future__ import annotations

from typing import Final

# Tasks testgate consumes (docs/contract.md §2).
RUN_TEST_GATE: Final = "testgate.run_test_gate"
RUN_TEST_SHARD: Final = "testgate.run_test_shard"
MERGE_TEST_SHARDS: Final = "testgate.merge_test_shards"
SHARDS_FAILED: Final = "testgate.shards_failed"  # the chord's error path
FAIL_SHARDED_JOB: Final = "testgate.fail_sharded_job"  # one FAIL advance for a failed chord

# Queues: jobs and shards arrive on `tests`; the two events go to the orchestrator's.
TESTS_QUEUE: Final = "tests"
ORCHESTRATOR_QUEUE: Final = "orchestrator"  # the default of TESTGATE_ORCHESTRATOR_QUEUE

# The two events testgate sends (docs/contract.md §8); defaults of the settings.
ADVANCE_TASK: Final = "orchestrator.advance_stage"
HANDBACK_TASK: Final = "orchestrator.test_gate_handback"

# Shared state in Redis (worker.state): every key starts with the prefix
# (TESTGATE_KEY_PREFIX); the names after it are fixed.
KEY_PREFIX: Final = "testgate:"
COUNTERS_KEY: Final = "counters"  # hash: counter -> count
RUN_LOCK_KEY: Final = "run:"  # + run key: the lease of the delivery running it
ANSWER_KEY: Final = "answer:"  # + message id: the answer guard of one Celery message
DELIVERIES_KEY: Final = "deliveries:"  # + run key: starts of one attempt
DURATIONS_KEY: Final = "durations:"  # + repo: hash of seconds per test id
DEAL_KEY: Final = "deal:"  # + deal id + ":todo|claimed|batches|failures": a sharded job's queue
FAILING_KEY: Final = "failing:"  # + repo + ":" + branch: set of ids that failed last run
