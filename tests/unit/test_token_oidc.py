"""Single sign-on through the whole token path: a real OpenID provider (npm's
oidc-provider on node, tests/support/oidc.py), our token service configured as the deploy
writes `registry_oidc`, its web pages driven as a browser drives them, and the real
registry binary checking the tokens a CLI secret gets."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from regops_token import jws
from tests.support.oidc import PASSWORDS, OidcProvider, code_flow, require_package
from tests.support.require import require_command
from tests.support.stack import Stack, WebClient

REDIRECT = "https://reg.test:5000/oidc/callback"
ACCESS = [{"repositories": ["platform/**"], "who": ["group:oidc:platform-team"],
           "actions": ["pull", "push"]}]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_package()
    with OidcProvider(tmp_path_factory.mktemp("oidc"), redirect_uris=[REDIRECT]) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, provider: OidcProvider) -> Iterator[Stack]:
    require_command("docker-registry", "docker-registry")
    tmp = tmp_path_factory.mktemp("token-oidc")
    (tmp / "client-secret").write_text(provider.client_secret + "\n")
    oidc = {"issuer": provider.issuer, "client_id": provider.client_id,
            "client_secret_file": str(tmp / "client-secret"), "redirect_uri": REDIRECT,
            "ca_file": str(provider.ca_file), "scopes": ["openid", "profile", "groups"],
            "username_claim": "preferred_username", "groups_claim": "groups",
            "cli_secret_days": 90, "cli_secrets": str(tmp / "cli-secrets.json"),
            "label": "Example SSO"}
    s = Stack(tmp, web=True, oidc=oidc, access=ACCESS)
    try:
        yield s
    finally:
        s.close()


def _start(stack: Stack, web: WebClient | None = None) -> tuple[WebClient, dict[str, str]]:
    """The browser at /oidc/login: off to the provider with what the service asks."""
    web = web or WebClient(stack.token_port)
    status, headers, _ = web.request("GET", "/oidc/login?next=/access")
    assert status == 303, headers
    return web, dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))


def _at_provider(provider: OidcProvider, asked: dict[str, str], login: str,
                 password: str | None = None) -> dict:
    """The browser's part at the provider, with the service's own request."""
    return code_flow(provider, login, password or PASSWORDS[login], asked["redirect_uri"],
                     scope=asked["scope"], state=asked["state"], nonce=asked["nonce"],
                     params={"code_challenge": asked["code_challenge"],
                             "code_challenge_method": asked["code_challenge_method"]},
                     exchange=False)


def _callback(web: WebClient, location: str) -> tuple[int, dict[str, str], str]:
    return web.request("GET", "/oidc/callback?" + urllib.parse.urlsplit(location).query)


def sign_in(stack: Stack, provider: OidcProvider, login: str) -> WebClient:
    web, asked = _start(stack)
    flow = _at_provider(provider, asked, login)
    status, headers, page = _callback(web, flow["location"])
    assert (status, headers.get("location")) == (303, "/access"), page
    return web


def _cli_secret(web: WebClient, action: str = "create") -> tuple[int, str]:
    csrf = web.csrf("/cli-secret")
    status, _, page = web.request("POST", "/cli-secret", {"csrf": csrf, "action": action},
                                  headers={"Origin": f"https://{web.host}"})
    return status, page


def _secret_on(page: str) -> str:
    found = re.search(r'<code id="cli-secret">([^<]+)</code>', page)
    assert found, page[:2000]
    return found.group(1)


def _granted(doc: dict) -> list[dict]:
    return json.loads(jws.unb64url(doc["token"].split(".")[1]))["access"]


def _audit(stack: Stack) -> list[dict]:
    return [json.loads(line) for line in (stack.tmp / "audit.log").read_text().splitlines()]


def test_a_person_signs_in_by_sso_and_pushes_with_a_cli_secret_where_their_group_may(
        stack, provider):
    web = sign_in(stack, provider, "erin")
    status, page = web.get("/access")
    assert status == 200 and "erin" in page and 'href="/cli-secret"' in page
    status, page = _cli_secret(web)
    secret = _secret_on(page)
    assert status == 200 and "not shown again" in page
    assert secret not in web.get("/cli-secret")[1]  # shown once
    assert secret not in (stack.tmp / "cli-secrets.json").read_text()
    status, doc = stack.token("repository:platform/sso-app:pull,push", user="erin",
                              password=secret)
    assert status == 200
    assert _granted(doc) == [{"type": "repository", "name": "platform/sso-app",
                              "actions": ["pull", "push"]}]
    assert stack.push("platform/sso-app", "v1", doc["token"]) == 201
    logins = [e for e in _audit(stack) if e["event"] == "ui_login"]
    assert logins[-1]["subject"] == "oidc:erin" and logins[-1]["groups"] == ["platform-team"]
    assert secret not in (stack.tmp / "audit.log").read_text()


def test_a_person_of_another_group_gets_no_push_and_the_login_page_offers_sso(stack, provider):
    assert "Sign in with Example SSO" in WebClient(stack.token_port).get("/login")[1]
    web = sign_in(stack, provider, "frank")
    secret = _secret_on(_cli_secret(web)[1])
    status, doc = stack.token("repository:platform/sso-app:pull,push", user="frank",
                              password=secret)
    assert status == 200 and all("push" not in a["actions"] for a in _granted(doc))


def test_a_revoked_or_replaced_cli_secret_is_refused_and_is_no_web_password(stack, provider):
    web = sign_in(stack, provider, "erin")
    first = _secret_on(_cli_secret(web)[1])
    second = _secret_on(_cli_secret(web)[1])
    assert stack.token("repository:platform/x:pull", user="erin", password=first)[0] == 401
    assert stack.token("repository:platform/x:pull", user="erin", password=second)[0] == 200
    assert WebClient(stack.token_port).login("erin", second) == 401
    status, page = _cli_secret(web, "revoke")
    assert status == 200 and "revoked" in page
    assert stack.token("repository:platform/x:pull", user="erin", password=second)[0] == 401


def test_new_groups_count_from_the_next_sign_in(stack, provider):
    web = sign_in(stack, provider, "erin")
    secret = _secret_on(_cli_secret(web)[1])
    provider.set_account("erin", groups=["readers"])
    try:
        sign_in(stack, provider, "erin")
        status, doc = stack.token("repository:platform/sso-app:pull,push", user="erin",
                                  password=secret)
        assert status == 200 and all("push" not in a["actions"] for a in _granted(doc))
    finally:
        provider.set_account("erin", groups=["platform-team"])


def test_a_forged_or_replayed_callback_logs_nobody_in(stack, provider):
    web, asked = _start(stack)
    flow = _at_provider(provider, asked, "erin")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(flow["location"]).query))
    forged = urllib.parse.urlencode({**query, "state": "not-the-state-this-browser-has"})
    status, _, page = web.request("GET", f"/oidc/callback?{forged}")
    assert status == 401 and "state does not match" in page
    assert "regops_session" not in web.cookies

    web, asked = _start(stack)  # a good sign-in, then the same callback again
    flow = _at_provider(provider, asked, "erin")
    saved = dict(web.cookies)
    assert _callback(web, flow["location"])[0] == 303
    replay = WebClient(stack.token_port)
    replay.cookies = {k: v for k, v in saved.items() if k != "regops_session"}
    status, _, page = _callback(replay, flow["location"])
    assert status == 401 and "used already" in page
    assert "regops_session" not in replay.cookies

    stranger = WebClient(stack.token_port)  # a callback this browser never started
    status, _, page = _callback(stranger, flow["location"])
    assert status == 401 and "no sign-in was started" in page


def test_a_local_name_cannot_be_taken_by_the_provider(stack, provider, tmp_path: Path):
    provider.set_account("alice", password="alice-at-the-provider", groups=["platform-team"])
    try:
        web, asked = _start(stack)
        flow = _at_provider(provider, asked, "alice", "alice-at-the-provider")
        status, _, page = _callback(web, flow["location"])
        assert status == 401 and "local account" in page
    finally:
        provider.remove_account("alice")


def test_an_admin_revokes_the_cli_secret_of_a_person_who_left(stack, provider):
    erin = sign_in(stack, provider, "erin")
    secret = _secret_on(_cli_secret(erin)[1])
    nobody = WebClient(stack.token_port)
    nobody.login("bob")  # not an admin
    refused = nobody.request("POST", "/cli-secret", {"csrf": nobody.csrf("/access"),
                                                     "name": "erin"},
                             headers={"Origin": f"https://{nobody.host}"})
    assert refused[0] != 303
    assert stack.token("repository:platform/x:pull", user="erin", password=secret)[0] == 200
    admin = WebClient(stack.token_port)
    assert admin.login("alice") == 303
    page = admin.get("/admin")[1]
    assert "oidc:erin" in page and secret not in page
    status, headers, _ = admin.request("POST", "/cli-secret", {
        "csrf": admin.csrf("/admin"), "name": "erin"}, headers={"Origin": f"https://{admin.host}"})
    assert (status, headers["location"]) == (303, "/admin#cli-secrets")
    assert stack.token("repository:platform/x:pull", user="erin", password=secret)[0] == 401
    revoked = [e for e in _audit(stack) if e["event"] == "cli_secret_revoked"][-1]
    assert revoked["subject"] == "user:alice" and revoked["owner"] == "oidc:erin"


def test_docker_refresh_tokens_end_with_the_cli_secret_they_came_from(stack, provider):
    web = sign_in(stack, provider, "erin")
    secret = _secret_on(_cli_secret(web)[1])
    status, doc = stack.token(user="erin", password=secret,
                              extra="&offline_token=true&client_id=docker")
    assert status == 200 and doc["refresh_token"]
    assert stack.post_token(grant_type="refresh_token",
                            refresh_token=doc["refresh_token"])[0] == 200
    _cli_secret(web)  # replaced
    assert stack.post_token(grant_type="refresh_token",
                            refresh_token=doc["refresh_token"])[0] == 401
