"""A registry API client for an inventory host, as the operator's machine sees it."""

from __future__ import annotations

from pathlib import Path

from regops.config.settings import Settings, local_admins
from regops.errors import RegopsError, UsageError
from regops.registry.client import RegistryClient
from regops.secrets import paths


def ca_file(s: Settings) -> str | None:
    """The CA clients should trust: the generated one, the provided one, or system trust."""
    if s.provided_tls:
        return s["registry_tls_ca_file"]
    return str(paths.ca_cert_path(s.secrets_root, s.registry_name))


def api_client(
    s: Settings, user: str | None = None, password: str | None = None, timeout: float = 30
) -> RegistryClient:
    """A client that trusts the registry's CA (anonymous unless given a login); a CA file
    missing on this machine is one clear line, not a traceback."""
    ca = ca_file(s)
    if ca and not Path(ca).is_file():
        hint = (
            "registry_tls_ca_file names no file here"
            if s.provided_tls
            else f"deploy {s.host} from this machine first, or copy the secrets directory here"
        )
        raise RegopsError(f"{s.host}: no CA certificate at {ca} ({hint})")
    return RegistryClient(s.api_url, user, password, ca_file=ca, timeout=timeout)


def login_client(s: Settings, user: str | None = None) -> RegistryClient:
    """Logged in as a registry user of the data (default: the first admin of
    registry_users, or the first user when there are no access rules and every user may
    do everything)."""
    admins = local_admins(s["registry_admins"])
    if not user and s.token_auth and admins:
        user = admins[0]
    chosen = next((u for u in s.users if u.name == user), None) if user else s.users[0]
    if chosen is None:
        raise UsageError(f"{s.host}: registry_users: no user {user!r}")
    return api_client(s, chosen.name, chosen.password)
