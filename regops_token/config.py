"""The token service's config, `token.json` as the deploy writes it: read once at
start, apart from the code that uses it, so each piece takes only what it needs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regops_token.rules import Policy, policy_from_json


@dataclass(frozen=True)
class Config:
    service: str
    issuer: str
    ttl: int
    refresh_days: int
    listen: str  # host:port for the front door
    notify_listen: str | None  # interface:port the registry sends notifications to
    notify_secret_file: str | None
    key: str
    chain: str
    users: str  # htpasswd (bcrypt) of the users
    robots: str  # htpasswd (bcrypt) of the robots' secrets
    audit: str
    policy: Policy
    web: dict[str, Any] | None = None  # address, registry_ports, gc_schedule, gc_state
    read_only: bool = False  # a pull-through cache: nobody pushes or deletes, whatever the rules
    ldap: dict[str, Any] | None = None  # registry_ldap, with host paths (regops_token.directory)
    oidc: dict[str, Any] | None = None  # registry_oidc, with host paths (regops_token.oidc)

    @classmethod
    def load(cls, path: str) -> Config:
        doc = json.loads(Path(path).read_text())
        return cls(
            service=doc["service"],
            issuer=doc["issuer"],
            ttl=int(doc["ttl"]),
            refresh_days=int(doc.get("refresh_days", 90)),
            listen=doc["listen"],
            notify_listen=doc.get("notify_listen"),
            notify_secret_file=doc.get("notify_secret"),
            key=doc["key"],
            chain=doc["chain"],
            users=doc["users"],
            robots=doc["robots"],
            audit=doc["audit"],
            policy=policy_from_json(doc["policy"]),
            web=doc.get("web"),
            read_only=bool(doc.get("read_only", False)),
            ldap=doc.get("ldap"),
            oidc=doc.get("oidc"),
        )
