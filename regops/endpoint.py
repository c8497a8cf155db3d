"""A registry API client for an inventory host, as the operator's machine sees it."""

from __future__ import annotations

from regops import paths
from regops.client import RegistryClient
from regops.settings import Settings


def ca_file(s: Settings) -> str | None:
    """The CA clients should trust: the generated one, the provided one, or system trust."""
    if s.provided_tls:
        return s["registry_tls_ca_file"]
    return str(paths.ca_cert_path(s.secrets_root, s.registry_name))


def client(s: Settings, user: str | None = None) -> RegistryClient:
    """Logged in as `user` (default: the first user in the data)."""
    chosen = next((u for u in s.users if u.name == user), None) if user else s.users[0]
    if chosen is None:
        raise ValueError(f"{s.host}: registry_users: no user {user!r}")
    return RegistryClient(s.api_url, chosen.name, chosen.password, ca_file=ca_file(s))
