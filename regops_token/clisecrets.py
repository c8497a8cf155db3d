"""CLI secrets: the docker password of a person who signs in by OIDC (docker login
cannot do OIDC), as Harbor gives its OIDC users one.

One per person, created on the web pages and shown once, rotated by creating
another, revoked there, expiring after `cli_secret_days`. The store keeps its
SHA-256 (the secret is 32 random bytes: a slow hash buys nothing against a guess
of 256 bits), when it was made and expires, and the groups the provider named at
the person's last sign-in: a docker login with the secret gets those rights, and a
new sign-in brings the provider's current groups. Kept in the token service's
store (`regops_token.shared`): a file of the host, or the registry's bucket, which
every replica of the name shares.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regops_token.shared import Store

PREFIX = "regops_cli_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    id: str  # the secret's short public id: refresh tokens and the audit log name it
    hash: str
    created: int
    expires: int
    groups: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.hash, "created": self.created,
                "expires": self.expires, "groups": list(self.groups)}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Entry:
        return cls(str(doc["id"]), str(doc["hash"]), int(doc["created"]), int(doc["expires"]),
                   tuple(str(g) for g in doc.get("groups", [])))


class CliSecrets:
    def __init__(self, store: Store, days: int, clock: Callable[[], float] = time.time) -> None:
        self.store, self.days, self.clock = store, days, clock

    def lookup(self, name: str) -> Entry | None:
        """The person's secret as stored, expired or not (one read of the store)."""
        doc = self.store.get(name)
        try:
            return Entry.from_document(doc) if doc is not None else None
        except (KeyError, TypeError, ValueError):
            return None  # not an entry: as good as none

    def create(self, name: str, groups: frozenset[str]) -> tuple[str, Entry]:
        """A new secret for `name` (the one before stops working): (secret, entry)."""
        secret = PREFIX + secrets.token_urlsafe(32)
        now = int(self.clock())
        entry = Entry(secrets.token_hex(4), digest(secret), now, now + self.days * 86400,
                      tuple(sorted(groups)))
        self.store.put(name, entry.document())
        return secret, entry

    def revoke(self, name: str) -> bool:
        return self.store.delete(name)

    def signed_in(self, name: str, groups: frozenset[str]) -> None:
        """The provider's groups at a sign-in: what the secret grants from now on."""
        entry = self.lookup(name)
        if entry is None or entry.groups == tuple(sorted(groups)):
            return
        self.store.put(name, Entry(entry.id, entry.hash, entry.created, entry.expires,
                                   tuple(sorted(groups))).document())

    def get(self, name: str) -> Entry | None:
        """The person's secret while it has not expired."""
        entry = self.lookup(name)
        return entry if entry is not None and entry.expires > self.clock() else None

    def entries(self) -> list[tuple[str, Entry]]:
        """Every person's secret, expired ones too, by name (for the admin page)."""
        found = ((name, self.lookup(name)) for name in self.store.names())
        return [(name, entry) for name, entry in found if entry is not None]

    def knows(self, name: str) -> bool:
        return self.store.get(name) is not None

    def matches(self, entry: Entry | None, secret: str) -> Entry | None:
        """`entry` when `secret` is it and it has not expired (no read of the store)."""
        if entry is None or entry.expires <= self.clock() or not secret.startswith(PREFIX):
            return None
        return entry if hmac.compare_digest(entry.hash, digest(secret)) else None

    def check(self, name: str, secret: str) -> Entry | None:
        """The entry when `secret` is the person's current one and has not expired."""
        if not secret.startswith(PREFIX):
            return None
        return self.matches(self.lookup(name), secret)
