"""The token protocol against the real registry binary (Debian's docker-registry, as in
the sandbox image) and the real token service, both on loopback: what the registry
accepts and refuses, exactly as it checks tokens. No host needed."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from regops.registry.images import sha256
from regops.secrets import pki
from regops_token import jws
from tests.support.require import require_command
from tests.support.stack import PASSWORDS, SERVICE, Stack, htpasswd, open_json


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_command("docker-registry", "docker-registry")
    s = Stack(tmp_path_factory.mktemp("token"))
    try:
        yield s
    finally:
        s.close()


def test_the_challenge_names_our_realm_and_the_service(stack):
    status, headers = stack.status("GET", "/v2/")
    challenge = headers["Www-Authenticate"]
    assert status == 401 and challenge.startswith("Bearer ")
    assert f'realm="http://127.0.0.1:{stack.token_port}/auth/token"' in challenge
    assert f'service="{SERVICE}"' in challenge


def test_group_members_push_others_only_pull(stack):
    bob = stack.bearer("repository:platform/app:pull,push", user="bob")
    assert stack.push("platform/app", "1.0", bob) == 201
    carol = stack.bearer("repository:platform/app:pull,push", user="carol")
    assert stack.push("platform/app", "2.0", carol) == 401  # pull only
    assert stack.status("GET", "/v2/platform/app/manifests/1.0", carol,
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
                        )[0] == 200


def test_everyone_pushes_under_their_own_name(stack):
    carol = stack.bearer("repository:carol/tool:pull,push", user="carol")
    assert stack.push("carol/tool", "1", carol) == 201
    bob = stack.bearer("repository:carol/tool:pull,push", user="bob")
    assert stack.push("carol/tool", "2", bob) == 401


def test_anonymous_pulls_public_and_nothing_else(stack):
    alice = stack.bearer("repository:public/base:pull,push", user="alice")
    assert stack.push("public/base", "1", alice) == 201
    anonymous = stack.bearer("repository:public/base:pull,push")
    manifest = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert stack.status("GET", "/v2/public/base/manifests/1", anonymous, headers=manifest
                        )[0] == 200
    assert stack.push("public/base", "2", anonymous) == 401
    private = stack.bearer("repository:platform/app:pull")
    assert stack.status("GET", "/v2/platform/app/manifests/1.0", private, headers=manifest
                        )[0] == 401


def test_delete_needs_the_delete_right_and_star_brings_it(stack):
    alice = stack.bearer("repository:alice/x:pull,push", user="alice")
    assert stack.push("alice/x", "1", alice) == 201
    _, headers = stack.status("HEAD", "/v2/alice/x/manifests/1", alice, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    digest = headers["Docker-Content-Digest"]
    # Not `pull,push`: the registry wants `delete` (or `*`).
    assert stack.status("DELETE", f"/v2/alice/x/manifests/{digest}", alice)[0] == 401
    carol = stack.bearer("repository:alice/x:*", user="carol")  # carol may only pull there
    assert stack.status("DELETE", f"/v2/alice/x/manifests/{digest}", carol)[0] == 401
    _, doc = stack.token("repository:alice/x:*", user="alice")
    granted = json.loads(jws.unb64url(doc["token"].split(".")[1]))["access"]
    assert granted == [{"type": "repository", "name": "alice/x",
                        "actions": ["pull", "push", "delete"]}]
    assert stack.status("DELETE", f"/v2/alice/x/manifests/{digest}",
                        doc["token"])[0] == 202


def test_a_pull_through_cache_grants_pull_only_whatever_the_rules(stack):
    original = stack.service.config
    stack.service.config = dataclasses.replace(original, read_only=True)
    try:
        _, doc = stack.token("repository:alice/x:*", user="alice")
        granted = json.loads(jws.unb64url(doc["token"].split(".")[1]))["access"]
        assert granted == [{"type": "repository", "name": "alice/x", "actions": ["pull"]}]
        assert stack.push("alice/cached", "1", stack.bearer("repository:alice/cached:pull,push",
                                                            user="alice")) == 401
    finally:
        stack.service.config = original
    assert stack.push("alice/cached", "1", stack.bearer("repository:alice/cached:pull,push",
                                                        user="alice")) == 201


def test_the_catalog_is_for_admins(stack):
    assert stack.status("GET", "/v2/_catalog",
                        stack.bearer("registry:catalog:*", user="alice"))[0] == 200
    assert stack.status("GET", "/v2/_catalog",
                        stack.bearer("registry:catalog:*", user="bob"))[0] == 401


def test_a_cross_repository_mount_needs_pull_on_the_source(stack):
    bob = stack.bearer("repository:platform/src:pull,push", user="bob")
    layer = os.urandom(512)
    status, headers = stack.status("POST", "/v2/platform/src/blobs/uploads/", bob)
    joiner = "&" if "?" in headers["Location"] else "?"
    stack.status("PUT", f"{headers['Location']}{joiner}digest={sha256(layer)}", bob, data=layer,
                 headers={"Content-Type": "application/octet-stream"})
    mount = f"/v2/carol/copy/blobs/uploads/?mount={sha256(layer)}&from=platform/src"
    # carol pushes to her own repository and may pull platform/src (rule 4): mounted.
    carol = stack.bearer("repository:carol/copy:pull,push", "repository:platform/src:pull",
                         user="carol")
    assert stack.status("POST", mount, carol)[0] == 201
    # Without pull on the source the registry refuses, asking for that scope too.
    only_dest = stack.bearer("repository:carol/copy2:pull,push", user="carol")
    status, headers = stack.status("POST", mount.replace("copy", "copy2"), only_dest)
    assert status == 401 and "repository:platform/src:pull" in headers["Www-Authenticate"]


def test_the_registry_refuses_tokens_that_are_not_right(stack):
    key = serialization.load_pem_private_key((stack.tmp / "signer.key").read_bytes(), None)
    chain = [pki.load_leaf((stack.tmp / "signer.crt").read_bytes())]
    now = int(time.time())
    good = {"iss": "regops-token", "sub": "alice", "aud": SERVICE, "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": "x",
            "access": [{"type": "registry", "name": "catalog", "actions": ["*"]}]}
    assert stack.status("GET", "/v2/_catalog", jws.sign(good, key, chain))[0] == 200
    for change in ({"aud": "other"}, {"aud": [SERVICE]}, {"iss": "someone"},
                   {"exp": now - 120}, {"nbf": now + 120}):
        assert stack.status("GET", "/v2/_catalog", jws.sign({**good, **change}, key, chain)
                            )[0] == 401, change
    stranger = pki.ensure_token_signer(stack.tmp / "other-pki")
    foreign_key = serialization.load_pem_private_key(stranger.key_pem, None)
    assert isinstance(foreign_key, ec.EllipticCurvePrivateKey)
    assert stack.status("GET", "/v2/_catalog",
                        jws.sign(good, foreign_key, [pki.load_leaf(stranger.cert_pem)]))[0] == 401


def test_a_new_signing_key_under_the_same_ca_needs_no_registry_restart(stack):
    renewed = pki.ensure_token_signer(stack.tmp / "pki", force=True)
    (stack.tmp / "signer.key").write_bytes(renewed.key_pem)
    (stack.tmp / "signer.crt").write_bytes(renewed.cert_pem)
    time.sleep(0.05)
    token = stack.bearer("registry:catalog:*", user="alice")
    header = json.loads(jws.unb64url(token.split(".")[0]))
    assert base64.b64decode(header["x5c"][0]) == pki.load_leaf(renewed.cert_pem).public_bytes(
        serialization.Encoding.DER)
    assert stack.status("GET", "/v2/_catalog", token)[0] == 200


def test_wrong_credentials_get_401_and_are_logged(stack):
    status, doc = stack.token("repository:platform/app:pull", user="bob", password="nope")
    assert status == 401 and doc["errors"][0]["code"] == "UNAUTHORIZED"
    status, _ = stack.token(user="nobody", password="nope")
    assert status == 401
    lines = [json.loads(line) for line in (stack.tmp / "audit.log").read_text().splitlines()]
    failed = [e for e in lines if e["event"] == "login_failed"]
    assert {e["subject"] for e in failed} >= {"bob", "nobody"}
    assert all(e["reason"] in ("wrong password", "unknown name") for e in failed)


def test_every_decision_is_one_audit_line(stack):
    stack.token("repository:platform/app:*", user="carol")
    last = json.loads((stack.tmp / "audit.log").read_text().splitlines()[-1])
    assert last["event"] == "token" and last["subject"] == "user:carol"
    assert last["requested"] == ["repository:platform/app:*"]
    assert last["granted"] == ["repository:platform/app:pull"]
    assert last["via"] == "GET basic"


def test_robots_push_where_their_rules_say_and_expire(stack):
    robot = stack.bearer("repository:platform/ci:pull,push", user="ci-platform")
    assert stack.push("platform/ci", "1", robot) == 201
    elsewhere = stack.bearer("repository:carol/tool:pull,push", user="ci-platform")
    assert stack.push("carol/tool", "9", elsewhere) == 401
    status, _ = stack.token("repository:platform/ci:pull", user="old-robot")
    assert status == 401  # expired
    lines = (stack.tmp / "audit.log").read_text()
    assert "robot expired on 2025-12-31" in lines


def test_post_password_and_refresh_token_grants(stack):
    status, doc = stack.post_token(grant_type="password", username="bob",
                                   password=PASSWORDS["bob"], client_id="containerd-client",
                                   access_type="offline",
                                   scope="repository:platform/app:pull repository:bob/x:push")
    assert status == 200 and doc["access_token"] and doc["refresh_token"]
    assert doc["scope"] == "repository:platform/app:pull repository:bob/x:push"
    last = json.loads((stack.tmp / "audit.log").read_text().splitlines()[-1])
    assert (last["via"], last["client"]) == ("POST password", "containerd-client")
    refresh = doc["refresh_token"]
    status, again = stack.post_token(grant_type="refresh_token", refresh_token=refresh,
                                     client_id="docker", scope="registry:catalog:*")
    assert status == 200 and again["refresh_token"] == refresh  # never rotated
    status, _ = stack.post_token(grant_type="refresh_token", refresh_token=refresh + "x")
    assert status == 401
    status, _ = stack.post_token(grant_type="password", username="bob", password="wrong")
    assert status == 401
    status, _ = stack.post_token(grant_type="client_credentials")
    assert status == 400


def test_docker_login_gets_a_refresh_token_that_a_password_change_revokes(stack):
    status, doc = stack.token(user="carol", extra="&offline_token=true&client_id=docker")
    assert status == 200 and doc["refresh_token"]
    htpasswd(stack.tmp / "users", {**PASSWORDS, "carol": "carol-new-password-9"})
    time.sleep(0.05)
    status, _ = stack.post_token(grant_type="refresh_token", refresh_token=doc["refresh_token"])
    assert status == 401
    assert stack.token(user="carol", password="carol-new-password-9")[0] == 200  # re-read
    htpasswd(stack.tmp / "users", PASSWORDS)


def test_unknown_service_is_refused(stack):
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.token_port}/auth/token?service=elsewhere")
    assert open_json(request)[0] == 400


def _token_events(stack: Stack) -> int:
    return sum('"event": "token"' in line
               for line in (stack.tmp / "audit.log").read_text().splitlines())


def test_the_client_speaks_the_token_protocol_once_per_scope(stack):
    from regops.registry.client import RegistryClient, RegistryError

    alice = RegistryClient(f"http://127.0.0.1:{stack.port}", "alice", PASSWORDS["alice"])
    before = _token_events(stack)
    repositories = alice.catalog()
    assert "platform/app" in repositories
    for _ in range(20):
        assert "1.0" in alice.tags("platform/app")
        alice.digest("platform/app", "1.0")
    # catalog, then one token for pulling platform/app, however many requests
    assert _token_events(stack) - before == 2

    bob = RegistryClient(f"http://127.0.0.1:{stack.port}", "bob", PASSWORDS["bob"])
    with pytest.raises(RegistryError) as refused:
        bob.catalog()
    assert refused.value.status == 401

    anonymous = RegistryClient(f"http://127.0.0.1:{stack.port}")
    assert anonymous.ping() == 401  # no token fetched without being told to
    public = RegistryClient(f"http://127.0.0.1:{stack.port}", anonymous_tokens=True)
    assert public.tags("public/base") == ["1"]
    with pytest.raises(RegistryError):
        public.tags("platform/app")

    wrong = RegistryClient(f"http://127.0.0.1:{stack.port}", "bob", "wrong-password")
    with pytest.raises(RegistryError, match="HTTP 401 the token service refused the login"):
        wrong.tags("platform/app")
    assert wrong.ping() == 401  # a refused login is an answer, not a transport error


def test_workers_that_start_together_share_one_login(stack):
    from concurrent.futures import ThreadPoolExecutor

    from regops.registry.client import RegistryClient

    alice = RegistryClient(f"http://127.0.0.1:{stack.port}", "alice", PASSWORDS["alice"])
    before = _token_events(stack)
    with ThreadPoolExecutor(8) as pool:
        listed = list(pool.map(lambda _: alice.tags("platform/app"), range(8)))
    assert all("1.0" in tags for tags in listed)
    assert _token_events(stack) - before == 1
