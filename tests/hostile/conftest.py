"""The hostile suites' fleet: one contained single-process worker per broker
(tests/hostile/workers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.harness import Fleet
from tests.hostile.workers import BROKERS, contained_fleet


# Module-scoped: the fleet is gone before the integration fleets start, which consume
# the same `tests` queue on the same RabbitMQ vhost.
@pytest.fixture(scope="module", params=sorted(BROKERS))
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """One contained single-process worker per broker, for every hostile test."""
    with contained_fleet(request.param, tmp_path_factory) as found:
        yield found
