"""Credential generations operator-side (issue 24): the number `regops users passwd` and
`users remove` raise, part of the user's bcrypt salt."""

from __future__ import annotations

import pytest

from regops.config.settings import ConfigError, load
from regops.secrets import paths


def test_a_raised_credential_generation_changes_the_users_file_and_only_that_user(base_data):
    """`regops users passwd NAME` (even with the same password) and `users remove` raise
    it: the deploy then writes another hash for that user, so the token service ends
    their sessions and refresh tokens; everyone else's line stays."""
    from regops.deploy.tasks import auth
    from regops.secrets import store

    data = {**base_data, "registry_users": ["alice", "bob"]}
    env = {"REGOPS_PASSWORD_ALICE": "alice-password-1", "REGOPS_PASSWORD_BOB": "bob-password-22"}
    before = auth.htpasswd_file(load("reg1", data, environ=env))
    assert auth.htpasswd_file(load("reg1", data, environ=env)) == before  # stable
    assert store.raise_generation(base_data["registry_secrets_dir"], "reg.example.com",
                                  "alice") == 1
    after = auth.htpasswd_file(load("reg1", data, environ=env))
    old, new = (dict(line.split(":", 1) for line in f.splitlines()) for f in (before, after))
    assert old["bob"] == new["bob"] and old["alice"] != new["alice"]
    path = paths.generation_path(base_data["registry_secrets_dir"], "reg.example.com", "alice")
    assert path.read_text() == "1\n" and path.stat().st_mode & 0o077 == 0
    path.write_text("one\n")
    with pytest.raises(ConfigError, match="is not a credential generation"):
        load("reg1", data, environ=env)
