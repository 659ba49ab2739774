from pathlib import Path

import pytest

from worker.celery_adapter.app import app, check_configuration
from worker.errors import UnsafeConfiguration


def test_a_safe_default_configuration_passes() -> None:
    check_configuration(app.conf)


def test_network_isolation_without_a_working_unshare_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TESTGATE_SUITE_NETWORK_ISOLATION", "true")
    monkeypatch.setenv("TESTGATE_SUITE_MAX_MEMORY_MB", "0")  # so prlimit is not needed
    monkeypatch.setenv("TESTGATE_SUITE_MAX_FILE_MB", "0")
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare to be found
    with pytest.raises(UnsafeConfiguration, match="unshare --net"):
        check_configuration(app.conf)


def test_resource_limits_without_prlimit_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no prlimit to be found
    with pytest.raises(UnsafeConfiguration, match="prlimit"):
        check_configuration(app.conf)
