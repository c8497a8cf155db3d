"""The Vagrant path of docs/deploying.md, for real: `vagrant up` boots a Debian 12 machine
(Vagrant's docker provider, so no hypervisor is needed), the deploy runs against it with
`inventories/vagrant.py`, testinfra (`regops check`) and a push and pull through
verified TLS check the result, and `vagrant destroy` removes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from regops.sandbox.verify import push_pull
from regops.secrets import paths
from tests.support.sandbox import ROOT, regops, require

pytestmark = pytest.mark.sandbox

ADDRESS = "192.168.56.10"
PASSED = ("pass", "limitation")  # accepted on purpose: --accept-limitations


def vagrant(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["vagrant", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "VAGRANT_DEFAULT_PROVIDER": "docker"},
    )


@pytest.fixture(scope="module")
def machine() -> Iterator[None]:
    require(bool(shutil.which("vagrant")), "vagrant (scripts/setup installs it)")
    # The docker provider boots the sandbox's Debian 12 image, and no registry image
    # can be pulled here: inventories/vagrant.py then uploads the sandbox's archive.
    regops("sandbox", "build", "--distro", "bookworm")
    vagrant("destroy", "-f")  # a machine left by an interrupted run
    up = vagrant("up")
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield
    finally:
        if os.environ.get("REGOPS_KEEP_SANDBOX") != "1":
            vagrant("destroy", "-f")


def test_vagrant_validate_needs_no_hypervisor():
    require(bool(shutil.which("vagrant")), "vagrant (scripts/setup installs it)")
    result = vagrant("validate", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_check_push_and_pull_on_the_vagrant_machine(machine):
    deploy = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/vagrant.py", "deploy.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=1500,
    )
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-2000:]

    check = regops("check", "-i", "inventories/vagrant.py", "--accept-limitations", "--json",
                   check=False)
    report = json.loads(check.stdout)
    failed = [r for h in report["hosts"] for r in h["results"] if r["status"] not in PASSED]
    assert check.returncode == 0 and not failed, failed

    secrets = (ROOT / ".regops" / "secrets").resolve()
    ca = paths.ca_cert_path(secrets, ADDRESS)
    password = paths.password_path(secrets, ADDRESS, "admin").read_text().strip()
    proven = push_pull(f"{ADDRESS}:5000", str(ca), "admin", password, repo="vagrant/demo/app")
    assert any("digest" in line and "matches" in line for line in proven)
