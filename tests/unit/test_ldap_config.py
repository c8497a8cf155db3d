"""`registry_ldap` operator-side: checked before any host changes (one line naming the
host and the key), the bind password from the environment or the secrets directory,
and what the deploy ships to the token service (host paths, the CA, the password as
a secret input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regops import hostpaths
from regops.config import ldap
from regops.config.settings import ConfigError, load
from regops.deploy.tasks import token as token_task
from regops.secrets import paths, pki

PASSWORD = "directory-service-password-1"


@pytest.fixture
def ca(tmp_path: Path) -> str:
    path = tmp_path / "ldap-ca.pem"
    path.write_bytes(pki.ensure_token_signer(tmp_path / "ldap-pki").ca_pem)
    return str(path)


def _ldap(ca: str, **changes) -> dict:
    return {"urls": ["ldaps://ldap1.example.com", "ldaps://ldap2.example.com"],
            "ca_file": ca, "bind_dn": "cn=regops,ou=services,dc=example,dc=com",
            "user_base": "ou=people,dc=example,dc=com",
            "group_base": "ou=groups,dc=example,dc=com", **changes}


def _data(base_data: dict, ca: str, **changes) -> dict:
    return {**base_data, "registry_users": ["admin"], "registry_admins": ["admin",
                                                                           "group:ldap:ops"],
            "registry_access": [{"repositories": ["platform/**"],
                                 "who": ["group:ldap:platform-team"],
                                 "actions": ["pull", "push"]}],
            "registry_ldap": _ldap(ca, **changes)}


@pytest.mark.parametrize(("changes", "problem"), [
    ({"urls": ["ldap://ldap.example.com"]}, "plain LDAP (passwords in the clear)"),
    ({"urls": ["http://ldap.example.com"]}, "http://ldap.example.com"),
    ({"ca_file": None}, "needs ca_file"),
    ({"ca_file": "/nowhere/ca.pem"}, "no such file on this machine"),
    ({"user_filter": "uid={name}"}, "user_filter"),
    ({"user_filter": "(uid=alice)"}, "user_filter must contain {name}"),
    ({"group_filter": "(member=x)"}, "group_filter must contain {dn} or {name}"),
    ({"timeout": 0}, "timeout must be 1..60 seconds"),
    ({"password": "x"}, "unknown key 'password'"),
    ({"bind_dn": ""}, "bind_dn is required"),
])
def test_a_bad_directory_is_one_line_naming_the_host_and_the_key(base_data, ca, changes,
                                                                  problem):
    with pytest.raises(ConfigError) as error:
        load("reg1", _data(base_data, ca, **changes), environ={ldap.PASSWORD_ENV: PASSWORD})
    message = str(error.value)
    assert message.startswith("reg1: registry_ldap: ") and problem in message
    assert "\n" not in message


def test_plain_ldap_only_when_said_so_or_with_starttls(base_data, ca):
    env = {ldap.PASSWORD_ENV: PASSWORD}
    plain = load("reg1", _data(base_data, ca, urls=["ldap://ldap.example.com"],
                               allow_plain=True, ca_file=None), environ=env)
    assert token_task.ldap_config(plain)["ca_file"] is None
    upgraded = load("reg1", _data(base_data, ca, urls=["ldap://ldap.example.com"],
                                  starttls=True), environ=env)
    assert token_task.ldap_config(upgraded)["ca_file"] == hostpaths.TOKEN_LDAP_CA


def test_the_bind_password_comes_from_the_env_or_the_secrets_dir(base_data, ca):
    with pytest.raises(ConfigError, match="set REGOPS_LDAP_BIND_PASSWORD or write"):
        load("reg1", _data(base_data, ca), environ={})
    path = paths.ldap_password_path(base_data["registry_secrets_dir"], "reg.example.com")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PASSWORD + "\n")
    path.chmod(0o644)
    s = load("reg1", _data(base_data, ca), environ={})
    assert s.ldap_password == PASSWORD and path.stat().st_mode & 0o077 == 0  # tightened
    assert PASSWORD not in repr(s)


def test_the_token_service_gets_host_paths_the_ca_and_the_password_as_a_secret(base_data, ca):
    s = load("reg1", _data(base_data, ca), environ={ldap.PASSWORD_ENV: PASSWORD})
    config = json.loads(token_task.token_config(s))
    section = config["ldap"]
    assert section["urls"] == ["ldaps://ldap1.example.com", "ldaps://ldap2.example.com"]
    assert section["ca_file"] == hostpaths.TOKEN_LDAP_CA
    assert section["bind_password_file"] == hostpaths.TOKEN_LDAP_PASSWORD
    assert section["user_filter"] == "(uid={name})"  # the default
    assert PASSWORD not in token_task.token_config(s)
    assert config["policy"]["directory"] is True
    inputs = {i.path: i for i in token_task.ldap_inputs(s)}
    assert inputs[hostpaths.TOKEN_LDAP_PASSWORD].secret
    assert inputs[hostpaths.TOKEN_LDAP_PASSWORD].content == (PASSWORD + "\n").encode()
    assert inputs[hostpaths.TOKEN_LDAP_CA].content == Path(ca).read_bytes()
    assert "python3-ldap3" in token_task.packages(s)
    without = load("reg1", base_data, environ={})
    assert "python3-ldap3" not in token_task.packages(without)
    assert token_task.ldap_inputs(without) == () and token_task.ldap_config(without) is None


def test_rules_may_name_the_directory_only_with_one(base_data, ca):
    data = _data(base_data, ca)
    del data["registry_ldap"]
    with pytest.raises(ConfigError, match="registry_ldap is not set"):
        load("reg1", data, environ={})


def test_a_local_admin_is_still_needed(base_data, ca):
    data = {**_data(base_data, ca), "registry_admins": ["group:ldap:ops"]}
    with pytest.raises(ConfigError, match="name at least one admin of registry_users"):
        load("reg1", data, environ={ldap.PASSWORD_ENV: PASSWORD})


def test_a_directory_needs_token_auth(base_data, ca):
    data = {**_data(base_data, ca), "registry_auth": "htpasswd", "registry_access": None,
            "registry_admins": []}
    with pytest.raises(ConfigError, match="needs registry_auth: token"):
        load("reg1", data, environ={ldap.PASSWORD_ENV: PASSWORD})

