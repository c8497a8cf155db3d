"""Who you are: the users' and robots' passwords (htpasswd files, bcrypt), the
slowing down of repeated failed logins, and refresh tokens. What a known subject
may do is `rules` (authz); the tokens that say so are `tokens`."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from regops_token import guard, jws
from regops_token.audit import Audit
from regops_token.clisecrets import PREFIX as CLI_PREFIX
from regops_token.clisecrets import CliSecrets, Entry
from regops_token.config import Config
from regops_token.rules import LDAP, OIDC, Subject
from regops_token.shared import StoreDown, open_store

VERIFIED_SECONDS = 120  # how long a verified password skips bcrypt (see Htpasswd.check)
BCRYPT_WORKERS = max(2, os.cpu_count() or 2)  # password checks running at once
IN_FLIGHT_PER_ADDRESS = 4  # logins of one name from one address checked or waiting at once
IN_FLIGHT_PER_NAME = 16  # logins of one name checked or waiting at once, from anywhere
FAILURE_WINDOW = 900.0  # seconds a failed login is counted after the last one
UNKNOWN_NAMES = 10000  # failure counters kept for names that are nobody's
KNOWN_NAMES = 100000  # failure counters kept for real names (from many addresses)
_BCRYPT = threading.BoundedSemaphore(BCRYPT_WORKERS)


def _cost(digest: bytes) -> int | None:
    """The cost of a `$2b$NN$...` hash."""
    parts = digest.split(b"$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


@functools.lru_cache(maxsize=8)
def _dummy_hash(cost: int) -> bytes:
    return bcrypt.hashpw(b"regops-dummy", bcrypt.gensalt(cost))


def checkpw(password: str, digest: bytes) -> bool:
    """bcrypt, at most BCRYPT_WORKERS at once: a flood of logins queues here instead
    of taking every core."""
    with _BCRYPT:
        try:
            return bcrypt.checkpw(password.encode(), digest)
        except ValueError:  # not a bcrypt hash
            return False


class Htpasswd:
    """`name:bcrypt` lines, re-read whenever the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._entries: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[bytes, float]] = {}
        self.cost: int | None = None  # the cost most of its hashes have

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
                costs = Counter(c for c in map(_cost, entries.values()) if c is not None)
                self.cost = costs.most_common(1)[0][0] if costs else None
                self._entries, self._stamp = entries, stamp
            return self._entries

    def _mark(self, name: str, password: str) -> bytes:
        return hmac.new(self._key, name.encode() + b"\0" + password.encode(),
                        hashlib.sha256).digest()

    def remembered(self, name: str, password: str) -> bool:
        """Whether this password was verified for `name` lately, against the hash the
        file holds now (no bcrypt)."""
        stored = self.entries().get(name)
        with self._lock:
            seen = self._verified.get(self._mark(name, password))
        return stored is not None and seen is not None and seen[0] == stored and (
            seen[1] > time.monotonic())

    def check(self, name: str, password: str) -> bool | None:
        """True or False; None (and no bcrypt) when the name is not in the file.

        A password bcrypt accepted is remembered for VERIFIED_SECONDS as an HMAC under
        a key that lives only in this process, tied to the stored hash: a client
        that logs in again and again (a CI job pulling many repositories) costs one
        bcrypt, and a changed or removed password is never matched from memory.
        Failures are not remembered: each one costs a full bcrypt."""
        stored = self.entries().get(name)
        if stored is None:
            return None
        if self.remembered(name, password):
            return True
        ok = checkpw(password, stored)
        if ok:
            with self._lock:
                if len(self._verified) >= 10000:  # bounded, oldest first
                    self._verified.pop(next(iter(self._verified)))
                self._verified[self._mark(name, password)] = (
                    stored, time.monotonic() + VERIFIED_SECONDS)
        return ok

    def fingerprint(self, name: str) -> str:
        """The name's credential generation: changes when its hash does (a new
        password, or `regops users passwd` with the same one, since the salt carries
        a generation). Refresh tokens and web sessions carry it."""
        stored = self.entries().get(name, b"")
        return hashlib.sha256(stored).hexdigest()[:16]


_Failures = tuple[int, float, tuple[bytes, ...]]


class Throttle:
    """Repeated failed logins of one name from one address are refused for a while,
    longer each time: after `free` failures, the next attempt is accepted only
    1, 2, 4 ... up to `ceiling` seconds after the last failure (earlier ones get Busy
    at once, without a bcrypt and without holding a worker).

    Only different wrong passwords count: the same wrong one again (a client with a
    stale password, retrying) is refused each time but does not lock the pair out,
    while guessing needs new passwords. The last few wrong ones are remembered as
    HMACs (`mark`), never as text.

    Counters of names that exist are kept apart from those of names that are
    nobody's, so spraying made-up names evicts only made-up names; a counter is
    forgotten FAILURE_WINDOW seconds after its last failure, and each table is
    bounded (the stale first, then the lowest counts)."""

    REMEMBERED_WRONG = 3  # wrong passwords per pair that count only once

    def __init__(self, free: int = 3, ceiling: float = 16.0, window: float = FAILURE_WINDOW,
                 unknown: int = UNKNOWN_NAMES, known: int = KNOWN_NAMES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.ceiling, self.window, self.clock = free, ceiling, window, clock
        self.limits = {False: unknown, True: known}
        # (name, address) -> (failures, when the last was, the last wrong passwords' HMACs)
        self._tables: dict[bool, dict[tuple[str, str], _Failures]] = {True: {}, False: {}}
        self._lock = threading.Lock()

    def _entry(self, key: tuple[str, str]) -> _Failures:
        for table in self._tables.values():
            found = table.get(key)
            if found is not None:
                if self.clock() - found[1] <= self.window:
                    return found
                del table[key]
        return 0, 0.0, ()

    def count(self, name: str, address: str) -> int:
        with self._lock:
            return self._entry((name, address))[0]

    def _backoff(self, count: int) -> float:
        return 0.0 if count < self.free else min(self.ceiling, 2.0 ** (count - self.free))

    def delay(self, name: str, address: str) -> float:
        """How long after its last failure the next attempt of this pair is accepted."""
        return self._backoff(self.count(name, address))

    def wait(self, name: str, address: str) -> float:
        """Seconds until this pair may try again (0: now)."""
        with self._lock:
            count, last, _ = self._entry((name, address))
        return max(0.0, last + self._backoff(count) - self.clock()) if count else 0.0

    def failed(self, name: str, address: str, known: bool = True, mark: bytes = b"") -> int:
        """Count a failure (unless `mark`, the wrong password's HMAC, is one of the pair's
        last wrong ones); the pair's count."""
        key = (name, address)
        with self._lock:
            count, _, seen = self._entry(key)
            if mark and mark in seen:
                return count  # the same wrong password again: refused, not counted
            marks = (*seen, mark)[-self.REMEMBERED_WRONG:] if mark else seen
            table = self._tables[known]
            self._tables[not known].pop(key, None)
            table.pop(key, None)
            table[key] = (count + 1, self.clock(), marks)
            if len(table) > self.limits[known]:
                self._evict(table, self.limits[known])
            return count + 1

    def _evict(self, table: dict[tuple[str, str], _Failures], limit: int) -> None:
        """The stale first, else the lowest count (the oldest of those)."""
        now = self.clock()
        for key in [k for k, (_, last, _) in table.items() if now - last > self.window]:
            del table[key]
        if len(table) > limit:
            del table[min(table, key=lambda k: table[k][0])]

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            for table in self._tables.values():
                table.pop((name, address), None)


class Busy(Exception):
    """Too many logins of one name are being checked at once."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many login attempts at once; retry later")
        self.retry_after = retry_after


class Unavailable(Exception):
    """The directory did not answer: its people cannot log in now; local users and
    robots still can."""


class StoreUnavailable(Unavailable):
    """The CLI secrets' store (the replicas' bucket) did not answer: CLI secrets cannot
    log in now; local users, robots and directory passwords still can."""


class _Pair:
    """The logins of one name from one address being checked or waiting: checked one
    after another (`lock`), at most IN_FLIGHT_PER_ADDRESS of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: tuple[Subject | None, str] = (None, "not checked")
        self.error: Exception | None = None


class Authn:
    """Logins (token and web), and refresh tokens, against the users' and robots' files
    and the robots of the rules; failures slowed down and audited.

    Each login costs at most one bcrypt, at the users' cost whether the name exists
    or not. Identical attempts at once share one check; attempts of one name from one
    address are checked one after another (each sees the previous one's verdict), at
    most IN_FLIGHT_PER_ADDRESS of them and IN_FLIGHT_PER_NAME from everywhere at once;
    past those, and while the throttle says wait, Busy at once. No login sleeps in a
    worker: a refused one tells the client when to come back (Retry-After)."""

    def __init__(self, config: Config, audit: Audit,
                 today: Callable[[], date] = date.today) -> None:
        self.config = config
        self.users = Htpasswd(config.users)
        self.robots = Htpasswd(config.robots)
        self.throttle = Throttle()
        self.audit = audit
        self.today = today
        self._lock = threading.Lock()
        self._flights: dict[bytes, _Flight] = {}
        self._per_name: dict[str, int] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self.directory: Any = None
        self._people: dict[str, tuple[Subject | None, float]] = {}  # web sessions' recheck
        if config.ldap:
            from regops_token.directory import Directory, DirectoryConfig

            self.directory = Directory(DirectoryConfig.from_json(config.ldap))
        # registry_oidc: people who sign in by single sign-on log docker in with these.
        self.cli = CliSecrets(open_store(config.oidc["cli_secrets"], "cli-secrets"),
                              int(config.oidc["cli_secret_days"])) if config.oidc else None

    def _dummy(self, password: str) -> None:
        cost = self.users.cost or self.robots.cost or 10
        checkpw(password, _dummy_hash(cost))

    def _verify(self, name: str, password: str, address: str, robots: bool
                ) -> tuple[Subject | None, str]:
        """(subject, "") when the password is right; (None, why) when not."""
        if len(name) > guard.MAX_NAME:
            return None, "unknown name"  # nobody's name is this long: no bcrypt for it
        for kind, source in (("user", self.users), ("robot", self.robots)):
            if (kind == "user" or robots) and source.remembered(name, password):
                return Subject(kind, name), ""
        mark = self.users._mark(name, password + ("\0robots" if robots else ""))
        key = (name, address)
        with self._lock:
            joined = self._flights.get(mark)
            if joined is None:
                pair = self._pairs.get(key) or _Pair()
                if (pair.in_flight >= IN_FLIGHT_PER_ADDRESS
                        or self._per_name.get(name, 0) >= IN_FLIGHT_PER_NAME):
                    raise Busy(1)
                flight = self._flights[mark] = _Flight()
                self._per_name[name] = self._per_name.get(name, 0) + 1
                pair.in_flight += 1
                self._pairs[key] = pair
        if joined is not None:  # the same name and password, being checked right now
            joined.done.wait(60)
            if joined.error is not None:
                raise joined.error
            return joined.result
        try:
            with pair.lock:
                wait = self.throttle.wait(name, address)
                if wait > 0:
                    flight.error = Busy(math.ceil(wait))
                    raise flight.error
                try:
                    flight.result = self._check(name, password, address, robots, mark)
                except Unavailable as error:
                    flight.error = error
                    raise
            return flight.result
        finally:
            with self._lock:
                del self._flights[mark]
                self._per_name[name] -= 1
                if not self._per_name[name]:
                    del self._per_name[name]
                pair.in_flight -= 1
                if not pair.in_flight:
                    del self._pairs[key]
            flight.done.set()

    def _check(self, name: str, password: str, address: str, robots: bool,
               mark: bytes = b"") -> tuple[Subject | None, str]:
        """One bcrypt against the name's hash (users, then robots), or else the
        directory when there is one, or else one bcrypt against the dummy."""
        if name in self.users.entries():
            kind, source = "user", self.users
        elif robots and name in self.robots.entries():
            kind, source = "robot", self.robots
        elif (stored := self._cli_candidate(name, password)) is not None:
            return self._check_cli_secret(name, password, stored, address, mark)
        elif self.directory is not None:
            return self._check_directory(name, password, address, mark)
        else:
            self._dummy(password)
            self.throttle.failed(name, address, known=False, mark=mark)
            return None, "unknown name"
        if source.check(name, password):
            self.throttle.succeeded(name, address)
            return Subject(kind, name), ""
        self.throttle.failed(name, address, mark=mark)
        return None, "wrong password"

    def _check_directory(self, name: str, password: str, address: str, mark: bytes = b""
                         ) -> tuple[Subject | None, str]:
        from regops_token.directory import DirectoryDown

        try:
            person = self.directory.login(name, password)
        except DirectoryDown as error:
            raise Unavailable(str(error)) from None
        if person is None:
            self.throttle.failed(name, address, known=False, mark=mark)
            return None, "unknown name or wrong password (directory)"
        self.throttle.succeeded(name, address)
        return Subject(LDAP, person.name, frozenset(person.groups)), ""

    def _cli_candidate(self, name: str, password: str) -> Entry | None:
        """The name's stored CLI secret (expired too) when `password` is to be checked
        against it: the name has one and, when a directory is there too, the password
        looks like one (someone in both still logs in with their directory password).
        One read of the store; one that does not answer refuses CLI secrets alone
        (StoreUnavailable), other passwords go on."""
        if self.cli is None or (self.directory is not None
                                and not password.startswith(CLI_PREFIX)):
            return None
        try:
            return self.cli.lookup(name)
        except StoreDown as error:
            if password.startswith(CLI_PREFIX):
                raise StoreUnavailable(str(error)) from None
            return None

    def _cli_entry(self, name: str) -> Entry | None:
        """The name's current CLI secret (StoreUnavailable when its store is down)."""
        try:
            return self.cli.get(name) if self.cli is not None else None
        except StoreDown as error:
            raise StoreUnavailable(str(error)) from None

    def _check_cli_secret(self, name: str, password: str, stored: Entry, address: str,
                          mark: bytes = b"") -> tuple[Subject | None, str]:
        """A person of single sign-on with their CLI secret: the groups of their last
        sign-in (one SHA-256: the secret is random, nothing to slow down)."""
        assert self.cli is not None
        entry = self.cli.matches(stored, password)
        if entry is None:
            self.throttle.failed(name, address, mark=mark)
            return None, "wrong, expired or revoked CLI secret"
        self.throttle.succeeded(name, address)
        return Subject(OIDC, name, frozenset(entry.groups)), ""

    def login_user(self, name: str, password: str, address: str) -> Subject | None:
        """A web login: users and people of the directory (robots are for machines),
        refused for a while when repeated, and audited like a token login. Busy when
        too many are being checked for the name; Unavailable when the directory is."""
        try:
            found, why = self._verify(name, password, address, robots=False)
        except Unavailable as error:
            self.audit("login_failed", subject=name, client_ip=address, via="web",
                       reason=f"directory unreachable: {error}")
            raise
        if found is not None and found.kind == OIDC:
            found, why = None, "a CLI secret is for docker: sign in with single sign-on"
        if found is not None and found.person:
            return found
        self.audit("login_failed", subject=name, client_ip=address, via="web", reason=why,
                   failures=self.throttle.count(name, address))
        return None

    def authenticate(self, name: str, password: str, address: str) -> tuple[Subject | None, str]:
        """(subject, "") or (None, why): users first, then robots, then the directory.
        Busy when too many are being checked for the name; Unavailable when the
        directory does not answer."""
        try:
            found, why = self._verify(name, password, address, robots=True)
        except Unavailable as error:
            self.audit("login_failed", subject=name, client_ip=address,
                       reason=f"directory unreachable: {error}")
            raise
        if found is not None and found.kind in ("user", LDAP, OIDC):
            return found, ""
        if found is not None and found.kind == "robot":
            spec = self.config.policy.robots.get(name)
            if spec is None:
                why = "robot not in the rules"
            elif spec.expired(self.today()):
                why = f"robot expired on {spec.expires.isoformat()}"
            else:
                return Subject("robot", name), ""
        self.audit("login_failed", subject=name, client_ip=address, reason=why,
                   failures=self.throttle.count(name, address))
        return None, why

    def credential(self, name: str) -> str | None:
        """A user's credential generation (None when the user is gone): web sessions
        remember it at login and end when it changes."""
        return self.users.fingerprint(name) if name in self.users.entries() else None

    def person(self, name: str, fresh: float = 60.0) -> Subject | None:
        """A person of the directory as it says now (their groups re-read at most every
        `fresh` seconds); None when gone or when the directory does not answer."""
        from regops_token.directory import DirectoryDown

        if self.directory is None:
            return None
        now = time.monotonic()
        with self._lock:
            known = self._people.get(name)
        if known is not None and known[1] > now:
            return known[0]
        try:
            groups = self.directory.groups(name)
        except DirectoryDown:
            return None
        found = None if groups is None else Subject(LDAP, name, frozenset(groups))
        with self._lock:
            if len(self._people) >= 10000:
                self._people.pop(next(iter(self._people)))
            self._people[name] = (found, now + fresh)
        return found

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
        if subject.kind == LDAP:
            return ""  # the directory says whether the person still exists
        if subject.kind == OIDC:  # the CLI secret it came from: a new one or none ends it
            entry = self._cli_entry(subject.name)
            return entry.id if entry is not None else ""
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
        if subject.kind == LDAP:
            person = self.person(subject.name, fresh=0)
            if person is None:
                return None, "the directory no longer knows the account, or does not answer"
            return person, ""
        if subject.kind == OIDC:
            try:
                entry = self._cli_entry(subject.name)
            except StoreUnavailable as error:
                return None, str(error)
            if entry is None or claims.get("pwh") != entry.id:
                return None, "the CLI secret was revoked, replaced or has expired"
            return Subject(OIDC, subject.name, frozenset(entry.groups)), ""
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
        """A token subject's name as the audit log names it (user:NAME, robot:NAME or,
        for a person of the directory, ldap:NAME)."""
        if name in self.users.entries():
            return Subject("user", name).label
        if name in self.config.policy.robots:
            return Subject("robot", name).label
        try:
            if self.cli is not None and self.cli.knows(name):
                return Subject(OIDC, name).label
        except StoreDown:
            pass  # the label says less; the request goes on
        return Subject(LDAP if self.directory is not None else "user", name).label
