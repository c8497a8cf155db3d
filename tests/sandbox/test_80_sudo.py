"""The production path: deploy as a non-root SSH user through sudo.

Secret files then pass through a temporary upload as the SSH user; they must
go through a directory only that user can read, and leave nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.sandbox import ROOT, SANDBOX, regops, ssh_host

pytestmark = pytest.mark.sandbox

NAME = f"{SANDBOX}-sudo"


@pytest.fixture(scope="module")
def sudo_host(sandbox):  # the session's `sandbox` fixture checks Docker first
    regops("sandbox", "down", "--name", NAME, check=False)
    regops("sandbox", "up", "--name", NAME, "--hosts", "1")
    h = json.loads(regops("sandbox", "status", "--name", NAME, "--json").stdout)["hosts"][0]
    ssh_host(h).check_output(
        "apt-get install -y -qq sudo >/dev/null && useradd -m -s /bin/bash deploy && "
        "echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy && "
        "install -d -o deploy -g deploy -m 0700 ~deploy/.ssh && "
        "install -o deploy -g deploy -m 0600 /root/.ssh/authorized_keys ~deploy/.ssh/"
    )
    yield h
    if os.environ.get("REGOPS_KEEP_SANDBOX") != "1":
        regops("sandbox", "down", "--name", NAME, check=False)


def _deploy(tmp_path) -> subprocess.CompletedProcess:
    inventory = tmp_path / "sudo_inventory.py"
    inventory.write_text(
        "from regops.sandbox import hosts as sandbox\n"
        f"doc = sandbox.status({NAME!r})\n"
        "hosts = [(n, {**d, 'ssh_user': 'deploy', '_sudo': True})\n"
        "         for n, d in sandbox.inventory_hosts(doc)]\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )


def test_deploy_through_sudo_keeps_secrets_private_and_is_idempotent(sudo_host, tmp_path):
    first = _deploy(tmp_path)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    th = ssh_host(sudo_host)
    upload = th.file("/tmp/regops-upload-deploy")
    assert upload.is_directory and upload.user == "deploy" and upload.mode == 0o700
    assert th.check_output("ls -A /tmp/regops-upload-deploy") == ""
    key = th.file("/etc/nginx/regops/tls/server.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o400)
    assert th.check_output("ls -A /etc/nginx/regops/tls") == "server.crt\nserver.key"
    code = th.check_output(
        "curl -s -o /dev/null -w '%{http_code}' "
        f"--cacert /etc/docker/certs.d/{sudo_host['registry_name']}:5000/ca.crt "
        f"--resolve {sudo_host['registry_name']}:5000:127.0.0.1 "
        f"https://{sudo_host['registry_name']}:5000/v2/"
    )
    assert code == "401"
    second = _deploy(tmp_path)
    assert second.returncode == 0
    assert "Grand total" in second.stdout + second.stderr
    totals = [line for line in (second.stdout + second.stderr).splitlines()
              if "Grand total" in line][0].split()
    assert totals[3] == "-", totals  # no operation changed anything
