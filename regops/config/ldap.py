"""`registry_ldap`: the directory the token service logs people in from, checked
operator-side before any host changes, and the form the token service reads.

    registry_ldap:
      urls: [ldaps://ldap1.example.com, ldaps://ldap2.example.com]  # tried in order
      ca_file: files/ldap-ca.pem      # the directory's CA, on the operator's machine
      starttls: false                 # for ldap:// URLs: upgrade with StartTLS
      allow_plain: false              # ldap:// without StartTLS: passwords in clear
      bind_dn: cn=regops,ou=services,dc=example,dc=com
      user_base: ou=people,dc=example,dc=com
      user_filter: "(uid={name})"     # AD: "(sAMAccountName={name})"
      group_base: ou=groups,dc=example,dc=com
      group_filter: "(member={dn})"   # posixGroup: "(memberUid={name})"; AD nested:
                                      # "(member:1.2.840.113556.1.4.1941:={dn})"
      group_attribute: cn
      name_attribute: uid             # AD: sAMAccountName
      timeout: 5

The service account's password comes from the environment
(`REGOPS_LDAP_BIND_PASSWORD`) or `<secrets>/<registry_name>/ldap-bind-password`;
it is never generated. `{name}` and `{dn}` are escaped (RFC 4515) when filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from regops.config.validators import ca_file_problem
from regops_token.directory import DirectoryConfig

# The inventory's keys are the token service's own, less the password file's host path
# (the deploy writes it); the defaults are its defaults, and None for the required.
_OWN = [f for f in fields(DirectoryConfig) if f.name != "bind_password_file"]
FIELDS = {f.name: None if f.default is MISSING else f.default for f in _OWN}
REQUIRED = tuple(f.name for f in _OWN if f.default is MISSING)
PASSWORD_ENV = "REGOPS_LDAP_BIND_PASSWORD"


def with_defaults(value: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value.get(key, default) for key, default in FIELDS.items()}


def problem(value: Any) -> str | None:
    """None when `registry_ldap` is usable; else the problem, in one line. The shape is
    what the token service itself checks (`DirectoryConfig.problem`); this adds what only
    the operator's machine can tell: that the CA file is there and holds a certificate."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return "must be a mapping with urls, bind_dn, user_base and group_base"
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        return f"unknown key {unknown[0]!r} (known: {', '.join(FIELDS)})"
    missing = [k for k in REQUIRED if not value.get(k)]
    if missing:
        return f"{missing[0]} is required"
    try:
        config = DirectoryConfig.from_json(token_config(value, value.get("ca_file"), "-"))
    except ValueError as error:
        return str(error).removeprefix("ldap: ")
    found = config.problem()
    if found:
        return found.removeprefix("ldap: ")
    return ca_file_problem(value.get("ca_file")) if encrypted(value) else None


def urls(value: Mapping[str, Any]) -> list[str]:
    found = value["urls"]
    return [found] if isinstance(found, str) else list(found)


def token_config(value: Mapping[str, Any], ca_file: str | None, password_file: str
                 ) -> dict[str, Any]:
    """The token service's `ldap` section: host paths in place of operator ones."""
    d = with_defaults(value)
    return {**d, "urls": urls(value), "ca_file": ca_file, "bind_password_file": password_file}


def encrypted(value: Mapping[str, Any]) -> bool:
    """Whether any URL is ldaps:// or StartTLS is on (so the CA ships to the host)."""
    return bool(value.get("starttls")) or any(
        str(u).lower().startswith("ldaps://") for u in urls(value))
