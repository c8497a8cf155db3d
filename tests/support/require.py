"""Commands the tests need: found, or the test fails in CI and skips elsewhere."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_command(command: str, package: str) -> str:
    """The path of `command`; missing, the test fails in CI (scripts/setup must install
    it) and is skipped elsewhere."""
    path = shutil.which(command)
    if path:
        return path
    why = f"{command} is missing ({package}; scripts/setup installs it)"
    if IN_CI:
        pytest.fail(why)
    pytest.skip(why)
