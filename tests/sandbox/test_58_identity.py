"""Directory logins on real hosts (issue 18, LDAP): a Debian 12 and a Debian 13 host of
their own, deployed with `registry_ldap` pointing at a real OpenLDAP (Debian's slapd,
tests/support/slapd.py) that this machine serves on the sandbox's bridge address over
ldaps://. docker on each host logs in with directory passwords and pushes where the
person's directory group may; leaving the group, and the directory going down, count
at the next token; a local admin keeps working; a second deploy changes nothing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sandbox import ROOT, SANDBOX, demo_password, regops, ssh_host
from tests.support.slapd import GROUPS, PASSWORDS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd

pytestmark = pytest.mark.sandbox

NAME = f"{SANDBOX}-ldap"
ACCESS = [
    {"repositories": ["platform/**"], "who": ["group:ldap:platform-team"],
     "actions": ["pull", "push"]},
]


def _gateway(container: str) -> str:
    """The address the sandbox's containers reach this machine on (their bridge's)."""
    out = subprocess.run(["docker", "inspect", "-f",
                          "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", container],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0]


@pytest.fixture(scope="module")
def directory_hosts(sandbox, tmp_path_factory) -> Iterator[tuple[list[dict], Slapd, Path]]:
    regops("sandbox", "down", "--name", NAME, check=False)
    regops("sandbox", "up", "--name", NAME, "--distro", "bookworm", "--distro", "trixie")
    tmp = tmp_path_factory.mktemp("ldap-hosts")
    try:
        hosts = json.loads(regops("sandbox", "status", "--name", NAME, "--json").stdout)["hosts"]
        with Slapd(tmp / "slapd", serve_on=_gateway(hosts[0]["container"])) as slapd:
            inventory = tmp / "ldap_inventory.py"
            ldap = {"urls": [slapd.remote_url], "ca_file": slapd.ca_file, "bind_dn": SERVICE_DN,
                    "user_base": PEOPLE, "group_base": GROUPS}
            inventory.write_text(
                "from regops.sandbox import hosts as sandbox\n"
                f"doc = sandbox.status({NAME!r})\n"
                f"ldap = {ldap!r}\n"
                f"extra = {ACCESS!r}\n"
                "hosts = [(n, {**d, 'registry_ldap': ldap,\n"
                "              'registry_access': [*d['registry_access'], *extra]})\n"
                "         for n, d in sandbox.inventory_hosts(doc)]\n")
            yield hosts, slapd, inventory
    finally:
        if os.environ.get("REGOPS_KEEP_SANDBOX") != "1":
            regops("sandbox", "down", "--name", NAME, check=False)


def _deploy(inventory: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "REGOPS_LDAP_BIND_PASSWORD": SERVICE_PASSWORD}
    return subprocess.run([sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def deployed(directory_hosts):
    hosts, slapd, inventory = directory_hosts
    first = _deploy(inventory)
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    assert SERVICE_PASSWORD not in first.stdout + first.stderr
    return hosts, slapd, inventory


def _login(th: Any, h: dict, user: str, password: str) -> Any:
    return th.run(f"printf %s {shlex.quote(password)} | docker login -u {user} "
                  f"--password-stdin {h['registry_name']}:5000")


def _push(th: Any, h: dict, repo: str) -> Any:
    tag = f"{h['registry_name']}:5000/{repo}"
    th.check_output(f"tar -C /etc -c hostname | docker import - {tag}")
    try:
        return th.run(f"docker push {tag}")
    finally:
        th.run(f"docker rmi {tag}")


def test_docker_logs_in_with_a_directory_password_and_pushes_where_the_group_may(deployed):
    hosts, _, _ = deployed
    for h in hosts:
        th = ssh_host(h)
        try:
            assert _login(th, h, "dave", "not-daves-password").rc != 0
            login = _login(th, h, "dave", PASSWORDS["dave"])
            assert login.rc == 0, (h["distro"], login.stderr)
            pushed = _push(th, h, "platform/from-ldap:1")
            assert pushed.rc == 0, (h["distro"], pushed.stderr)
            assert _push(th, h, "elsewhere/from-ldap:1").rc != 0  # no rule gives dave that
            audit = th.check_output("grep -c '\"subject\": \"ldap:dave\"' "
                                    "/var/log/regops-token/audit.log")
            assert int(audit) >= 2
            assert SERVICE_PASSWORD not in th.check_output(
                "journalctl -u regops-token --no-pager -q 2>/dev/null; "
                "cat /var/log/regops-token/audit.log")
        finally:
            th.run(f"docker logout {h['registry_name']}:5000")


def test_regops_check_reaches_the_directory_from_each_host(deployed):
    _, _, inventory = deployed
    env = {**os.environ, "REGOPS_LDAP_BIND_PASSWORD": SERVICE_PASSWORD}
    result = subprocess.run([sys.executable, "-m", "regops.cli", "check", "-i", str(inventory),
                             "--only", "token.directory", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    doc = json.loads(result.stdout)
    verdicts = [r for h in doc["hosts"] for r in h["results"] if r["id"] == "token.directory"]
    assert len(verdicts) == 2 and all(r["status"] == "pass" for r in verdicts), verdicts
    assert all("over TLS" in r["detail"] for r in verdicts)


def test_the_second_deploy_changes_nothing(deployed):
    _, _, inventory = deployed
    second = _deploy(inventory)
    assert second.returncode == 0
    totals = [line for line in (second.stdout + second.stderr).splitlines()
              if "Grand total" in line][0].split()
    assert totals[3] == "-", totals  # no operation changed anything


def test_leaving_the_group_counts_at_the_next_push(deployed):
    hosts, slapd, _ = deployed
    slapd.remove_member("platform-team", "dave")
    try:
        for h in hosts:
            th = ssh_host(h)
            try:
                assert _login(th, h, "dave", PASSWORDS["dave"]).rc == 0  # still a person
                refused = _push(th, h, "platform/from-ldap:2")
                assert refused.rc != 0 and "denied" in refused.stderr.lower(), refused.stderr
            finally:
                th.run(f"docker logout {h['registry_name']}:5000")
    finally:
        slapd.add_member("platform-team", "dave")


def test_the_directory_down_costs_only_its_people(deployed):
    """Last: it stops the directory."""
    hosts, slapd, _ = deployed
    slapd.stop()
    for h in hosts:
        th = ssh_host(h)
        try:
            refused = _login(th, h, "dave", PASSWORDS["dave"])
            assert refused.rc != 0
            local = _login(th, h, h["demo_user"], demo_password(h))
            assert local.rc == 0, local.stderr  # the break-glass admin logs in
        finally:
            th.run(f"docker logout {h['registry_name']}:5000")
