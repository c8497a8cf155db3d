"""The token service: the registry's token endpoint, and its audit of who did what.

    GET  /auth/token   Basic credentials or none; repeated or space-separated `scope`,
                       `service`, `account`, `offline_token`, `client_id`
    POST /auth/token   form: grant_type=password (username, password) or
                       grant_type=refresh_token (refresh_token); scope, service,
                       client_id, access_type=offline
    GET  /auth/health  200 when it can sign
    POST /notify       the registry's notifications (its own listener, bearer secret)
    everything else    the web pages (`regops_token.web`), when the config has `web`

A password is checked with bcrypt once per token, not per request (and once per
two minutes for a client that logs in again and again); repeated failed logins
of one name from one address are slowed down. Every decision is one JSON line in
the audit log; so are the pushes and deletes the registry reports.
Users and robots are re-read when their files change, so adding a user needs no
restart. Standard library plus `cryptography` and `bcrypt` (and `jinja2` for the
web pages), as Debian packages them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from regops_token import jws
from regops_token.audit import Audit
from regops_token.rules import ANONYMOUS, Policy, Subject, policy_from_json

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# A bcrypt hash to compare against when the name is unknown, so that a wrong name
# and a wrong password take the same time.
_DUMMY_HASH = bcrypt.hashpw(b"regops-dummy", bcrypt.gensalt(10))
VERIFIED_SECONDS = 120  # how long a verified password skips bcrypt (see Htpasswd.check)


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
        )


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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_scope(text: str) -> tuple[str, str, list[str]] | None:
    """`repository:team/app:pull,push` -> ("repository", "team/app", ["pull", "push"])."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    kind = kind.split("(", 1)[0]  # repository(plugin) is a repository
    return kind, name, [a for a in actions.split(",") if a]


def scopes_of(values: list[str]) -> list[tuple[str, str, list[str]]]:
    """Repeated and space-separated scopes, parsed, unparsable ones dropped."""
    found = []
    for value in values:
        for text in value.split():
            parsed = parse_scope(text)
            if parsed:
                found.append(parsed)
    return found


class TokenService:
    """Everything the handler needs, built once from the config."""

    def __init__(self, config: Config, today: Callable[[], date] = date.today) -> None:
        self.config = config
        self.users = Htpasswd(config.users)
        self.robots = Htpasswd(config.robots)
        self.throttle = Throttle()
        self.audit = Audit(config.audit)
        self.today = today
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

    # ------------------------------------------------------------------ login

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

    def refresh_token(self, subject: Subject) -> str:
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
        return jws.sign(claims, self.key, self.chain[:1])

    def _fingerprint(self, subject: Subject) -> str:
        source = self.users if subject.kind == "user" else self.robots
        return source.fingerprint(subject.name)

    def from_refresh_token(self, token: str, address: str) -> tuple[Subject | None, str]:
        try:
            claims = jws.verify(token, self.chain[0].public_key())  # type: ignore[arg-type]
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


def make_web(service: TokenService) -> Any:
    """The web pages, when the config asks for them (else None)."""
    if not service.config.web:
        return None
    from regops_token.backend import Backend
    from regops_token.catalog import Catalog
    from regops_token.web import Web, WebConfig

    doc = service.config.web
    catalog = Catalog(Backend([int(p) for p in doc["registry_ports"]], service.mint))
    service.audit.listeners.append(catalog.history.record)
    return Web(service, catalog, WebConfig(
        address=doc["address"], gc_schedule=doc.get("gc_schedule"),
        gc_state=doc.get("gc_state", ""), audit=service.config.audit), today=service.today)


def load_chain(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file (cryptography 38, Debian 12's, has no helper)."""
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    return [x509.load_pem_x509_certificate(block.strip() + b"\n") for block in blocks]


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


def make_handler(service: TokenService, web: Any = None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "regops-token"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # the audit log says it all
            pass

        def _address(self) -> str:
            return self.headers.get("X-Real-IP") or self.client_address[0]

        def _send(self, status: int, doc: Mapping[str, Any], extra: Mapping[str, str] = {}) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            extra = {"WWW-Authenticate": 'Basic realm="regops"'} if status == 401 else {}
            self._send(
                status,
                {
                    "errors": [{"code": code, "message": message}],
                    "error": code.lower(),
                    "error_description": message,
                },
                extra,
            )

        def _service_ok(self, params: Mapping[str, list[str]]) -> bool:
            asked = params.get("service", [service.config.service])[0]
            if asked != service.config.service:
                self._error(400, "UNSUPPORTED", f"unknown service {asked!r}")
                return False
            return True

        def _answer(
            self,
            subject: Subject,
            scopes: list[tuple[str, str, list[str]]],
            client: str,
            offline: bool,
            post: bool,
            refresh: str | None = None,
            via: str = "",
        ) -> None:
            token, ttl, _ = service.issue(subject, scopes, self._address(), client, via)
            doc: dict[str, Any] = {
                "token": token,
                "access_token": token,
                "expires_in": ttl,
                "issued_at": _now(),
            }
            if post:
                doc["scope"] = " ".join(f"{k}:{n}:{','.join(a)}" for k, n, a in scopes)
            if refresh:
                doc["refresh_token"] = refresh
            elif offline and subject.kind != ANONYMOUS:
                doc["refresh_token"] = service.refresh_token(subject)
            self._send(200, doc)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            if url.path == "/auth/health":
                service._load_key()
                self._send(200, {"ok": True})
                return
            if url.path != "/auth/token":
                self._web("GET", url.path, url.query, "")
                return
            params = parse_qs(url.query)
            if not self._service_ok(params):
                return
            credentials = _basic(self.headers.get("Authorization"))
            subject = Subject(ANONYMOUS)
            if credentials:
                found, why = service.authenticate(*credentials, self._address())
                if found is None:
                    self._error(401, "UNAUTHORIZED", "incorrect username or password")
                    return
                subject = found
            offline = params.get("offline_token", ["false"])[0].lower() == "true"
            self._answer(
                subject,
                scopes_of(params.get("scope", [])),
                params.get("client_id", [""])[0],
                offline,
                post=False,
                via="GET basic" if credentials else "GET anonymous",
            )

        def _web(self, method: str, path: str, query: str, body: str) -> None:
            if web is None or path.startswith("/auth/"):
                self._error(404, "NOT_FOUND", "no such endpoint")
                return
            response = web.respond(method, unquote(path), query,
                                   {k.lower(): v for k, v in self.headers.items()}, body,
                                   self._address())
            self.send_response(response.status)
            self.send_header("Content-Length", str(len(response.body)))
            for key, value in response.headers:
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(response.body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20)).decode(errors="replace")
            if url.path == "/notify":
                self._notify(body)
                return
            if url.path != "/auth/token":
                self._web("POST", url.path, url.query, body)
                return
            params = parse_qs(body)
            if not self._service_ok(params):
                return
            grant = params.get("grant_type", [""])[0]
            client = params.get("client_id", [""])[0]
            scopes = scopes_of(params.get("scope", []))
            offline = params.get("access_type", [""])[0] == "offline"
            if grant == "password":
                name = params.get("username", [""])[0]
                found, _ = service.authenticate(
                    name, params.get("password", [""])[0], self._address()
                )
                if found is None:
                    self._error(401, "UNAUTHORIZED", "incorrect username or password")
                    return
                self._answer(found, scopes, client, offline, post=True, via="POST password")
            elif grant == "refresh_token":
                token = params.get("refresh_token", [""])[0]
                found, why = service.from_refresh_token(token, self._address())
                if found is None:
                    service.audit("refresh_refused", client_ip=self._address(), reason=why)
                    self._error(401, "UNAUTHORIZED", why)
                    return
                self._answer(found, scopes, client, offline, post=True, refresh=token,
                             via="POST refresh_token")
            else:
                self._error(400, "UNSUPPORTED", f"grant_type {grant!r} is not supported")

        def _notify(self, body: str) -> None:
            secret = _read_secret(service.config.notify_secret_file)
            given = self.headers.get("Authorization", "")
            if not secret or not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
                self._error(401, "UNAUTHORIZED", "no")
                return
            try:
                events = json.loads(body).get("events", [])
            except (ValueError, AttributeError):
                events = []
            for event in events:
                recorded = record_event(service.audit, event, service.label)
                if web is not None and recorded:
                    target = event.get("target") or {}
                    web.catalog.notified(str(event.get("action")), recorded,
                                         target.get("tag"), target.get("digest"))
            self._send(200, {"ok": True})

    return Handler


def _read_secret(path: str | None) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def record_event(audit: Callable[..., None], event: Mapping[str, Any],
                 label: Callable[[str], str] = lambda name: name) -> str | None:
    """A registry notification as an audit line: manifest pushes and deletes, with the
    actor (the token's subject) named as token decisions name it. Returns the
    repository of what it recorded."""
    action = event.get("action")
    target = event.get("target") or {}
    if action == "delete" or (action == "push" and target.get("mediaType") in MANIFEST_TYPES):
        actor = (event.get("actor") or {}).get("name")
        audit(
            action,
            subject=label(actor) if actor else ANONYMOUS,
            repository=target.get("repository"),
            tag=target.get("tag"),
            digest=target.get("digest"),
            client_ip=((event.get("request") or {}).get("addr") or "").rsplit(":", 1)[0],
        )
        return str(target.get("repository") or "") or None
    return None


class Server(ThreadingHTTPServer):
    """A client that hangs up mid-request (a closed tab, nginx dropping an idle
    connection) is not an error worth a traceback in the journal."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def interface_address(spec: str) -> tuple[str, int]:
    """`docker0:5021` -> (the interface's IPv4 address, 5021); `127.0.0.1:5021` as is."""
    host, _, port = spec.rpartition(":")
    if host and not host[0].isdigit():
        import fcntl
        import socket
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(
                s.fileno(),
                0x8915,  # SIOCGIFADDR
                struct.pack("256s", host.encode()[:15]),
            )
        host = socket.inet_ntoa(packed[20:24])
    return host, int(port)


def serve(config_path: str) -> None:
    config = Config.load(config_path)
    service = TokenService(config)
    web = make_web(service)
    if web is not None:
        web.catalog.run_indexer(audit_path=config.audit)
    handler = make_handler(service, web)
    host, port = interface_address(config.listen)
    servers = [Server((host, port), handler)]
    if config.notify_listen:
        for attempt in range(60):  # the bridge comes up with Docker
            try:
                servers.append(
                    Server(interface_address(config.notify_listen), handler)
                )
                break
            except OSError:
                if attempt == 59:
                    raise
                time.sleep(1)
    for extra in servers[1:]:
        threading.Thread(target=extra.serve_forever, daemon=True).start()
    print(f"regops-token: serving {config.service} on {host}:{port}", file=sys.stderr, flush=True)
    servers[0].serve_forever()
