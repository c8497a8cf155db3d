"""Fixtures for tests that need no host."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    return tmp_path / "secrets"


@pytest.fixture
def base_data(secrets_dir: Path) -> dict:
    return {"registry_name": "reg.example.com", "registry_secrets_dir": str(secrets_dir)}
