"""Who a directory says you are: logins and groups from LDAP or Active Directory.

The token service's service account searches the person (`user_filter`, the typed
name escaped per RFC 4515), a fresh connection binds as the entry found with the
typed password, and the service account reads the groups (`group_filter`). The
filters cover the usual layouts:

- OpenLDAP, groupOfNames: `(uid={name})` and `(member={dn})` (the defaults);
  posixGroup: `(memberUid={name})`; both: `(|(member={dn})(memberUid={name}))`.
- Active Directory: `(sAMAccountName={name})` (or `(userPrincipalName={name})`)
  with `name_attribute` `sAMAccountName`; disabled accounts left out by the filter,
  `(&(sAMAccountName={name})(!(userAccountControl:1.2.840.113556.1.4.803:=2)))`;
  nested groups are a group filter too: `(member:1.2.840.113556.1.4.1941:={dn})`
  (LDAP_MATCHING_RULE_IN_CHAIN) returns every group the person is in, directly
  or through other groups.

`{name}` and `{dn}` are the only placeholders; what replaces them is escaped. A
person's name is the directory's spelling (`name_attribute`), so `Alice` and
`alice` are one subject. A name with control characters or over guard.MAX_NAME
characters, and an empty password (an unauthenticated bind, which some servers
answer with "success"), are refused without asking the directory. Passwords go out
as their UTF-8 bytes, without the SASLprep ldap3 would apply.

A verified password is remembered for VERIFIED_SECONDS as an HMAC under a key that
lives only in this process, tied to the entry's change marks (modifyTimestamp,
entryCSN, uSNChanged): a client that logs in again and again costs one search of
the account and one of its groups on the service account's open connection, and no
bind. A changed password, a disabled or deleted account, or a group removal counts
at the next login. Failures are never remembered.

URLs are tried in order, a server that did not answer put last for DOWN_SECONDS;
when none answered, that verdict stands for VERDICT_SECONDS, so that logins queued
behind it do not each wait out every timeout again.
(ldap3's ServerPool is not used: with `active` it sleeps POOLING_LOOP_TIMEOUT, 10 s,
before giving up, probes with a bare TCP connect so a TLS failure is not failed
over, and its errors name no URL.) TLS is `ldaps://` or StartTLS, the certificate
verified against `ca_file` with its host name checked; plain `ldap://` is refused
unless `allow_plain` says so. When no server answers, `DirectoryDown` says which
URLs were tried and why, in one line that never holds a password.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import ldap3  # type: ignore[import-untyped, unused-ignore]
from ldap3.core.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    LDAPException,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped, unused-ignore]

from regops_token import guard

VERIFIED_SECONDS = 120  # how long a verified directory password skips the bind
DOWN_SECONDS = 30  # a URL that did not answer is tried last for this long
VERDICT_SECONDS = 5  # when no URL answered, logins in this time get that answer at once
MAX_TIMEOUT = 60  # seconds: the most `timeout` may be
# The entry's change marks (OpenLDAP, AD): a remembered password counts only while
# they are what they were when it was verified. Attributes a server lacks are absent.
STAMP_ATTRIBUTES = ("modifyTimestamp", "entryCSN", "uSNChanged")
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+")
_SUCCESS, _SIZE_LIMIT, _NO_SUCH_OBJECT = 0, 4, 32
_RETRY_CODES = {51, 52, 80}  # busy, unavailable, other: try a fresh connection once


class DirectoryDown(Exception):
    """No server answered, TLS failed, or the directory refused the service account:
    directory logins cannot be checked (local ones still can). One line, naming the
    URLs tried; never a password."""


@dataclass(frozen=True)
class DirectoryUser:
    name: str  # as the directory spells it (name_attribute)
    dn: str
    groups: frozenset[str]


@dataclass(frozen=True)
class DirectoryConfig:
    urls: tuple[str, ...]  # ldaps://host[:port] or ldap://host[:port], tried in order
    bind_dn: str  # the service account that searches
    bind_password_file: str  # the file holding its password (re-read at each connect)
    user_base: str
    group_base: str
    ca_file: str | None = None  # the CA that signed the servers' certificates (PEM)
    starttls: bool = False  # ldap:// URLs upgrade to TLS before binding
    allow_plain: bool = False  # ldap:// without StartTLS: passwords in the clear
    user_filter: str = "(uid={name})"
    group_filter: str = "(member={dn})"  # {dn} and/or {name}
    group_attribute: str = "cn"  # the group's name in the group entry
    name_attribute: str = "uid"  # the person's name in their entry
    timeout: int = 5  # seconds, for each connect, TLS handshake and answer

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DirectoryConfig:
        """From the token config's `ldap` object; ValueError (one line) for an unknown
        key or a value of the wrong type. `problem` checks the rest."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(doc) - set(known))
        if unknown:
            raise ValueError(f"ldap: unknown key(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key, value in doc.items():
            if key == "urls":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
                    raise ValueError("ldap: urls must be a list of URLs")
                value = tuple(value)
            elif key in ("starttls", "allow_plain"):
                if not isinstance(value, bool):
                    raise ValueError(f"ldap: {key} must be true or false")
            elif key == "timeout":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("ldap: timeout must be a whole number of seconds")
            elif key == "ca_file":
                if value is not None and not isinstance(value, str):
                    raise ValueError("ldap: ca_file must be a path")
            elif not isinstance(value, str):
                raise ValueError(f"ldap: {key} must be a string")
            values[key] = value
        missing = [n for n, f in known.items() if n not in values and f.default is MISSING]
        if missing:
            raise ValueError(f"ldap: missing key(s) {', '.join(missing)}")
        return cls(**values)

    def problem(self) -> str | None:
        """What is wrong with this config, in one line; None when nothing is."""
        if not self.urls:
            return "ldap: urls is empty: give at least one ldaps:// or ldap:// URL"
        tls = False
        for url in self.urls:
            wrong = _url_problem(url)
            if wrong:
                return f"ldap: {wrong}"
            secure = url.lower().startswith("ldaps://") or self.starttls
            if not secure and not self.allow_plain:
                return (f"ldap: {url} is plain LDAP (passwords in the clear): use ldaps://, "
                        "or starttls, or set allow_plain")
            tls = tls or secure
        if tls and not self.ca_file:
            return "ldap: TLS (ldaps:// or starttls) needs ca_file, the directory's CA"
        for key in ("bind_dn", "bind_password_file", "user_base", "group_base"):
            if not getattr(self, key).strip():
                return f"ldap: {key} is empty"
        for key, text, allowed in (("user_filter", self.user_filter, ("name",)),
                                   ("group_filter", self.group_filter, ("name", "dn"))):
            wrong = _filter_problem(text, allowed)
            if wrong:
                return f"ldap: {key} {wrong}"
        if "{name}" not in self.user_filter:
            return "ldap: user_filter must contain {name}"
        if "{name}" not in self.group_filter and "{dn}" not in self.group_filter:
            return "ldap: group_filter must contain {dn} or {name}"
        for key in ("group_attribute", "name_attribute"):
            if not _ATTRIBUTE.fullmatch(getattr(self, key)):
                return f"ldap: {key} {getattr(self, key)!r} is not an attribute name"
        if not 1 <= self.timeout <= MAX_TIMEOUT:
            return f"ldap: timeout must be 1..{MAX_TIMEOUT} seconds, not {self.timeout}"
        return None


def _controls(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _url_problem(url: str) -> str | None:
    if _controls(url) or " " in url:
        return f"URL {url!r} holds spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("ldap", "ldaps"):
        return f"{url} is not an ldap:// or ldaps:// URL"
    try:
        port = parts.port
    except ValueError:
        return f"{url} has a bad port"
    if not parts.hostname or port == 0:
        return f"{url} names no host" if not parts.hostname else f"{url} has a bad port"
    if parts.username or parts.password:
        return f"{url} holds credentials: use bind_dn and bind_password_file"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{url}: the base and filter are keys of their own, not part of the URL"
    return None


def _filter_problem(text: str, allowed: Sequence[str]) -> str | None:
    """Parentheses balanced, one filter, placeholders only among `allowed`."""
    depth = 0
    for at, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0 or (depth == 0 and at != len(text) - 1):
                return f"{text!r} is not one parenthesised filter"
    if not text.startswith("(") or depth != 0:
        return f"{text!r} is not one parenthesised filter"
    for found in re.findall(r"\{([^{}]*)\}", text):
        if found not in allowed:
            return f"has {{{found}}}; only {', '.join('{' + a + '}' for a in allowed)} may be used"
    return None


def usable_name(name: str) -> bool:
    """A login name worth asking the directory about."""
    return 0 < len(name) <= guard.MAX_NAME and not _controls(name) and (
        name == name.strip())


def _octets(password: str) -> bytes | None:
    """The password as sent: its UTF-8 bytes as typed (no SASLprep, which ldap3 would
    apply to text and which OpenLDAP and AD do not expect); None if it has none."""
    try:
        return password.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _fill(template: str, **values: str) -> str:
    """The filter with each {key} replaced by its RFC 4515-escaped value."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", escape_filter_chars(value))
    return out


def _reason(error: BaseException, password: bytes) -> str:
    """A short, one-line why from an ldap3 or socket error, the password blanked."""
    text = " ".join(str(error).replace("\\'", "'").split())
    low = text.lower()
    verify = re.search(r"certificate verify failed: ([^(\]]*)", text, re.IGNORECASE)
    if verify:
        why = f"TLS: certificate not accepted ({verify.group(1).strip()})"
    elif "timed out" in low or "timeout" in low:
        why = "timed out"
    elif "refused" in low:
        why = "connection refused"
    elif isinstance(error, LDAPStartTLSError):
        why = "StartTLS failed: " + text[:120]
    elif "ssl" in low or "tls" in low:
        why = "TLS handshake failed (is it a TLS port?): " + text[:120]
    elif "name or service not known" in low or "getaddrinfo" in low:
        why = "host name not found"
    else:
        why = text[:160] or type(error).__name__
    shown = password.decode("utf-8", "replace")
    return why.replace(shown, "***") if shown else why


class _VerifiedTls(ldap3.Tls):
    """TLS with the standard library's checks: the chain against the CA file and the
    host name (DNS or IP) in the handshake, TLS 1.2 at least, SNI sent. (ldap3's own
    host name check is its copy of ssl.match_hostname, gone from Python 3.12.)"""

    def __init__(self, ca_file: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        self._context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=True,
            server_hostname=connection.server.host)


@dataclass(frozen=True)
class _Target:
    url: str
    server: Any  # ldap3.Server
    starttls: bool


def _targets(config: DirectoryConfig) -> list[_Target]:
    tls = _VerifiedTls(config.ca_file) if config.ca_file else None
    out = []
    for url in config.urls:
        parts = urlsplit(url)
        secure = parts.scheme.lower() == "ldaps"
        host = parts.hostname or ""
        port = parts.port or (636 if secure else 389)
        server = ldap3.Server(host, port=port, use_ssl=secure, tls=tls if (
            secure or config.starttls) else None, get_info=ldap3.NONE,
            connect_timeout=config.timeout, mode=ldap3.IP_SYSTEM_DEFAULT)
        out.append(_Target(url, server, starttls=config.starttls and not secure))
    return out


@dataclass
class _Open:
    conn: Any  # ldap3.Connection
    url: str
    bound: bool  # the server accepted the credentials


class Directory:
    """Logins and groups from one directory (its servers tried in order)."""

    def __init__(self, config: DirectoryConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        wrong = config.problem()
        if wrong:
            raise ValueError(wrong)
        self.config = config
        self.clock = clock
        self._targets = _targets(config)
        self._down: dict[str, float] = {}  # url -> when it last failed to answer
        self._service: _Open | None = None  # the service account's connection
        self._verdict: tuple[float, str] | None = None  # when no URL answered, and why
        self._service_lock = threading.Lock()  # one operation at a time on it
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[str, tuple[str, ...], float]] = {}
        self._lock = threading.Lock()  # _verified and _down

    # --- what the token service asks ------------------------------------------------

    def login(self, name: str, password: str) -> DirectoryUser | None:
        """The person when the directory knows `name` and `password` is theirs; None
        for an unknown name, a wrong or empty password or an unusable name.
        DirectoryDown when no server answers."""
        secret = _octets(password)
        if not secret or not usable_name(name):
            return None
        found = self._find(name)
        if found is None:
            return None
        canonical, dn, stamp = found
        mark = self._mark(name, secret)
        if not self._remembered(mark, dn, stamp):
            if not self._bind_as(dn, secret):
                return None
            with self._lock:
                if len(self._verified) >= 10000:  # bounded, oldest first
                    self._verified.pop(next(iter(self._verified)))
                self._verified[mark] = (dn, stamp, self.clock() + VERIFIED_SECONDS)
        return DirectoryUser(canonical, dn, self._groups_of(canonical, dn))

    def groups(self, name: str) -> frozenset[str] | None:
        """The groups of `name` as the directory says now; None when the account is
        gone (or the name is unusable). DirectoryDown when no server answers."""
        if not usable_name(name):
            return None
        found = self._find(name)
        if found is None:
            return None
        canonical, dn, _ = found
        return self._groups_of(canonical, dn)

    def probe(self) -> str:
        """Bind as the service account and read the user base: the URL that answered
        (for `regops check`). DirectoryDown with the reason when that fails."""
        with self._service_lock:
            self._search_locked(self.config.user_base, "(objectClass=*)", [],
                                scope=ldap3.BASE)
            return self._service.url if self._service is not None else ""

    def close(self) -> None:
        with self._service_lock:
            self._drop_service()

    # --- the directory's answers ----------------------------------------------------

    def _find(self, name: str) -> tuple[str, str, tuple[str, ...]] | None:
        """(name as spelled there, DN, change marks) of the one entry the user filter
        finds; None for none or several."""
        entries = self._search(self.config.user_base,
                               _fill(self.config.user_filter, name=name),
                               [self.config.name_attribute, *STAMP_ATTRIBUTES], limit=2)
        if len(entries) != 1:
            return None
        dn, attributes = entries[0]
        spelled = _values(attributes, self.config.name_attribute)
        same = [s for s in spelled if s.casefold() == name.casefold()]
        canonical = same[0] if same else spelled[0] if spelled else name
        stamp = tuple(v for a in STAMP_ATTRIBUTES for v in _values(attributes, a))
        return canonical, dn, stamp

    def _groups_of(self, name: str, dn: str) -> frozenset[str]:
        entries = self._search(self.config.group_base,
                               _fill(self.config.group_filter, name=name, dn=dn),
                               [self.config.group_attribute])
        return frozenset(v for _, attributes in entries
                         for v in _values(attributes, self.config.group_attribute))

    def _mark(self, name: str, password: bytes) -> bytes:
        return hmac.new(self._key, name.encode() + b"\0" + password,
                        hashlib.sha256).digest()

    def _remembered(self, mark: bytes, dn: str, stamp: tuple[str, ...]) -> bool:
        with self._lock:
            seen = self._verified.get(mark)
        return seen is not None and seen[0] == dn and seen[1] == stamp and (
            seen[2] > self.clock())

    # --- connections ----------------------------------------------------------------

    def _order(self) -> list[_Target]:
        """The URLs in their order, those that failed lately last."""
        now = self.clock()
        with self._lock:
            down = {u for u, when in self._down.items() if now - when < DOWN_SECONDS}
        return ([t for t in self._targets if t.url not in down]
                + [t for t in self._targets if t.url in down])

    def _connect(self, dn: str, password: bytes) -> _Open:
        """A connection to the first server that answers, with the bind's verdict.
        DirectoryDown when none answers."""
        tried = []
        for target in self._order():
            # bytes go out as they are (ldap3 takes them; its stubs say str)
            conn = ldap3.Connection(
                target.server, user=dn, password=cast(str, password),
                authentication=ldap3.SIMPLE,
                auto_bind=ldap3.AUTO_BIND_NONE, client_strategy=ldap3.SYNC,
                receive_timeout=self.config.timeout, read_only=True,
                auto_referrals=False, raise_exceptions=False)
            try:
                conn.open()
                if target.starttls:
                    conn.start_tls()
                bound = bool(conn.bind()) and (conn.result or {}).get("result") == _SUCCESS
            except (LDAPException, OSError) as error:
                _close(conn)
                with self._lock:
                    self._down[target.url] = self.clock()
                tried.append(f"{target.url} ({_reason(error, password)})")
                continue
            with self._lock:
                self._down.pop(target.url, None)
            return _Open(conn, target.url, bound)
        raise DirectoryDown("no directory server answered: " + "; ".join(tried))

    def _bind_as(self, dn: str, password: bytes) -> bool:
        """Whether `password` is the entry's, on a fresh connection (closed after)."""
        if not password:  # an unauthenticated bind "succeeds": never one of those
            return False
        opened = self._connect(dn, password)
        _close(opened.conn)
        return opened.bound

    def _service_password(self) -> bytes:
        path = self.config.bind_password_file
        try:
            text = Path(path).read_bytes().strip(b"\r\n")
        except OSError as error:
            raise DirectoryDown(f"cannot read the directory service password file {path}: "
                                f"{error.strerror or error}") from None
        if not text:
            raise DirectoryDown(f"the directory service password file {path} is empty")
        return text

    def _open_service(self) -> _Open:
        """The service account's connection, bound. Waiting logins do not each wait
        for every URL to time out again: for VERDICT_SECONDS after none answered,
        the same DirectoryDown comes at once."""
        if self._verdict is not None and self.clock() - self._verdict[0] < VERDICT_SECONDS:
            raise DirectoryDown(self._verdict[1])
        try:
            opened = self._connect(self.config.bind_dn, self._service_password())
        except DirectoryDown as down:
            self._verdict = (self.clock(), str(down))
            raise
        self._verdict = None
        if not opened.bound:
            result = opened.conn.result or {}
            _close(opened.conn)
            raise DirectoryDown(
                f"{opened.url} refused the service account {self.config.bind_dn}: "
                f"{result.get('description') or 'bind failed'}")
        self._service = opened
        return opened

    def _drop_service(self) -> None:
        if self._service is not None:
            _close(self._service.conn)
            self._service = None

    def _search(self, base: str, search_filter: str, attributes: list[str],
                limit: int = 0) -> list[tuple[str, dict[str, list[bytes]]]]:
        with self._service_lock:
            return self._search_locked(base, search_filter, attributes, limit=limit)

    def _search_locked(self, base: str, search_filter: str, attributes: list[str],
                       limit: int = 0, scope: str = ldap3.SUBTREE
                       ) -> list[tuple[str, dict[str, list[bytes]]]]:
        """Entries (DN, raw attributes) on the service account's connection, opened
        when there is none; a connection that broke, or whose server says it is busy
        or unavailable, is replaced once."""
        for attempt in (1, 2):
            fresh = self._service is None
            opened = self._open_service() if self._service is None else self._service
            conn = opened.conn
            try:
                conn.search(base, search_filter, search_scope=scope,
                            attributes=attributes or [ldap3.NO_ATTRIBUTES],
                            size_limit=limit, time_limit=self.config.timeout)
            except (LDAPException, OSError) as error:
                self._drop_service()
                if attempt == 1 and not fresh:
                    continue
                raise DirectoryDown(f"the directory stopped answering: {opened.url} "
                                    f"({_reason(error, b'')})") from None
            result = conn.result or {}
            code = result.get("result")
            if code in _RETRY_CODES and attempt == 1:
                self._drop_service()
                continue
            if code == _NO_SUCH_OBJECT:
                return []
            if code not in (_SUCCESS, _SIZE_LIMIT):
                raise DirectoryDown(f"{opened.url} refused a search under {base}: "
                                    f"{result.get('description') or code}")
            return [(str(e["dn"]), dict(e.get("raw_attributes") or {}))
                    for e in conn.response or [] if e.get("type") == "searchResEntry"]
        raise DirectoryDown(f"the directory stopped answering under {base}")


def _values(attributes: Mapping[str, list[bytes]], name: str) -> list[str]:
    """An attribute's values as text, its name matched without regard to case."""
    for key, values in attributes.items():
        if key.lower() == name.lower():
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in values]
    return []


def _close(conn: Any) -> None:
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()

