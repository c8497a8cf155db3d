"""`regops sandbox up/status/down` against the real Docker engine.

Needs Docker (and root to build base images on first use). With CI=true a
missing engine is a failure, not a skip: CI must never go green by skipping
the only test that proves hosts can be made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT = 900  # a cold run builds a base image with debootstrap


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    cp = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    return cp.returncode == 0


def _require_docker() -> None:
    if _docker_works():
        return
    msg = "Docker engine not reachable (`docker info` fails); run scripts/setup"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def _env(state: Path) -> dict[str, str]:
    return {**os.environ, "REGOPS_STATE_DIR": str(state)}


def regops(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI as an operator runs it, in a fresh process (env is read at import)."""
    return subprocess.run(
        [sys.executable, "-c", "from regops.cli import main; main()", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def sandbox_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    _require_docker()
    state = tmp_path_factory.mktemp("state")
    name = f"t{uuid.uuid4().hex[:8]}"
    env = _env(state)
    try:
        cp = regops(env, "sandbox", "up", "--name", name, "--hosts", "1", "--json",
                    timeout=UP_TIMEOUT)
        assert cp.returncode == 0, cp.stderr
        yield {"name": name, "env": env, "state": state, "up": json.loads(cp.stdout)}
    finally:
        regops(env, "sandbox", "down", "--name", name)


def _status(ctx: dict[str, Any]) -> dict[str, Any]:
    cp = regops(ctx["env"], "sandbox", "status", "--name", ctx["name"], "--json")
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def _ssh(host: dict[str, Any], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", host["ssh_key"], "-p", str(host["ssh_port"]),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
         f"{host['ssh_user']}@{host['ssh_host']}", *command],
        capture_output=True, text=True, timeout=60,
    )


def test_status_json(sandbox_up: dict[str, Any]) -> None:
    name, state = sandbox_up["name"], sandbox_up["state"].resolve()
    doc = _status(sandbox_up)
    assert doc == sandbox_up["up"]
    assert doc["name"] == name
    assert doc["ssh_key"] == str(state / "sandbox" / name / "id_ed25519")
    assert doc["registry_image"].startswith("regops/registry:")
    assert Path(doc["registry_image_archive"]).is_file()
    (host,) = doc["hosts"]
    assert host["name"] == "sb1"
    assert host["container"] == f"{name}-sb1"
    assert host["distro"] == "bookworm"
    assert host["hostname"] == host["registry_name"] == f"sb1.{name}.test"
    assert host["running"] is True
    assert host["ssh_host"] == "127.0.0.1" and host["ssh_user"] == "root"
    assert host["registry_port"] == 5000
    assert host["registry_url"] == f"https://127.0.0.1:{host['registry_published_port']}"
    secrets = state / "secrets" / host["registry_name"]
    assert host["ca_path"] == str(secrets / "pki" / "ca.crt")
    assert host["demo_password_file"] == str(secrets / "users" / "demo.password")
    assert host["ip"] and not host["ip"].startswith("127.")


def test_host_is_reachable_over_ssh(sandbox_up: dict[str, Any]) -> None:
    (host,) = sandbox_up["up"]["hosts"]
    cp = _ssh(host, "systemctl", "is-system-running")
    assert cp.stdout.strip() in ("running", "degraded"), cp.stderr
    cp = _ssh(host, "getent", "hosts", host["hostname"])
    assert cp.returncode == 0 and cp.stdout.split()[0] == host["ip"], cp.stdout + cp.stderr


def test_up_again_reuses_the_host(sandbox_up: dict[str, Any]) -> None:
    before = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", f"{sandbox_up['name']}-sb1"],
                            capture_output=True, text=True).stdout
    cp = regops(sandbox_up["env"], "sandbox", "up", "--name", sandbox_up["name"], "--json",
                timeout=300)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout) == sandbox_up["up"]
    after = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", f"{sandbox_up['name']}-sb1"],
                           capture_output=True, text=True).stdout
    assert before == after


def test_down_removes_everything(sandbox_up: dict[str, Any]) -> None:
    name = sandbox_up["name"]
    cp = regops(sandbox_up["env"], "sandbox", "down", "--name", name)
    assert cp.returncode == 0, cp.stderr
    label = f"label=regops.sandbox={name}"
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", label],
                                capture_output=True, text=True).stdout
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", label],
                             capture_output=True, text=True).stdout
    assert containers.strip() == "" and volumes.strip() == ""
    assert not (sandbox_up["state"] / "sandbox" / name).exists()
    # cached artefacts stay for the next sandbox
    assert Path(sandbox_up["up"]["registry_image_archive"]).is_file()
    cp = regops(sandbox_up["env"], "sandbox", "status", "--name", name, "--json")
    assert cp.returncode != 0 and "regops sandbox up" in cp.stderr
