"""`registry_oidc` operator-side: checked before any host changes (one line naming the
host and the key), the client secret from the environment or the secrets directory,
and what the deploy ships to the token service (host paths, the CA, the secret as a
secret input, the state directory for the CLI secrets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regops import hostpaths
from regops.config import oidc
from regops.config.settings import ConfigError, load
from regops.deploy import render
from regops.deploy.tasks import token as token_task
from regops.secrets import paths, pki

SECRET = "oidc-client-secret-1"


@pytest.fixture
def ca(tmp_path: Path) -> str:
    path = tmp_path / "sso-ca.pem"
    path.write_bytes(pki.ensure_token_signer(tmp_path / "sso-pki").ca_pem)
    return str(path)


def _data(base_data: dict, ca: str, **changes) -> dict:
    return {**base_data, "registry_users": ["admin"], "registry_admins": ["admin",
                                                                           "group:oidc:ops"],
            "registry_access": [{"repositories": ["platform/**"],
                                 "who": ["group:oidc:platform-team"],
                                 "actions": ["pull", "push"]}],
            "registry_oidc": {"issuer": "https://sso.example.com/realms/main",
                              "client_id": "registry", "ca_file": ca, **changes}}


@pytest.mark.parametrize(("changes", "problem"), [
    ({"issuer": "http://sso.example.com"}, "issuer must be an https:// URL"),
    ({"client_id": ""}, "client_id is required"),
    ({"scopes": ["profile"]}, "scopes must include openid"),
    ({"scopes": "openid"}, "scopes must be a list"),
    ({"ca_file": "/nowhere/ca.pem"}, "no such file on this machine"),
    ({"cli_secret_days": 0}, "cli_secret_days must be between 1 and 3650"),
    ({"leeway": 900}, "leeway must be between 0 and 300"),
    ({"client_secret": "x"}, "unknown key 'client_secret'"),
    ({"redirect_uri": "https://x"}, "unknown key 'redirect_uri'"),
])
def test_a_bad_provider_is_one_line_naming_the_host_and_the_key(base_data, ca, changes, problem):
    with pytest.raises(ConfigError) as error:
        load("reg1", _data(base_data, ca, **changes), environ={oidc.SECRET_ENV: SECRET})
    message = str(error.value)
    assert message.startswith("reg1: registry_oidc: ") and problem in message
    assert "\n" not in message


def test_the_client_secret_comes_from_the_env_or_the_secrets_dir(base_data, ca):
    with pytest.raises(ConfigError, match="set REGOPS_OIDC_CLIENT_SECRET or write"):
        load("reg1", _data(base_data, ca), environ={})
    path = paths.oidc_secret_path(base_data["registry_secrets_dir"], "reg.example.com")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SECRET + "\n")
    path.chmod(0o644)
    s = load("reg1", _data(base_data, ca), environ={})
    assert s.oidc_secret == SECRET and path.stat().st_mode & 0o077 == 0  # tightened
    assert SECRET not in repr(s)


def test_the_token_service_gets_host_paths_the_ca_and_the_secret_as_a_secret(base_data, ca):
    s = load("reg1", _data(base_data, ca), environ={oidc.SECRET_ENV: SECRET})
    text = token_task.token_config(s)
    section = json.loads(text)["oidc"]
    assert section["redirect_uri"] == f"https://{s.registry_address}/oidc/callback"
    assert section["ca_file"] == hostpaths.TOKEN_OIDC_CA
    assert section["client_secret_file"] == hostpaths.TOKEN_OIDC_SECRET
    assert section["cli_secrets"] == hostpaths.TOKEN_CLI_SECRETS
    assert section["groups_claim"] == "groups" and section["cli_secret_days"] == 90
    assert SECRET not in text and json.loads(text)["policy"]["sso"] is True
    inputs = {i.path: i for i in token_task.oidc_inputs(s)}
    assert inputs[hostpaths.TOKEN_OIDC_SECRET].secret
    assert inputs[hostpaths.TOKEN_OIDC_SECRET].content == (SECRET + "\n").encode()
    assert inputs[hostpaths.TOKEN_OIDC_CA].content == Path(ca).read_bytes()
    assert "python3-jwt" in token_task.packages(s)
    assert "StateDirectory=regops-token" in render.template(hostpaths.TOKEN_UNIT, s)
    without = load("reg1", base_data, environ={})
    assert "python3-jwt" not in token_task.packages(without)
    assert token_task.oidc_inputs(without) == () and token_task.oidc_config(without) is None
    assert "StateDirectory" not in render.template(hostpaths.TOKEN_UNIT, without)


def test_rules_may_name_single_sign_on_only_with_it(base_data, ca):
    data = _data(base_data, ca)
    del data["registry_oidc"]
    with pytest.raises(ConfigError, match="registry_oidc is not set"):
        load("reg1", data, environ={})


def test_single_sign_on_needs_token_auth_and_the_web_pages(base_data, ca):
    data = {**_data(base_data, ca), "registry_ui": False}
    with pytest.raises(ConfigError, match="needs registry_auth: token and registry_ui"):
        load("reg1", data, environ={oidc.SECRET_ENV: SECRET})


def test_with_images_in_s3_the_cli_secrets_live_in_the_bucket(base_data, ca):
    """Replicas share a bucket: the token service is pointed at it (beside the
    registry's tree) with the registry's S3 keys as a secret input, never in its config."""
    data = {**_data(base_data, ca), "registry_storage": "s3",
            "registry_s3_endpoint": "http://10.0.0.5:8333", "registry_s3_bucket": "images",
            "registry_s3_rootdirectory": "/registry", "registry_gc_enabled": False}
    env = {oidc.SECRET_ENV: SECRET, "REGOPS_S3_ACCESS_KEY": "access-1",
           "REGOPS_S3_SECRET_KEY": "s3-secret-key-1"}
    s = load("reg1", data, environ=env)
    text = token_task.token_config(s)
    store = json.loads(text)["oidc"]["cli_secrets"]
    assert store["bucket"] == {"endpoint": "http://10.0.0.5:8333", "region": "us-east-1",
                               "name": "images", "root": "/registry", "path_style": True,
                               "verify_tls": True}
    assert store["credentials"] == hostpaths.TOKEN_S3_CREDENTIALS
    assert "s3-secret-key-1" not in text and "access-1" not in text
    keys = {i.path: i for i in token_task.oidc_inputs(s)}[hostpaths.TOKEN_S3_CREDENTIALS]
    assert keys.secret and keys.mode == "0640"
    assert json.loads(keys.content) == {"access_key": "access-1",
                                        "secret_key": "s3-secret-key-1"}
