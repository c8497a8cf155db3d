"""The token service (registry_auth: token): our package `regops_token`, run by
Debian's python3 as a hardened systemd unit on loopback, behind the front door.

A managed unit (`regops.deploy.units`): its code, config (with the access rules),
signing key and certificate and unit file are staged and taken in by
`regops-token apply`, which restarts it and puts the previous version back if it
does not answer. Users and robots are files it re-reads (`regops.deploy.tasks.auth`), so
they change without a restart. Nothing comes from the internet: the code ships
with regops, the libraries from Debian (python3-cryptography, python3-bcrypt).

It also serves the web pages (`registry_ui`), on the registry's own origin: it
reads the registry on loopback with tokens it signs for itself, and needs
Debian's python3-jinja2 for them.

Its keys: `registry_auth`, `registry_access`, `registry_groups`, `registry_admins`,
`registry_robots`, `registry_token_ttl`, `registry_token_port`, `registry_ui`.
"""

import json
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, systemd

import regops_token
from regops import hostpaths
from regops.config import ldap, oidc
from regops.config.settings import Settings
from regops.deploy import render
from regops.deploy import units as unit
from regops.deploy.facts import expect_at_prepare
from regops.deploy.operations import Secret, refresh_apt_for, secret_file
from regops.secrets import paths, pki, store
from regops_token.rules import policy_to_json

expect_at_prepare(unit.UnitState, control=hostpaths.TOKEN_CONTROL)  # names the apply
expect_at_prepare(File, path=hostpaths.TOKEN_UNIT)  # retire() asks

PACKAGES = ["python3", "python3-cryptography", "python3-bcrypt", "python3-jinja2"]
LDAP_PACKAGES = ["python3-ldap3"]  # with registry_ldap: the directory client (pure Python)
OIDC_PACKAGES = ["python3-jwt"]  # with registry_oidc: the ID tokens' checks (PyJWT)


def packages(s: Settings) -> list[str]:
    return (PACKAGES + (LDAP_PACKAGES if s["registry_ldap"] is not None else [])
            + (OIDC_PACKAGES if s["registry_oidc"] is not None else []))
ISSUER = "regops-token"


def signer(s: Settings) -> pki.TokenSigner:
    return pki.ensure_token_signer(paths.pki_dir(s.secrets_root, s.registry_name))


def web_config(s: Settings) -> dict[str, Any] | None:
    if not s["registry_ui"]:
        return None
    ports = render.ports(s)
    return {
        "address": s.registry_address,
        "registry_ports": [ports.primary, ports.standby],
        "gc_schedule": s["registry_gc_schedule"] if s["registry_gc_enabled"] else None,
        "gc_state": hostpaths.GC_STATE,
    }


def ldap_config(s: Settings) -> dict[str, Any] | None:
    """The directory, as the token service reads it (host paths of its CA and password)."""
    value = s["registry_ldap"]
    if value is None:
        return None
    ca = hostpaths.TOKEN_LDAP_CA if ldap.encrypted(value) else None
    return ldap.token_config(value, ca, hostpaths.TOKEN_LDAP_PASSWORD)


def oidc_config(s: Settings) -> dict[str, Any] | None:
    """The provider, as the token service reads it (host paths of its CA, the client
    secret and the CLI secrets' store)."""
    value = s["registry_oidc"]
    if value is None:
        return None
    ca = hostpaths.TOKEN_OIDC_CA if value.get("ca_file") else None
    return oidc.token_config(value, s.registry_address, ca, hostpaths.TOKEN_OIDC_SECRET,
                             cli_secrets_store(s))


def cli_secrets_store(s: Settings) -> str | dict[str, Any]:
    """Where the CLI secrets live (`regops_token.shared`): with images in S3, in that
    bucket, so every replica of the name knows every secret; else in a file of the host."""
    bucket = s.bucket
    if bucket is None or s.s3_credentials is None:
        return hostpaths.TOKEN_CLI_SECRETS
    return {"bucket": {"endpoint": bucket.endpoint, "region": bucket.region,
                       "name": bucket.name, "root": bucket.root,
                       "path_style": bucket.path_style, "verify_tls": bucket.verify_tls},
            "credentials": hostpaths.TOKEN_S3_CREDENTIALS}


def token_config(s: Settings) -> str:
    return json.dumps(
        {
            "service": s.registry_name,
            "issuer": ISSUER,
            "ttl": s["registry_token_ttl"],
            "refresh_days": 90,
            "listen": f"127.0.0.1:{s['registry_token_port']}",
            # The registry reaches the host on Docker's bridge (host-gateway).
            "notify_listen": f"docker0:{s['registry_token_port'] + 1}",
            "notify_secret": hostpaths.TOKEN_NOTIFY_SECRET,
            "key": hostpaths.TOKEN_KEY,
            "chain": hostpaths.TOKEN_CERT,
            "users": hostpaths.TOKEN_USERS,
            "robots": hostpaths.TOKEN_ROBOTS,
            "audit": hostpaths.AUDIT_LOG,
            "policy": policy_to_json(s.policy),
            "web": web_config(s),
            # A pull-through cache: the registry refuses writes too, but later and less clearly.
            "read_only": s.cache,
            "ldap": ldap_config(s),
            "oidc": oidc_config(s),
        },
        indent=2,
        sort_keys=True,
    ) + "\n"


def token_unit(s: Settings) -> unit.Unit:
    package = Path(regops_token.__file__).parent
    code = tuple(
        unit.Input(f"{hostpaths.TOKEN_CODE}/regops_token/{f.relative_to(package)}",
                   f.read_bytes())
        for f in package_files(package)
    )
    key = signer(s)
    return unit.Unit(
        name="token",
        what="the token service",
        control=hostpaths.TOKEN_CONTROL,
        inputs=(
            *code,
            unit.Input(hostpaths.TOKEN_UNIT, render.template(hostpaths.TOKEN_UNIT, s).encode()),
            unit.Input(hostpaths.TOKEN_CONFIG, token_config(s).encode(), mode="0640",
                       gid=s["registry_token_uid"]),
            unit.Input(hostpaths.TOKEN_CERT, key.cert_pem),
            unit.Input(hostpaths.TOKEN_KEY, key.key_pem, mode="0640",
                       gid=s["registry_token_uid"], secret=True),
            *ldap_inputs(s),
            *oidc_inputs(s),
        ),
    )


def oidc_inputs(s: Settings) -> tuple[unit.Input, ...]:
    """The provider's CA, the client secret and, with the CLI secrets in the bucket, the
    registry's S3 credentials: read at start like the key."""
    value = s["registry_oidc"]
    if value is None or s.oidc_secret is None:
        return ()
    found = [unit.Input(hostpaths.TOKEN_OIDC_SECRET, (s.oidc_secret + "\n").encode(),
                        mode="0640", gid=s["registry_token_uid"], secret=True)]
    if isinstance(cli_secrets_store(s), dict) and s.s3_credentials is not None:
        keys = {"access_key": s.s3_credentials.access_key,
                "secret_key": s.s3_credentials.secret_key}
        found.append(unit.Input(hostpaths.TOKEN_S3_CREDENTIALS, json.dumps(keys).encode(),
                                mode="0640", gid=s["registry_token_uid"], secret=True))
    if value.get("ca_file"):
        found.append(unit.Input(hostpaths.TOKEN_OIDC_CA, Path(value["ca_file"]).read_bytes()))
    return tuple(found)


def ldap_inputs(s: Settings) -> tuple[unit.Input, ...]:
    """The directory's CA and the bind password, read at start like the key."""
    value = s["registry_ldap"]
    if value is None or s.ldap_password is None:
        return ()
    found = [unit.Input(hostpaths.TOKEN_LDAP_PASSWORD, (s.ldap_password + "\n").encode(),
                        mode="0640", gid=s["registry_token_uid"], secret=True)]
    if ldap.encrypted(value):
        found.append(unit.Input(hostpaths.TOKEN_LDAP_CA, Path(value["ca_file"]).read_bytes()))
    return tuple(found)


def package_files(package: Path) -> list[Path]:
    """The service's code, its page templates and their static assets."""
    return sorted([*package.glob("*.py"), *package.glob("pages/*.html"),
                   *package.glob("static/*")])


@deploy("Token service")
def apply(s: Settings) -> None:
    if not s.token_auth:
        return
    refresh_apt_for(packages(s))
    apt.packages(name="Install python3 with cryptography and bcrypt (Debian's)",
                 packages=packages(s))
    for directory in (hostpaths.TOKEN_CODE, *(f"{hostpaths.TOKEN_CODE}/regops_token{sub}"
                                              for sub in ("", "/pages", "/static"))):
        files.directory(name=f"Create {directory}", path=directory, user="root", group="root",
                        mode="0755")
    secret_file(
        name="Write the secret the registry's notifications carry",
        src=Secret(store.notify_secret(s.secrets_root, s.registry_name) + "\n"),
        path=hostpaths.TOKEN_NOTIFY_SECRET,
        uid=0,
        gid=s["registry_token_uid"],
        mode="0640",
    )
    the_unit = token_unit(s)
    unit.install_control(s, hostpaths.TOKEN_CONTROL, staged=[i.path for i in the_unit.inputs])
    unit.ensure(the_unit)


@deploy("Token service (retired)")
def retire(s: Settings) -> None:
    """With `registry_auth: htpasswd`, a token service left from token mode stops, once
    the registry no longer sends clients to it; its files stay for a way back."""
    if s.token_auth or not host.get_fact(File, path=hostpaths.TOKEN_UNIT):
        return
    systemd.service(
        name="Stop and disable the token service (registry_auth is htpasswd)",
        service="regops-token.service",
        running=False,
        enabled=False,
    )
