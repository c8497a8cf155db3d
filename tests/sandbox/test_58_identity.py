"""Directory and single sign-on identities on real hosts (issue 18): a Debian 12 and a
Debian 13 host of their own, deployed with `registry_ldap` pointing at a real OpenLDAP
(Debian's slapd, tests/support/slapd.py) and `registry_oidc` at a real OpenID provider
(npm's oidc-provider, tests/support/oidc.py), both served by this machine on the
sandbox's bridge address over TLS.

LDAP: docker on each host logs in with directory passwords and pushes where the
person's directory group may; leaving the group, and the directory going down, count
at the next token; a local admin keeps working; a second deploy changes nothing.
OIDC: chromium signs in on each host's pages through the provider, creates a CLI
secret, docker pushes with it where the provider's group may, and a revoked one is
refused."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import oidc
from tests.support.browser import CHROMIUM_ARGS, spki_pin
from tests.support.sandbox import (
    ROOT,
    SANDBOX,
    bridge_gateway,
    demo_password,
    regops,
    ssh_host,
)
from tests.support.slapd import GROUPS, PASSWORDS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd

pytestmark = pytest.mark.sandbox

NAME = f"{SANDBOX}-ldap"
ACCESS = [
    {"repositories": ["platform/**"], "who": ["group:ldap:platform-team"],
     "actions": ["pull", "push"]},
    {"repositories": ["sso/**"], "who": ["group:oidc:platform-team"],
     "actions": ["pull", "push"]},
]


@pytest.fixture(scope="module")
def directory_hosts(sandbox, tmp_path_factory
                    ) -> Iterator[tuple[list[dict], Slapd, Path, oidc.OidcProvider]]:
    regops("sandbox", "down", "--name", NAME, check=False)
    regops("sandbox", "up", "--name", NAME, "--distro", "bookworm", "--distro", "trixie")
    tmp = tmp_path_factory.mktemp("ldap-hosts")
    try:
        hosts = json.loads(regops("sandbox", "status", "--name", NAME, "--json").stdout)["hosts"]
        gateway = bridge_gateway(hosts[0]["container"])
        redirects = [oidc_redirect(h) for h in hosts]
        with Slapd(tmp / "slapd", serve_on=gateway) as slapd, \
                oidc.OidcProvider(tmp / "oidc", serve_on=gateway,
                                  redirect_uris=redirects) as provider:
            inventory = tmp / "ldap_inventory.py"
            ldap = {"urls": [slapd.remote_url], "ca_file": slapd.ca_file, "bind_dn": SERVICE_DN,
                    "user_base": PEOPLE, "group_base": GROUPS}
            sso = {"issuer": provider.issuer, "client_id": provider.client_id,
                   "ca_file": str(provider.ca_file), "label": "Example SSO"}
            inventory.write_text(
                "from regops.sandbox import hosts as sandbox\n"
                f"doc = sandbox.status({NAME!r})\n"
                f"ldap = {ldap!r}\n"
                f"sso = {sso!r}\n"
                f"extra = {ACCESS!r}\n"
                "hosts = [(n, {**d, 'registry_ldap': ldap, 'registry_oidc': sso,\n"
                "              'registry_access': [*d['registry_access'], *extra]})\n"
                "         for n, d in sandbox.inventory_hosts(doc)]\n")
            yield hosts, slapd, inventory, provider
    finally:
        if os.environ.get("REGOPS_KEEP_SANDBOX") != "1":
            regops("sandbox", "down", "--name", NAME, check=False)


def oidc_redirect(h: dict) -> str:
    return f"https://{h['registry_name']}:5000/oidc/callback"


def _deploy(inventory: Path, provider: oidc.OidcProvider) -> subprocess.CompletedProcess:
    env = {**os.environ, "REGOPS_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
           "REGOPS_OIDC_CLIENT_SECRET": provider.client_secret}
    return subprocess.run([sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def deployed(directory_hosts):
    hosts, slapd, inventory, provider = directory_hosts
    first = _deploy(inventory, provider)
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    assert SERVICE_PASSWORD not in first.stdout + first.stderr
    assert provider.client_secret not in first.stdout + first.stderr
    return hosts, slapd, inventory, provider


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
    hosts, _, _, _ = deployed
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
    _, _, inventory, provider = deployed
    env = {**os.environ, "REGOPS_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
           "REGOPS_OIDC_CLIENT_SECRET": provider.client_secret}
    result = subprocess.run([sys.executable, "-m", "regops.cli", "check", "-i", str(inventory),
                             "--only", "token.directory", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    doc = json.loads(result.stdout)
    verdicts = [r for h in doc["hosts"] for r in h["results"] if r["id"] == "token.directory"]
    assert len(verdicts) == 2 and all(r["status"] == "pass" for r in verdicts), verdicts
    assert all("over TLS" in r["detail"] for r in verdicts)


def test_the_second_deploy_changes_nothing(deployed):
    _, _, inventory, provider = deployed
    second = _deploy(inventory, provider)
    assert second.returncode == 0
    totals = [line for line in (second.stdout + second.stderr).splitlines()
              if "Grand total" in line][0].split()
    assert totals[3] == "-", totals  # no operation changed anything


def test_leaving_the_group_counts_at_the_next_push(deployed):
    hosts, slapd, _, _ = deployed
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


@pytest.fixture(scope="module")
def chromium(deployed) -> Iterator[Any]:
    """A browser that reaches each host's pages by its registry name on the sandbox
    bridge, and trusts the registries' and the provider's certificates."""
    from playwright.sync_api import sync_playwright

    hosts, _, _, provider = deployed
    executable = shutil.which("chromium")
    assert executable, "chromium is missing (scripts/setup installs it)"
    pins = [spki_pin(h["ip"], 5000, h["ca_path"]) for h in hosts]
    address, port = urllib.parse.urlsplit(provider.issuer).hostname, provider.port
    pins.append(spki_pin(str(address), port, str(provider.ca_file)))
    rules = ", ".join(f"MAP {h['registry_name']} {h['ip']}" for h in hosts)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[
            *CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={','.join(pins)}",
            f"--host-resolver-rules={rules}"])
        yield browser
        browser.close()


def _sso_sign_in(page: Any, h: dict, login: str) -> None:
    page.goto(f"https://{h['registry_name']}:5000/login")
    page.get_by_role("link", name="Sign in with Example SSO").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill(oidc.PASSWORDS[login])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"https://{h['registry_name']}:5000/repositories/")
    assert f"Signed in as {login}" in page.locator("header").inner_text()


def test_a_person_signs_in_by_sso_and_docker_pushes_with_their_cli_secret(deployed, chromium):
    """On each host: chromium through the provider's login, a CLI secret made on the
    pages, docker login with it, a push where the provider's group may and none
    elsewhere; the secret revoked, docker login fails; logged out, the pages ask again."""
    hosts, _, _, provider = deployed
    for h in hosts:
        context = chromium.new_context()
        page = context.new_page()
        page.set_default_timeout(20000)
        th = ssh_host(h)
        try:
            _sso_sign_in(page, h, "erin")
            page.get_by_role("link", name="CLI secret").click()
            page.get_by_role("button", name="Create a CLI secret").click()
            secret = page.locator("#cli-secret").inner_text().strip()
            assert secret.startswith("regops_cli_")
            assert _login(th, h, "erin", "regops_cli_not-erins").rc != 0
            login = _login(th, h, "erin", secret)
            assert login.rc == 0, (h["distro"], login.stderr)
            pushed = _push(th, h, "sso/erin-app:1")
            assert pushed.rc == 0, (h["distro"], pushed.stderr)
            assert _push(th, h, "platform/from-sso:1").rc != 0  # an LDAP group's, not hers
            page.goto(f"https://{h['registry_name']}:5000/repositories/sso/")
            assert "erin-app" in page.locator("main").inner_text()
            audit = th.check_output("cat /var/log/regops-token/audit.log")
            assert '"subject": "oidc:erin"' in audit and secret not in audit
            assert provider.client_secret not in th.check_output(
                "journalctl -u regops-token --no-pager -q 2>/dev/null; echo")

            page.goto(f"https://{h['registry_name']}:5000/cli-secret")
            page.get_by_role("button", name="Revoke it").click()
            assert "revoked" in page.locator("main").inner_text()
            th.run(f"docker logout {h['registry_name']}:5000")
            assert _login(th, h, "erin", secret).rc != 0
            page.get_by_role("button", name="Log out").click()
            page.goto(f"https://{h['registry_name']}:5000/cli-secret")
            assert "/login" in page.url
        finally:
            th.run(f"docker logout {h['registry_name']}:5000")
            context.close()


def test_the_directory_down_costs_only_its_people(deployed):
    """Last: it stops the directory."""
    hosts, slapd, _, _ = deployed
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
