"""The OpenID Connect provider the tests log in with (tests/support/oidc.py): npm's
oidc-provider on loopback, its discovery and keys, a whole authorization code flow with
PKCE through its login form, what its ID tokens carry, and the changes a test makes to
its accounts while it runs."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.oidc import (
    PASSWORDS,
    Browser,
    OidcProvider,
    code_flow,
    exchange_code,
    jwt_part,
)

CALLBACK = "https://registry.test:5000/oidc/callback"
OTHER_CALLBACK = "https://registry-2.test:5000/oidc/callback"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc"),
                      redirect_uris=[CALLBACK, OTHER_CALLBACK]) as server:
        yield server


def get_json(provider: OidcProvider, url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10, context=provider.ssl_context()) as answer:
        assert answer.status == 200
        return json.load(answer)


def userinfo(provider: OidcProvider, access_token: str) -> tuple[int, dict[str, Any]]:
    status, _, body = Browser(provider).request(
        "GET", provider.metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"})
    return status, json.loads(body)


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_rs256(token: str, jwks: dict[str, Any]) -> None:
    header = jwt_part(token, 0)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public = rsa.RSAPublicNumbers(int.from_bytes(b64(key["e"])),
                                  int.from_bytes(b64(key["n"]))).public_key()
    signed, signature = token.rsplit(".", 1)
    public.verify(b64(signature), signed.encode(), padding.PKCS1v15(), hashes.SHA256())


# --- discovery and keys -----------------------------------------------------------------


def test_discovery_names_the_issuer_and_its_endpoints(provider: OidcProvider) -> None:
    found = get_json(provider, f"{provider.issuer}/.well-known/openid-configuration")
    assert provider.issuer.startswith("https://127.0.0.1:")
    assert found["issuer"] == provider.issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                     "userinfo_endpoint"):
        assert found[endpoint].startswith(provider.issuer + "/")
    assert found["response_types_supported"] == ["code"]
    assert found["code_challenge_methods_supported"] == ["S256"]
    assert found["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"openid", "profile", "email", "groups"} <= set(found["scopes_supported"])
    assert {"preferred_username", "groups"} <= set(found["claims_supported"])
    assert "GET /.well-known/openid-configuration 200" in provider.log_text()


def test_jwks_has_one_public_rsa_key(provider: OidcProvider) -> None:
    jwks = get_json(provider, provider.metadata["jwks_uri"])
    [key] = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


# --- the code flow ----------------------------------------------------------------------


def test_code_flow_gives_an_id_token_with_the_username_and_groups(
        provider: OidcProvider) -> None:
    flow = code_flow(provider, "erin", PASSWORDS["erin"], CALLBACK)
    assert flow["login_status"] == 303
    assert flow["response"]["state"] == flow["state"]
    assert flow["response"]["iss"] == provider.issuer  # RFC 9207
    assert flow["code"] and flow["token_status"] == 200, flow
    assert flow["tokens"]["token_type"] == "Bearer"
    verify_rs256(flow["tokens"]["id_token"], get_json(provider, provider.metadata["jwks_uri"]))
    claims = flow["claims"]
    assert claims["iss"] == provider.issuer
    assert claims["sub"] == "erin"
    assert claims["aud"] == provider.client_id
    assert claims["nonce"] == flow["nonce"]
    assert claims["preferred_username"] == "erin"
    assert claims["groups"] == ["platform-team"]
    assert "email" not in claims  # not asked for: no email scope

    assert userinfo(provider, flow["tokens"]["access_token"])[0] == 200
    again = exchange_code(provider, flow["code"], CALLBACK, flow["code_verifier"])
    assert again[0] == 400 and again[1]["error"] == "invalid_grant"
    # a replayed code revokes its grant: the tokens already issued from it too
    assert userinfo(provider, flow["tokens"]["access_token"])[0] == 401


def test_userinfo_answers_for_the_access_token(provider: OidcProvider) -> None:
    flow = code_flow(provider, "frank", PASSWORDS["frank"], OTHER_CALLBACK,
                     scope="openid profile email groups")
    status, info = userinfo(provider, flow["tokens"]["access_token"])
    assert status == 200
    assert info == {"sub": "frank", "preferred_username": "frank", "name": "Frank Example",
                    "email": "frank@example.test", "groups": ["readers"]}
    assert flow["claims"]["email"] == "frank@example.test"


def test_a_logged_in_session_consents_to_more_scopes_without_a_form(
        provider: OidcProvider) -> None:
    browser = Browser(provider)
    first = code_flow(provider, "erin", PASSWORDS["erin"], CALLBACK, browser=browser,
                      scope="openid")
    assert first["claims"]["sub"] == "erin" and "groups" not in first["claims"]
    second = code_flow(provider, "erin", "not used", CALLBACK, browser=browser,
                       scope="openid groups")
    assert second["login_status"] is None  # no form: the consent prompt was granted
    assert second["claims"]["groups"] == ["platform-team"]


# --- what fails -------------------------------------------------------------------------


def test_a_wrong_password_shows_the_form_again_with_401(provider: OidcProvider) -> None:
    flow = code_flow(provider, "erin", "not-" + PASSWORDS["erin"], CALLBACK)
    assert flow["login_status"] == 401
    assert "Invalid login or password" in flow["page"]
    assert 'name="login"' in flow["page"] and "Sign in" in flow["page"]
    assert flow["code"] is None and flow["location"] is None and flow["tokens"] is None


def test_a_request_without_pkce_is_sent_back_with_an_error(provider: OidcProvider) -> None:
    flow = code_flow(provider, "erin", PASSWORDS["erin"], CALLBACK, pkce=False)
    assert flow["login_status"] is None and flow["code"] is None
    assert flow["response"]["error"] == "invalid_request"
    assert "requires PKCE" in flow["response"]["error_description"]
    assert flow["response"]["state"] == flow["state"]


def test_a_wrong_code_verifier_is_an_invalid_grant(provider: OidcProvider) -> None:
    flow = code_flow(provider, "erin", PASSWORDS["erin"], CALLBACK, exchange=False)
    for verifier in ("x" * 43, None):
        status, answer = exchange_code(provider, flow["code"], CALLBACK, verifier)
        assert (status, answer["error"]) == (400, "invalid_grant")
    status, answer = exchange_code(provider, flow["code"], OTHER_CALLBACK,
                                   flow["code_verifier"])
    assert (status, answer["error"]) == (400, "invalid_grant")  # not the request's URI
    # oidc-provider checks PKCE and redirect_uri before it spends the code: still good
    status, answer = exchange_code(provider, flow["code"], CALLBACK, flow["code_verifier"])
    assert status == 200 and answer["id_token"]


def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(
        provider: OidcProvider) -> None:
    flow = code_flow(provider, "erin", PASSWORDS["erin"], "https://evil.test/cb")
    assert flow["status"] == 400 and flow["location"] is None
    assert "redirect_uri" in flow["page"]


def test_a_wrong_client_secret_is_refused(provider: OidcProvider) -> None:
    flow = code_flow(provider, "erin", PASSWORDS["erin"], CALLBACK, exchange=False)
    status, answer = exchange_code(provider, flow["code"], CALLBACK, flow["code_verifier"],
                                   client_secret="wrong")
    assert (status, answer["error"]) == (401, "invalid_client")


# --- the test's changes to the accounts -------------------------------------------------


def test_changed_groups_and_a_removed_account_are_seen_at_once(
        provider: OidcProvider) -> None:
    provider.set_account("grace", password="grace-oidc-pw-7", groups=["developers"])
    assert code_flow(provider, "grace", "grace-oidc-pw-7",
                     CALLBACK)["claims"]["groups"] == ["developers"]
    provider.set_account("grace", groups=[])
    assert code_flow(provider, "grace", "grace-oidc-pw-7", CALLBACK)["claims"]["groups"] == []

    pending = code_flow(provider, "grace", "grace-oidc-pw-7", CALLBACK, exchange=False)
    provider.remove_account("grace")
    status, answer = exchange_code(provider, pending["code"], CALLBACK,
                                   pending["code_verifier"])
    assert (status, answer["error"]) == (400, "invalid_grant")
    assert code_flow(provider, "grace", "grace-oidc-pw-7", CALLBACK)["login_status"] == 401


def test_a_new_account_needs_a_password(provider: OidcProvider) -> None:
    with pytest.raises(ValueError, match="password"):
        provider.set_account("nobody", groups=["x"])
