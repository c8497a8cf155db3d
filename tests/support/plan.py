"""The deploy planned on pyinfra's @fake connector: an inventory of fake hosts, the
deploy run against it, and the operations it started, in order."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_STARTED = re.compile(r"--> Starting operation: (.+?)\s*$", re.M)


def inventory(tmp_path: Path, hosts: list[tuple[str, dict]]) -> Path:
    path = tmp_path / "inventory.py"
    path.write_text(f"hosts = {hosts!r}\n")
    return path


def fake_host(name: str, secrets_dir: Path, **data) -> tuple[str, dict]:
    """A host named `name` whose registry is `<name>.example.com`."""
    return (
        f"@fake/{name}",
        {
            "registry_name": f"{name}.example.com",
            "registry_secrets_dir": str(secrets_dir),
            "fake_responses": {"uname -s": "Linux", "useradd": "/usr/sbin/useradd"},
            **data,
        },
    )


def pyinfra(inventory: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`pyinfra INVENTORY deploy.py -y ARGS` from the checkout (the @fake connector's
    simulated delay is off for every test: tests/conftest.py)."""
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", str(inventory), "deploy.py", "-y", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def planned_operations(tmp_path: Path, secrets_dir: Path) -> list[str]:
    """The names of the operations a deploy of one replica starts, in order."""
    result = pyinfra(inventory(tmp_path, [fake_host("reg1", secrets_dir)]))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return _STARTED.findall(result.stderr)
