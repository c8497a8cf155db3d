"""CLI secrets: the docker password of a person who signs in by OIDC (docker login
cannot do OIDC), as Harbor gives its OIDC users one.

One per person, created on the web pages and shown once, rotated by creating
another, revoked there, expiring after `cli_secret_days`. The store keeps its
SHA-256 (the secret is 32 random bytes: a slow hash buys nothing against a guess
of 256 bits), when it was made and expires, and the groups the provider named at
the person's last sign-in: a docker login with the secret gets those rights, and a
new sign-in brings the provider's current groups. A JSON file the token service
alone writes (mode 0600, replaced whole).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    def __init__(self, path: str, days: int, clock: Callable[[], float] = time.time) -> None:
        self.path, self.days, self.clock = path, days, clock
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._read()

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.path}: {error}") from None
        self._entries = {name: Entry.from_document(e) for name, e in doc.items()}

    def _write(self) -> None:
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({n: e.document() for n, e in sorted(self._entries.items())}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def create(self, name: str, groups: frozenset[str]) -> tuple[str, Entry]:
        """A new secret for `name` (the one before stops working): (secret, entry)."""
        secret = PREFIX + secrets.token_urlsafe(32)
        now = int(self.clock())
        entry = Entry(secrets.token_hex(4), digest(secret), now, now + self.days * 86400,
                      tuple(sorted(groups)))
        with self._lock:
            self._entries[name] = entry
            self._write()
        return secret, entry

    def revoke(self, name: str) -> bool:
        with self._lock:
            if self._entries.pop(name, None) is None:
                return False
            self._write()
        return True

    def signed_in(self, name: str, groups: frozenset[str]) -> None:
        """The provider's groups at a sign-in: what the secret grants from now on."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.groups == tuple(sorted(groups)):
                return
            self._entries[name] = Entry(entry.id, entry.hash, entry.created, entry.expires,
                                        tuple(sorted(groups)))
            self._write()

    def get(self, name: str) -> Entry | None:
        """The person's secret while it has not expired."""
        with self._lock:
            entry = self._entries.get(name)
        return entry if entry is not None and entry.expires > self.clock() else None

    def entries(self) -> list[tuple[str, Entry]]:
        """Every person's secret, expired ones too, by name (for the admin page)."""
        with self._lock:
            return sorted(self._entries.items())

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._entries

    def check(self, name: str, secret: str) -> Entry | None:
        """The entry when `secret` is the person's current one and has not expired."""
        entry = self.get(name)
        if entry is None or not secret.startswith(PREFIX):
            return None
        return entry if hmac.compare_digest(entry.hash, digest(secret)) else None

