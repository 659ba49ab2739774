"""Tools some tests need from the system (Debian packages that .ci/run installs)."""

from __future__ import annotations

import os
import shutil

import pytest


def required_tool(name: str, package: str) -> str:
    """The tool's path; a skip on a developer machine without it, a failure in CI."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's {package}")
        pytest.skip(f"{name} not installed (apt-get install {package}); CI runs this")
    return found
