"""The token service over HTTP: the handler of the registry's token protocol (and of
the notifications' and the web pages' routes), the threaded server, and `serve`,
which wires config, tokens, notifications and pages together as the systemd unit
runs it (`python3 -m regops_token`).

    GET  /auth/token   Basic credentials or none; repeated or space-separated `scope`,
                       `service`, `account`, `offline_token`, `client_id`
    POST /auth/token   form: grant_type=password (username, password) or
                       grant_type=refresh_token (refresh_token); scope, service,
                       client_id, access_type=offline
    GET  /auth/health  200 when it can sign
    everything else    the web pages (`regops_token.web`), when the config has `web`

    and on a listener of its own, on Docker's bridge (`make_notify_handler`):
    POST /notify       the registry's notifications (bearer secret); nothing else

A password is checked with bcrypt once per token, not per request (and once per
two minutes for a client that logs in again and again); repeated failed logins
of one name from one address are refused for a while (`authn`). What a client sends is
bounded before it is matched or logged (`guard`); every read from a client has a
timeout, and at most MAX_CONNECTIONS are served at once. Every decision is one
JSON line in the audit log; so are the pushes and deletes the registry reports
(`notify`). Users and robots are re-read when their files change, so adding a
user needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from regops_token import guard, notify
from regops_token.authn import Busy, StoreUnavailable, Unavailable
from regops_token.config import Config
from regops_token.rules import ANONYMOUS, Subject
from regops_token.tokens import TokenService, scopes_of


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        gc_state=doc.get("gc_state", ""), audit=service.config.audit), today=service.today,
        oidc=make_provider(service), cli=service.authn.cli)


def make_provider(service: TokenService) -> Any:
    """The OpenID provider the web pages sign people in with (registry_oidc), or None."""
    if not service.config.oidc:
        return None
    from regops_token.oidc import OidcConfig, Provider

    config = OidcConfig.from_json(service.config.oidc)
    problem = config.problem()
    if problem:
        raise SystemExit(f"{problem} (in the token service's config)")
    with open(config.client_secret_file, encoding="utf-8") as f:
        return Provider(config, f.read().strip())


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


MAX_CONNECTIONS = 64  # connections served at once; more wait in the listen backlog
CLIENT_TIMEOUT = 30.0  # seconds any read from a client may take
NOTIFY_TIMEOUT = 10.0
LOOPBACK = ("127.0.0.1", "::1")


class _Base(BaseHTTPRequestHandler):
    """What both listeners share: no access log (the audit log says it all), bounded
    headers, a timeout on every read, header values checked, JSON answers."""

    server_version = "regops-token"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT
    deadline: float | None = None  # seconds to read a whole request in, from the connect

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self._watchdog: threading.Timer | None = None
        if self.deadline:
            self._watchdog = threading.Timer(self.deadline, self._cut)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _cut(self) -> None:
        """Past the deadline: the connection is shut, whatever the client is sending."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read(self) -> None:
        """The request is read: the deadline no longer applies."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    def finish(self) -> None:
        self._read()
        super().finish()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if sum(len(k) + len(v) + 4 for k, v in self.headers.items()) > guard.MAX_HEADER_BYTES:
            self.send_error(431, "Request Header Fields Too Large")
            return False
        return True

    def _respond(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        """One answer; a header value with CR or LF is never sent (a 500 instead)."""
        if not all(guard.header_safe(k) and guard.header_safe(v) for k, v in headers):
            status, body = 500, b'{"errors":[{"code":"UNKNOWN","message":"bad header"}]}'
            headers = [("Content-Type", "application/json")]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send(self, status: int, doc: Mapping[str, Any], extra: Mapping[str, str] = {}) -> None:
        self._respond(status, json.dumps(doc).encode(), [
            ("Content-Type", "application/json"), ("Cache-Control", "no-store"),
            *extra.items()])

    def _error(self, status: int, code: str, message: str,
               extra: Mapping[str, str] = {}) -> None:
        if status == 401:
            extra = {"WWW-Authenticate": 'Basic realm="regops"', **extra}
        self._send(
            status,
            {
                "errors": [{"code": code, "message": message}],
                "error": code.lower(),
                "error_description": message,
            },
            extra,
        )

    def _body(self, limit: int) -> str | None:
        """The request body within `limit` bytes; None (answered) when it is not."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._error(411, "UNSUPPORTED", "a request body needs a Content-Length")
            return None
        try:
            length = guard.content_length(self.headers.get("Content-Length"), limit)
        except guard.Refused as refused:
            self.close_connection = True
            status = 413 if isinstance(refused, guard.TooLarge) else 400
            self._error(status, "SIZE_INVALID" if status == 413 else "UNSUPPORTED",
                        str(refused))
            return None
        return self.rfile.read(length).decode(errors="replace")


def make_notify_handler(service: TokenService, web: Any = None
                        ) -> type[BaseHTTPRequestHandler]:
    """The registry's notifications, on their own listener (Docker's bridge, where any
    container on the host can connect): POST /notify with the bearer secret, and
    nothing else; no address from a header is believed."""

    class NotifyHandler(_Base):
        timeout = NOTIFY_TIMEOUT
        deadline = NOTIFY_TIMEOUT  # a client sending a byte now and then is cut too

        def handle(self) -> None:
            self.handle_one_request()  # one request per connection, under its deadline

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._error(404, "NOT_FOUND", "only POST /notify is served here")

        do_HEAD = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if urlsplit(self.path).path != "/notify":
                self._error(404, "NOT_FOUND", "only POST /notify is served here")
                return
            if not notify.authorized(service.config.notify_secret_file,
                                     self.headers.get("Authorization", "")):
                self.close_connection = True
                self._error(401, "UNAUTHORIZED", "no")
                return
            body = self._body(guard.MAX_NOTIFY_BODY)
            if body is None:
                return
            self._read()
            notify.deliver(body, service.audit, service.label, web)
            self._send(200, {"ok": True})

    return NotifyHandler


def make_handler(service: TokenService, web: Any = None) -> type[BaseHTTPRequestHandler]:
    class Handler(_Base):
        def _address(self) -> str:
            """The client's address: nginx's X-Real-IP when nginx (on loopback) sent
            the request, else the peer's own."""
            peer = self.client_address[0]
            real = self.headers.get("X-Real-IP", "").strip()
            return guard.clip(real, 64) if real and peer in LOOPBACK else peer

        def _busy(self, busy: Busy) -> None:
            self._error(429, "TOOMANYREQUESTS", str(busy),
                        {"Retry-After": str(busy.retry_after)})

        def _unavailable(self, error: Unavailable) -> None:
            if isinstance(error, StoreUnavailable):
                print(f"regops-token: {error}", file=sys.stderr, flush=True)
                message = ("the CLI secrets' store does not answer; CLI secrets cannot log "
                           "in now (local accounts can)")
            else:
                message = ("the directory does not answer; its people cannot log in now "
                           "(local accounts can)")
            self._error(503, "UNAVAILABLE", message, {"Retry-After": "10"})

        def _login(self, name: str, password: str) -> Subject | None:
            """The subject these credentials name; None when they do not, answered
            (401, 429 past the limits, 503 when the directory is down)."""
            try:
                found, _ = service.authenticate(name, password, self._address())
            except Busy as busy:
                self._busy(busy)
                return None
            except Unavailable as error:
                self._unavailable(error)
                return None
            if found is None:
                self._error(401, "UNAUTHORIZED", "incorrect username or password")
            return found

        def _refused(self, refused: guard.Refused) -> None:
            service.audit("token_refused", client_ip=self._address(), reason=str(refused))
            self._error(400, "UNSUPPORTED", str(refused))

        def _service_ok(self, params: Mapping[str, list[str]]) -> bool:
            asked = params.get("service", [service.config.service])[0]
            if asked != service.config.service:
                self._error(400, "UNSUPPORTED", f"unknown service {guard.clip(asked, 64)!r}")
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
            try:
                scopes = scopes_of(params.get("scope", []))
            except guard.Refused as refused:
                self._refused(refused)
                return
            credentials = _basic(self.headers.get("Authorization"))
            subject = Subject(ANONYMOUS)
            if credentials:
                found = self._login(*credentials)
                if found is None:
                    return
                subject = found
            offline = params.get("offline_token", ["false"])[0].lower() == "true"
            self._answer(
                subject,
                scopes,
                guard.clip(params.get("client_id", [""])[0], 64),
                offline,
                post=False,
                via="GET basic" if credentials else "GET anonymous",
            )

        def _web(self, method: str, path: str, query: str, body: str) -> None:
            if web is None or path.startswith("/auth/") or path == "/notify":
                self._error(404, "NOT_FOUND", "no such endpoint")
                return
            try:
                response = web.respond(method, unquote(path), query,
                                       {k.lower(): v for k, v in self.headers.items()}, body,
                                       self._address())
            except Busy as busy:
                self._busy(busy)
                return
            self._respond(response.status, response.body, response.headers)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            body = self._body(guard.MAX_BODY)
            if body is None:
                return
            if url.path != "/auth/token":
                self._web("POST", url.path, url.query, body)
                return
            params = parse_qs(body)
            if not self._service_ok(params):
                return
            grant = params.get("grant_type", [""])[0]
            client = guard.clip(params.get("client_id", [""])[0], 64)
            try:
                scopes = scopes_of(params.get("scope", []))
            except guard.Refused as refused:
                self._refused(refused)
                return
            offline = params.get("access_type", [""])[0] == "offline"
            if grant == "password":
                found = self._login(params.get("username", [""])[0],
                                    params.get("password", [""])[0])
                if found is None:
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
                self._error(400, "UNSUPPORTED",
                            f"grant_type {guard.clip(grant, 32)!r} is not supported")

    return Handler


class Server(ThreadingHTTPServer):
    """A thread per connection, at most `limit` at once: past that, connections wait in
    the listen backlog until one ends (each read times out, so none is held for
    long). A client that hangs up mid-request (a closed tab, nginx dropping an idle
    connection) is not an error worth a traceback in the journal."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 limit: int = MAX_CONNECTIONS) -> None:
        self.slots = threading.BoundedSemaphore(limit)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

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
    host, port = interface_address(config.listen)
    servers = [Server((host, port), make_handler(service, web))]
    if config.notify_listen:
        for attempt in range(60):  # the bridge comes up with Docker
            try:
                servers.append(
                    Server(interface_address(config.notify_listen),
                           make_notify_handler(service, web), limit=8)
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
