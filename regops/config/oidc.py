"""`registry_oidc`: the OpenID provider the web pages sign people in with, checked
operator-side before any host changes, and the form the token service reads.

    registry_oidc:
      issuer: https://sso.example.com/realms/main   # exactly as the provider names itself
      client_id: registry
      ca_file: files/sso-ca.pem         # the provider's CA; unset: the hosts' trusted CAs
      scopes: [openid, profile, groups]
      username_claim: preferred_username
      groups_claim: groups
      cli_secret_days: 90               # a CLI secret's life
      label: Example SSO                # the login page's button: "Sign in with ..."

The client secret comes from the environment (`REGOPS_OIDC_CLIENT_SECRET`) or
`<secrets>/<registry_name>/oidc-client-secret`; it is never generated (the provider
issues it). Register `https://<registry_address>/oidc/callback` as the redirect URI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from regops.config.validators import ca_file_problem
from regops_token.oidc import OidcConfig

# What the host alone decides (the deploy writes it) is not the inventory's.
_HOST_ONLY = {"client_secret_file", "redirect_uri", "cli_secrets"}
_OWN = [f for f in fields(OidcConfig) if f.name not in _HOST_ONLY]
FIELDS = {f.name: None if f.default is MISSING else f.default for f in _OWN}
REQUIRED = tuple(f.name for f in _OWN if f.default is MISSING)
SECRET_ENV = "REGOPS_OIDC_CLIENT_SECRET"


def redirect_uri(registry_address: str) -> str:
    return f"https://{registry_address}/oidc/callback"


def token_config(value: Mapping[str, Any], registry_address: str, ca_file: str | None,
                 secret_file: str, store: str | dict[str, Any]) -> dict[str, Any]:
    """The token service's `oidc` section: host paths in place of operator ones."""
    d = {key: value.get(key, default) for key, default in FIELDS.items()}
    d["scopes"] = list(d["scopes"])
    return {**d, "ca_file": ca_file, "client_secret_file": secret_file,
            "redirect_uri": redirect_uri(registry_address), "cli_secrets": store}


def problem(value: Any) -> str | None:
    """None when `registry_oidc` is usable; else the problem, in one line (the shape as
    the token service checks it, and the CA file on this machine)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return "must be a mapping with issuer and client_id"
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        return f"unknown key {unknown[0]!r} (known: {', '.join(FIELDS)})"
    missing = [k for k in REQUIRED if not value.get(k)]
    if missing:
        return f"{missing[0]} is required"
    scopes = value.get("scopes", FIELDS["scopes"])
    if not isinstance(scopes, (list, tuple)) or not all(isinstance(x, str) for x in scopes):
        return "scopes must be a list of strings"
    for key in ("issuer", "client_id", "username_claim", "groups_claim", "label"):
        if key in value and not isinstance(value[key], str):
            return f"{key} must be a string"
    for key in ("cli_secret_days", "leeway", "timeout"):
        if key in value and (not isinstance(value[key], int) or isinstance(value[key], bool)):
            return f"{key} must be a whole number"
    try:
        found = OidcConfig.from_json(token_config(value, "registry.invalid", None, "-", "-")
                                     ).problem()
    except (TypeError, ValueError) as error:
        return str(error)
    if found:
        return found.removeprefix("oidc: ")
    if value.get("ca_file") is not None:
        return ca_file_problem(value["ca_file"])
    return None
