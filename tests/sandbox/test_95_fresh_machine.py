"""A fresh machine passes the README's commands: `scripts/setup` and the tests that need
no host, in a Debian 12 sandbox host that has nothing but what a new machine has.

This is what keeps CI honest: a tool installed by hand on the CI machine but missing
from scripts/setup fails here, because this machine does not have it. The only thing
given to it is this machine's network trust (CA certificates its bundle has beyond
Debian's, e.g. of an intercepting proxy), never a package.
"""

from __future__ import annotations

import io
import os
import re
import ssl
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandbox import ROOT, docker_ready, regops, require

pytestmark = pytest.mark.sandbox

IMAGE = "regops-sandbox-base:bookworm"
# What only the sandbox tests use: the no-host tests cannot notice them missing.
SANDBOX_TOOLS = ("docker", "skopeo", "curl", "ab", "debootstrap", "docker-registry", "git",
                 "ssh", "vagrant", "shellcheck", "htpasswd", "openssl", "systemd-analyze",
                 "chromium")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def docker(*args: str, input: bytes | None = None, timeout: int = 120
           ) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], input=input, capture_output=True, timeout=timeout)


def in_machine(name: str, script: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return docker("exec", "-w", "/root/regops", name, "bash", "-lc", script, timeout=timeout)


def checkout() -> bytes:
    """The files a clone of this working tree has (tracked, and new ones not ignored)."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in filter(None, names):
            if os.path.lexists(ROOT / name):
                tar.add(ROOT / name, arcname=name, recursive=False)
    return buffer.getvalue()


def extra_trust(machine_bundle: bytes) -> list[bytes]:
    """CA certificates this machine trusts that the fresh one does not."""
    ours = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    theirs = set(_PEM.findall(machine_bundle))
    return [pem for pem in _PEM.findall(ours.read_bytes()) if pem not in theirs]


@pytest.fixture(scope="module")
def machine() -> Iterator[str]:
    require(docker_ready(), "a running Docker engine (scripts/setup starts one)")
    regops("sandbox", "build", "--distro", "bookworm")
    name = f"regops-fresh-{uuid.uuid4().hex[:8]}"
    run = docker(
        "run", "-d", "--name", name, "--hostname", name,
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined", "--cgroupns=host",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "--stop-signal", "SIGRTMIN+3", "-v", f"{name}-docker:/var/lib/docker", IMAGE,
    )
    try:
        assert run.returncode == 0, run.stderr.decode()
        booted = docker("exec", name, "bash", "-c", "for i in $(seq 120); do case $(systemctl "
                        "is-system-running) in running|degraded) exit 0;; esac; sleep 0.5; "
                        "done; exit 1", timeout=120)
        assert booted.returncode == 0, "the fresh machine did not boot"
        bundle = docker("exec", name, "cat", "/etc/ssl/certs/ca-certificates.crt").stdout
        for n, pem in enumerate(extra_trust(bundle)):
            docker("exec", "-i", name, "sh", "-c", "mkdir -p /usr/local/share/ca-certificates/"
                   f"network && cat > /usr/local/share/ca-certificates/network/{n}.crt",
                   input=pem + b"\n")
        assert docker("exec", name, "update-ca-certificates").returncode == 0
        copied = docker("exec", "-i", name, "sh", "-c",
                        "mkdir -p /root/regops && tar -C /root/regops -xf -", input=checkout())
        assert copied.returncode == 0, copied.stderr.decode()
        yield name
    finally:
        docker("rm", "-f", "-v", name)
        docker("volume", "rm", "-f", f"{name}-docker")


def test_setup_installs_everything_the_tests_use(machine):
    setup = in_machine(machine, "./scripts/setup")
    assert setup.returncode == 0, (setup.stdout + setup.stderr).decode()[-3000:]
    missing = in_machine(machine, "for c in " + " ".join(SANDBOX_TOOLS) +
                         "; do command -v $c >/dev/null || echo $c; done")
    assert missing.stdout.decode().split() == []
    assert in_machine(machine, "docker info >/dev/null").returncode == 0
    # Debian's docker-registry package would start a registry of its own on port 5000.
    assert in_machine(machine, "systemctl is-active docker-registry").returncode != 0


def test_a_fresh_machine_passes_the_no_host_tests(machine):
    result = in_machine(
        machine,
        ". .venv/bin/activate && ruff check . && mypy && "
        "CI=true python -m pytest tests/unit -q -p no:cacheprovider",
        timeout=1200,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output[-4000:]
    assert " passed" in output and "skipped" not in output
