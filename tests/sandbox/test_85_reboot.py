"""A reboot brings the registry back as declared, without a deploy. Last of the tests
that use the sandbox hosts: a rebooted sandbox host may come back with another IP.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from regops.sandbox.load import pull
from tests.support.sandbox import client, ssh_host

pytestmark = pytest.mark.sandbox

REPO = "team/project/service"  # pushed by the client tests


def test_a_reboot_brings_back_what_a_kill_or_an_interrupted_gc_left(hosts):
    """No deploy needed after a reboot: a registry killed by hand (which Docker's
    unless-stopped does not restart) and a front door left pointing at a standby that
    is gone both come back as declared (regops-registry.service)."""
    h = hosts["sb1"]
    ssh_host(h).check_output(
        "docker kill registry >/dev/null && ln -sfn registry-gc.conf "
        "/etc/nginx/regops/registry-mode.conf && systemctl reload nginx"
    )
    restarted = subprocess.run(["docker", "restart", h["container"]], capture_output=True,
                               text=True, timeout=180)
    assert restarted.returncode == 0, restarted.stderr
    deadline = time.monotonic() + 240
    while True:
        try:
            pull(client(h), REPO, "1.0")
            break
        except Exception:  # noqa: BLE001 - booting
            assert time.monotonic() < deadline, "the registry did not come back after a boot"
            time.sleep(2)
    th = ssh_host(h)
    assert th.file("/etc/nginx/regops/registry-mode.conf").linked_to.endswith("-normal.conf")
    assert th.run("docker container inspect registry-standby").rc != 0
