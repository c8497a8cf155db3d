"""Helpers for the tests on sandbox hosts: running regops and the deploy, reaching
hosts over SSH and the registry with clients, and what GC under load must keep.
The fixtures that bring the hosts up are in `tests/sandbox/conftest.py`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from regops.registry import skopeo
from regops.registry.client import RegistryClient
from regops.sandbox.load import LoadResult, verify
from regops.sandbox.load import pull as pull_image
from regops.secrets import paths
from regops.secrets import store as secrets

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = os.environ.get("REGOPS_TEST_SANDBOX", "regops-test")
IN_CI = os.environ.get("CI", "").lower() == "true"
HOSTS = {"sb1": "bookworm", "sb2": "trixie"}


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs this and it is missing: {why}")
    pytest.skip(why)


def docker_ready() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def regops(*args: str, check: bool = True, timeout: int = 1200,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "regops.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"regops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


class Pair(Mapping[str, Any]):
    """The shared sb1/sb2 sandbox's status document (`regops sandbox status --json`),
    brought up on first read. Tests with a sandbox of their own ask for the session's
    `sandbox` fixture only for its checks: a pytest-xdist worker that runs only such
    tests never starts (or tears down) a pair, which the pair's worker owns."""

    def __init__(self) -> None:
        self._doc: dict[str, Any] | None = None

    @property
    def started(self) -> bool:
        return self._doc is not None

    def up(self) -> dict[str, Any]:
        if self._doc is None:
            distros = [arg for distro in HOSTS.values() for arg in ("--distro", distro)]
            if os.environ.get("REGOPS_REUSE_SANDBOX") != "1":
                # Fresh hosts: the tests start from a registry that was never pushed to.
                regops("sandbox", "down", "--name", SANDBOX, check=False)
            regops("sandbox", "up", "--name", SANDBOX, "--hosts", str(len(HOSTS)), *distros)
            self._doc = json.loads(regops("sandbox", "status", "--name", SANDBOX,
                                          "--json").stdout)
        return self._doc

    def __getitem__(self, key: str) -> Any:
        return self.up()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.up())

    def __len__(self) -> int:
        return len(self.up())


@dataclass
class Deploy:
    returncode: int
    output: str


def deploy(*extra: str, limit: str | None = None, env: dict[str, str] | None = None) -> Deploy:
    """Run the real deploy against the test sandbox; returns its combined output."""
    args = [sys.executable, "-m", "pyinfra", "-y", "inventories/sandbox.py", "deploy.py", *extra]
    if limit:
        args += ["--limit", limit]
    environ = {**os.environ, "REGOPS_SANDBOX": SANDBOX, **(env or {})}
    result = subprocess.run(
        args, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=1500
    )
    return Deploy(result.returncode, result.stdout + result.stderr)


def changed_ops(output: str) -> int:
    """How many operations a deploy changed (pyinfra's "Grand total" line)."""
    match = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert match, output[-3000:]
    return 0 if match[2] == "-" else int(match[2])


def ssh_host(h: dict) -> Any:
    return testinfra.get_host(
        f"ssh://{h['ssh_user']}@{h['ssh_host']}:{h['ssh_port']}",
        ssh_identity_file=h["ssh_key"],
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o LogLevel=ERROR",
    )


def demo_password(h: dict) -> str:
    return Path(h["demo_password_file"]).read_text().strip()


def secret_values(hosts: dict[str, dict]) -> list[str]:
    """Every secret the deploy handles: passwords, http.secret, private keys (a PEM line)."""

    values = []
    for h in hosts.values():
        root, name = Path(h["ca_path"]).parents[2], h["registry_name"]
        pki = paths.pki_dir(root, name)
        values += [
            demo_password(h),
            secrets.http_secret(root, name),
            (pki / "server.key").read_text().splitlines()[1],
            (pki / "ca.key").read_text().splitlines()[1],
        ]
    return values


def client(
    h: dict, password: str | None = None, ca: bool = True, username: str | None = None
) -> RegistryClient:
    return RegistryClient(
        h["registry_url"],
        username or h["demo_user"],
        password if password is not None else demo_password(h),
        ca_file=h["ca_path"] if ca else None,
    )


def push(h: dict, layout: Path, tag: str, repo: str, *, user: str | None = None,
         password: str | None = None, all_images: bool = False
         ) -> subprocess.CompletedProcess:
    """skopeo copies `oci:layout:tag` to the host's registry, as the demo user by default."""
    registry = f"127.0.0.1:{h['registry_published_port']}"
    return skopeo.copy(f"oci:{layout}:{tag}", f"docker://{registry}/{repo}:{tag}",
                       registry=registry, username=user or h["demo_user"],
                       password=password or demo_password(h), ca_file=h["ca_path"],
                       all_images=all_images)


def pull(h: dict, repo: str, tag: str, dest: Path, *, ca: bool = True,
         all_images: bool = False) -> subprocess.CompletedProcess:
    """skopeo copies the tag into the OCI layout `dest`, trusting the CA unless `ca` is off."""
    registry = f"127.0.0.1:{h['registry_published_port']}"
    return skopeo.copy(f"docker://{registry}/{repo}:{tag}", f"oci:{dest}:{tag}",
                       registry=registry, username=h["demo_user"], password=demo_password(h),
                       ca_file=h["ca_path"] if ca else None, all_images=all_images)


def assert_blobs_hash_to_their_digests(layout: Path) -> None:
    import hashlib

    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def registry_du(h: dict) -> int:
    """Bytes under the registry's data directory, measured on the host."""
    return int(ssh_host(h).check_output("du -sb /var/lib/registry | cut -f1"))


def docker_push_pull(th: Any, ref: str) -> None:
    """The host's docker CLI pushes `ref`, forgets it, pulls it back: same image id."""
    pushed = th.run(f"docker push {ref}")
    assert pushed.rc == 0, pushed.stderr
    image_id = th.check_output(f"docker image inspect -f '{{{{.Id}}}}' {ref}")
    th.check_output(f"docker rmi {ref}")
    pulled = th.run(f"docker pull {ref}")
    assert pulled.rc == 0, pulled.stderr
    assert th.check_output(f"docker image inspect -f '{{{{.Id}}}}' {ref}") == image_id


def assert_gc_load_lost_nothing(result: LoadResult, seeder: RegistryClient,
                                seeds: list[tuple[str, str]]) -> None:
    """What GC under pushers and pullers must keep: no failed pull, pushes in the window
    refused (503) and retried, every acknowledged image and every seed pullable whole."""
    assert result.pulls > 0 and result.pull_failures == []
    assert result.refused > 0  # the read-only window did overlap the pushes
    assert result.push_failures == []
    assert len(result.acknowledged) > 10
    assert verify(seeder, result.acknowledged) == []
    for repository, tag in seeds:
        pull_image(seeder, repository, tag)



def secrets_root(h: dict) -> Path:
    """The operator-side secrets directory the sandbox deploy used for `h`."""
    return Path(h["ca_path"]).parents[2]


def password(h: dict, user: str) -> str:
    return paths.password_path(secrets_root(h), h["registry_name"], user).read_text().strip()


def bridge_gateway(container: str) -> str:
    """The address the sandbox's containers reach this machine on (their bridge's)."""
    out = subprocess.run(["docker", "inspect", "-f",
                          "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", container],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0]
