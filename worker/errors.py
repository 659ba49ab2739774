"""Every exception testgate raises, under one root.

    TestgateError
     ├── InfrastructureError          the gate could not do its work: never a code fault
     │    ├── GitError
     │    ├── CheckoutError
     │    ├── StateUnavailable
     │    ├── EventDeliveryError
     │    ├── WebhookError
     │    └── StartFailed
     ├── ConfigurationError           the operator's configuration is wrong: fix and restart
     │    ├── ContractsFileError
     │    └── UnsafeConfiguration
     └── InvalidJob (also ValueError)  the job would only be handed back

An infrastructure fault routes a job to a deferral or a fail-closed FAIL (the
contract's outcomes); a configuration error stops a worker at start or hands jobs
back; an invalid job is refused before it is sent. None of them is a verdict.
"""

from __future__ import annotations


class TestgateError(Exception):
    """Raised for nothing itself: the root, so that callers can catch all of testgate."""

    __test__ = False  # not a pytest test class, despite the name


class InfrastructureError(TestgateError):
    """Raised when something the gate depends on (git, Redis, the broker, an HTTP
    receiver) fails: an infrastructure fault, never a defect of the branch."""


class GitError(InfrastructureError):
    """Raised when a git command fails, times out or cannot be started."""


class CheckoutError(InfrastructureError):
    """Raised when a job's checkout (mirror, fetch, worktree) cannot be made."""


class StateUnavailable(InfrastructureError):
    """Raised when the shared state (Redis) cannot be read or written."""


class EventDeliveryError(InfrastructureError):
    """Raised when an event (advance, hand-back, shard chord) cannot reach broker or webhook."""


class WebhookError(InfrastructureError):
    """Raised when a webhook POST does not succeed within its attempts."""


class ConfigurationError(TestgateError):
    """Raised when the operator's configuration cannot be used as it is."""


class ContractsFileError(ConfigurationError):
    """Raised when the contracts file cannot be read or does not describe valid contracts."""


class UnsafeConfiguration(ConfigurationError):
    """Raised when a worker would run with a configuration that can lose or duplicate jobs."""


class InvalidJob(TestgateError, ValueError):
    """Raised when `client.enqueue` refuses a job that a worker would only hand back."""


class StartFailed(InfrastructureError):
    """Raised when a job's command could not be started at all: the suite never ran."""
