"""Who you are: the users' and robots' passwords (htpasswd files, bcrypt), the
slowing down of repeated failed logins, and refresh tokens. What a known subject
may do is `rules` (authz); the tokens that say so are `tokens`."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from regops_token import jws
from regops_token.audit import Audit
from regops_token.config import Config
from regops_token.rules import Subject

# A bcrypt hash to compare against when the name is unknown, so that a wrong name
# and a wrong password take the same time.
_DUMMY_HASH = bcrypt.hashpw(b"regops-dummy", bcrypt.gensalt(10))
VERIFIED_SECONDS = 120  # how long a verified password skips bcrypt (see Htpasswd.check)


class Htpasswd:
    """`name:bcrypt` lines, re-read whenever the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._entries: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[bytes, float]] = {}

    def entries(self) -> dict[str, bytes]:
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._entries, self._stamp = {}, None
                return {}
            stamp = (st.st_mtime, st.st_size)
            if stamp != self._stamp:
                entries = {}
                for line in Path(self.path).read_text().splitlines():
                    name, sep, digest = line.strip().partition(":")
                    if sep and name and digest:
                        entries[name] = digest.encode()
                self._entries, self._stamp = entries, stamp
            return self._entries

    def check(self, name: str, password: str) -> bool | None:
        """True or False; None when the name is not in the file.

        A password bcrypt accepted is remembered for VERIFIED_SECONDS as an HMAC under
        a key that lives only in this process, tied to the stored hash: a client
        that logs in again and again (a CI job pulling many repositories) costs one
        bcrypt, and a changed or removed password is never matched from memory.
        Failures are not remembered: each one costs a full bcrypt."""
        stored = self.entries().get(name)
        if stored is None:
            bcrypt.checkpw(password.encode(), _DUMMY_HASH)
            return None
        mark = hmac.new(self._key, name.encode() + b"\0" + password.encode(),
                        hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            seen = self._verified.get(mark)
        if seen is not None and seen[0] == stored and seen[1] > now:
            return True
        ok = bcrypt.checkpw(password.encode(), stored)
        if ok:
            with self._lock:
                if len(self._verified) >= 10000:  # bounded, oldest first
                    self._verified.pop(next(iter(self._verified)))
                self._verified[mark] = (stored, now + VERIFIED_SECONDS)
        return ok

    def fingerprint(self, name: str) -> str:
        """Changes when the name's password does: refresh tokens carry it."""
        stored = self.entries().get(name, b"")
        return hashlib.sha256(stored).hexdigest()[:16]


class Throttle:
    """Repeated failed logins of one name from one address wait longer each time."""

    def __init__(self, free: int = 3, ceiling: float = 16.0) -> None:
        self.free, self.ceiling = free, ceiling
        self._failures: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def delay(self, name: str, address: str) -> float:
        with self._lock:
            count = self._failures.get((name, address), 0)
        return 0.0 if count < self.free else min(self.ceiling, 2.0 ** (count - self.free))

    def failed(self, name: str, address: str) -> int:
        with self._lock:
            count = self._failures.get((name, address), 0) + 1
            self._failures[(name, address)] = count
            if len(self._failures) > 10000:  # bounded memory under a spray of names
                self._failures.pop(next(iter(self._failures)))
            return count

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name, address), None)


class Authn:
    """Logins (token and web), and refresh tokens, against the users' and robots' files
    and the robots of the rules; failures slowed down and audited."""

    def __init__(self, config: Config, audit: Audit,
                 today: Callable[[], date] = date.today) -> None:
        self.config = config
        self.users = Htpasswd(config.users)
        self.robots = Htpasswd(config.robots)
        self.throttle = Throttle()
        self.audit = audit
        self.today = today

    def login_user(self, name: str, password: str, address: str) -> bool:
        """A web login: users only (robots are for machines), slowed down and audited
        like a token login."""
        delay = self.throttle.delay(name, address)
        if delay > 0:
            time.sleep(delay)
        found = self.users.check(name, password)
        if found:
            self.throttle.succeeded(name, address)
            return True
        count = self.throttle.failed(name, address)
        self.audit("login_failed", subject=name, client_ip=address, via="web",
                   reason="unknown name" if found is None else "wrong password",
                   failures=count)
        return False

    def authenticate(self, name: str, password: str, address: str) -> tuple[Subject | None, str]:
        """(subject, "") or (None, why): users first, then robots."""
        delay = self.throttle.delay(name, address)
        if delay:
            time.sleep(delay)
        user = self.users.check(name, password)
        if user:
            self.throttle.succeeded(name, address)
            return Subject("user", name), ""
        robot = self.robots.check(name, password) if user is None else None
        if robot:
            spec = self.config.policy.robots.get(name)
            if spec is None:
                why = "robot not in the rules"
            elif spec.expired(self.today()):
                why = f"robot expired on {spec.expires.isoformat()}"
            else:
                self.throttle.succeeded(name, address)
                return Subject("robot", name), ""
        else:
            why = "unknown name" if user is None and robot is None else "wrong password"
        count = self.throttle.failed(name, address)
        self.audit("login_failed", subject=name, client_ip=address, reason=why, failures=count)
        return None, why

    def refresh_token(self, subject: Subject, key: ec.EllipticCurvePrivateKey,
                      chain: list[x509.Certificate]) -> str:
        now = int(time.time())
        claims = {
            "iss": self.config.issuer,
            "sub": subject.name,
            "typ": "refresh",
            "kind": subject.kind,
            "pwh": self._fingerprint(subject),
            "iat": now,
            "exp": now + self.config.refresh_days * 86400,
        }
        return jws.sign(claims, key, chain)

    def _fingerprint(self, subject: Subject) -> str:
        source = self.users if subject.kind == "user" else self.robots
        return source.fingerprint(subject.name)

    def from_refresh_token(
        self, token: str, public_key: ec.EllipticCurvePublicKey
    ) -> tuple[Subject | None, str]:
        try:
            claims = jws.verify(token, public_key)
        except jws.TokenError as error:
            return None, str(error)
        subject = Subject(str(claims.get("kind", "user")), str(claims.get("sub", "")))
        if claims.get("typ") != "refresh" or claims.get("iss") != self.config.issuer:
            return None, "not a refresh token"
        if int(claims.get("exp", 0)) < time.time():
            return None, "refresh token expired"
        if claims.get("pwh") != self._fingerprint(subject) or subject.name not in (
            self.users.entries() if subject.kind == "user" else self.robots.entries()
        ):
            return None, "the password changed or the account is gone"
        if subject.kind == "robot":
            spec = self.config.policy.robots.get(subject.name)
            if spec is None or spec.expired(self.today()):
                return None, "robot expired or revoked"
        return subject, ""

    def label(self, name: str) -> str:
        """A token subject's name as the audit log names it (user:NAME or robot:NAME)."""
        kind = "robot" if name in self.config.policy.robots and name not in (
            self.users.entries()) else "user"
        return Subject(kind, name).label
