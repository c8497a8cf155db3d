"""The tokens the registry checks: the scopes a client asks for, parsed, and the
signed answer, with what the rules grant (`rules`) to whom `authn` says it is.
`TokenService` is what the HTTP handler and the web pages hold: the config, the
audit log, logins (`authn`) and the signing key, re-read when it is rotated."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from regops_token import guard, jws
from regops_token.audit import Audit
from regops_token.authn import Authn
from regops_token.config import Config
from regops_token.rules import ANONYMOUS, Policy, Subject


def parse_scope(text: str) -> tuple[str, str, list[str]] | None:
    """`repository:team/app:pull,push` -> ("repository", "team/app", ["pull", "push"])."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    kind = kind.split("(", 1)[0]  # repository(plugin) is a repository
    return kind, name, [a for a in actions.split(",") if a]


def scopes_of(values: list[str]) -> list[tuple[str, str, list[str]]]:
    """Repeated and space-separated scopes, parsed, unparsable ones dropped; guard.Refused
    past the limits (too many, too long, a name over 255 characters), before any rule
    sees them or the audit log records them."""
    found = []
    for text in guard.scope_texts(values):
        parsed = parse_scope(text)
        if parsed:
            guard.name(parsed[1], "repository name")
            found.append(parsed)
    return found


def load_chain(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file (cryptography 38, Debian 12's, has no helper)."""
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    return [x509.load_pem_x509_certificate(block.strip() + b"\n") for block in blocks]


class TokenService:
    """Everything the handler needs, built once from the config."""

    def __init__(self, config: Config, today: Callable[[], date] = date.today) -> None:
        self.config = config
        self.audit = Audit(config.audit)
        self.today = today
        self.authn = Authn(config, self.audit, today)
        self.users, self.robots, self.throttle = (
            self.authn.users, self.authn.robots, self.authn.throttle)
        self._key_stamp: float | None = None
        self._load_key()

    def _load_key(self) -> None:
        """The signing key and its chain, re-read when they change (a rotation)."""
        stamp = os.stat(self.config.key).st_mtime + os.stat(self.config.chain).st_mtime
        if stamp == self._key_stamp:
            return
        key = serialization.load_pem_private_key(Path(self.config.key).read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.config.key}: not an EC key")
        self.key = key
        self.chain = load_chain(Path(self.config.chain).read_bytes())
        self._key_stamp = stamp

    @property
    def policy(self) -> Policy:
        return self.config.policy

    # ------------------------------------------------------------------ login (authn)

    def login_user(self, name: str, password: str, address: str) -> Subject | None:
        return self.authn.login_user(name, password, address)

    def person(self, name: str) -> Subject | None:
        return self.authn.person(name)

    def authenticate(self, name: str, password: str, address: str) -> tuple[Subject | None, str]:
        return self.authn.authenticate(name, password, address)

    def credential(self, name: str) -> str | None:
        return self.authn.credential(name)

    def refresh_token(self, subject: Subject) -> str:
        return self.authn.refresh_token(subject, self.key, self.chain[:1])

    def from_refresh_token(self, token: str, address: str) -> tuple[Subject | None, str]:
        return self.authn.from_refresh_token(
            token, self.chain[0].public_key())  # type: ignore[arg-type]

    def label(self, name: str) -> str:
        return self.authn.label(name)

    # ------------------------------------------------------------------ tokens

    def issue(
        self, subject: Subject, scopes: list[tuple[str, str, list[str]]], address: str,
        client: str, via: str = "",
    ) -> tuple[str, int, list[dict[str, Any]]]:
        self._load_key()
        access = []
        for kind, name, actions in scopes:
            granted = self.config.policy.grant(subject, kind, name, actions)
            if self.config.read_only and kind == "repository":
                granted = [a for a in granted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.config.issuer,
            "sub": "" if subject.kind == ANONYMOUS else subject.name,
            "aud": self.config.service,
            "exp": now + self.config.ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": [a for a in access if a["actions"]],
        }
        token = jws.sign(claims, self.key, self.chain[:1])
        self.audit(
            "token",
            subject=subject.label,
            client_ip=address,
            client=client,
            via=via,
            requested=[f"{k}:{n}:{','.join(a)}" for k, n, a in scopes],
            granted=[f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access],
        )
        return token, self.config.ttl, access

    def mint(self, subject: str, scopes: list[tuple[str, str, list[str]]]) -> tuple[str, int]:
        """A token for the web pages' own requests to the registry on loopback. The
        pages decide the rights (from the same rules) before asking; not audited,
        the page's decision is."""
        self._load_key()
        now = int(time.time())
        claims = {
            "iss": self.config.issuer, "sub": subject, "aud": self.config.service,
            "exp": now + self.config.ttl, "nbf": now - 10, "iat": now,
            "jti": secrets.token_hex(12),
            "access": [{"type": k, "name": n, "actions": a} for k, n, a in scopes],
        }
        return jws.sign(claims, self.key, self.chain[:1]), self.config.ttl
