"""A small client for the registry HTTP API (OCI distribution spec).

Standard library only, so it runs anywhere the CLI runs. It follows the
API's pagination, sends the Accept headers that make the registry answer with
the manifest actually stored (Docker v2, OCI, lists and indexes), and never
puts credentials in errors or reprs.

It keeps connections open (one per thread and server) and speaks both ways the
registry asks for credentials: Basic (htpasswd) and the token protocol. For a
Bearer challenge it asks the realm for a token with its login (or anonymously,
when told to), keeps it per scope until shortly before it expires, and sends it
up front for the next request that needs the same scope: a password is checked
once per token, not per request.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from regops.errors import RegopsError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]


class RegistryError(RegopsError):
    """An API call failed; `status` is the HTTP status (0 when there was none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class RegistryClient:
    """`url` like https://registry.example.com:5000; `ca_file` None uses system trust.
    Without a login, tokens are only fetched when `anonymous_tokens` is set."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 30.0
    anonymous_tokens: bool = False

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._context = ssl.create_default_context(cafile=self.ca_file)
        self._local = threading.local()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._fetching: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._basic = False  # the registry asked for Basic credentials

    # ------------------------------------------------------------------ transport

    def _connection(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        key = (scheme, host, port)
        if key not in pool:
            pool[key] = (
                http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                            context=self._context)
                if scheme == "https"
                else http.client.HTTPConnection(host, port, timeout=self.timeout)
            )
        return pool[key]

    def _send(self, method: str, url: str, headers: dict[str, str], data: bytes | None
              ) -> Response:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme or "https"
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            connection = self._connection(scheme, parts.hostname or "", port)
            reused = connection.sock is not None
            try:
                connection.request(method, target, body=data, headers=headers)
                answer = connection.getresponse()
                body = answer.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.BadStatusLine, ssl.SSLEOFError) as error:
                # A kept-alive connection the server had closed (over TLS: an EOF, as when
                # the front door reloads and its old workers let idle connections go).
                connection.close()
                if reused and attempt == 1:
                    continue
                raise RegistryError(f"{self.url}: {error}") from None
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                reason = getattr(error, "reason", None) or getattr(error, "strerror", None)
                raise RegistryError(f"{self.url}: {reason or error}") from None
            if (answer.getheader("Connection") or "").lower() == "close":
                connection.close()
            return Response(answer.status, dict(answer.getheaders()), body)
        raise RegistryError(f"{self.url}: no answer")  # pragma: no cover

    # ------------------------------------------------------------------ credentials

    def _basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return f"Basic {base64.b64encode(raw).decode()}"

    def _cached(self, scope: str) -> str | None:
        with self._lock:
            found = self._tokens.get(scope)
        return found[0] if found and found[1] > time.monotonic() else None

    def _fetch_token(self, challenge: str, scope: str, stale: str | None) -> str | None:
        """One login per scope at a time: threads that start together (prune's
        workers) wait for the first one's token instead of each paying a bcrypt."""
        with self._lock:
            lock = self._fetching.setdefault(scope, threading.Lock())
        with lock:
            fresh = self._cached(scope)
            if fresh and fresh != stale:
                return fresh
            return self._login(challenge, scope)

    def _login(self, challenge: str, scope: str) -> str | None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.get("realm")
        if not realm:
            return None
        query = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in params.get("scope", "").split() if s]
        if self.username is not None:
            query.append(("account", self.username))
        url = f"{realm}{'&' if '?' in realm else '?'}{urllib.parse.urlencode(query)}"
        headers = {"Authorization": self._basic_header()} if self.username is not None else {}
        answer = self._send("GET", url, headers, None)
        if answer.status != 200:
            raise RegistryError(f"token from {realm}: HTTP {answer.status}", answer.status)
        doc = answer.json()
        token = str(doc.get("token") or doc.get("access_token") or "")
        lifetime = max(30, int(doc.get("expires_in") or 60))
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + lifetime - 20)
        return token

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        auth: bool = True,
    ) -> Response:
        """One call; HTTP errors come back as a Response, transport errors raise."""
        target = path if path.startswith("http") else f"{self.url}{path}"
        sent = dict(headers or {})
        scope = _scope_for(method, urllib.parse.urlsplit(target).path)
        if auth:
            token = self._cached(scope)
            if token:
                sent["Authorization"] = f"Bearer {token}"
            elif self._basic and self.username is not None:
                sent["Authorization"] = self._basic_header()
        answer = self._send(method, target, sent, data)
        if answer.status != 401 or not auth:
            return answer
        challenge = _header(answer.headers, "WWW-Authenticate")
        if challenge.lower().startswith("bearer ") and (
            self.username is not None or self.anonymous_tokens
        ):
            try:
                stale = sent.get("Authorization", "").removeprefix("Bearer ") or None
                token = self._fetch_token(challenge, scope, stale)
            except RegistryError as error:
                if error.status != 401:
                    raise
                return _refused(answer, self.username)
            if token:
                sent["Authorization"] = f"Bearer {token}"
                return self._send(method, target, sent, data)
        elif challenge.lower().startswith("basic ") and self.username is not None and (
            "Authorization" not in sent
        ):
            self._basic = True
            sent["Authorization"] = self._basic_header()
            return self._send(method, target, sent, data)
        return answer

    def _ok(self, response: Response, what: str, expected: tuple[int, ...] = (200,)) -> Response:
        if response.status not in expected:
            detail = ""
            try:
                errors = response.json().get("errors") or []
                detail = "; ".join(e.get("message", "") for e in errors)
            except (ValueError, AttributeError):
                pass
            raise RegistryError(
                f"{what}: HTTP {response.status} {detail}".rstrip(), response.status
            )
        return response

    def ping(self) -> int:
        return self.request("GET", "/v2/").status

    def _paged(self, path: str, key: str, page_size: int) -> list[str]:
        items: list[str] = []
        next_path: str | None = f"{path}?n={page_size}"
        while next_path:
            response = self._ok(self.request("GET", next_path), f"GET {path}")
            items.extend(response.json().get(key) or [])
            next_path = _next_link(response.headers)
        return items

    def catalog(self, page_size: int = 100) -> list[str]:
        return self._paged("/v2/_catalog", "repositories", page_size)

    def tags(self, repository: str, page_size: int = 100) -> list[str]:
        return self._paged(f"/v2/{repository}/tags/list", "tags", page_size)

    def _manifest_call(
        self, method: str, repository: str, reference: str
    ) -> tuple[dict[str, str], bytes]:
        """GET or HEAD of a manifest as stored; (lower-cased headers, body)."""
        response = self._ok(
            self.request(
                method,
                f"/v2/{repository}/manifests/{reference}",
                headers={"Accept": ", ".join(MANIFEST_TYPES)},
            ),
            f"manifest {repository}:{reference}",
        )
        return {k.lower(): v for k, v in response.headers.items()}, response.body

    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes]:
        """(digest, media type, body) of the manifest as stored."""
        headers, body = self._manifest_call("GET", repository, reference)
        return (
            headers.get("docker-content-digest", ""),
            headers.get("content-type", "").split(";")[0],
            body,
        )

    def digest(self, repository: str, reference: str) -> str:
        headers, _ = self._manifest_call("HEAD", repository, reference)
        return headers["docker-content-digest"]

    def delete_manifest(self, repository: str, digest: str) -> None:
        self._ok(
            self.request("DELETE", f"/v2/{repository}/manifests/{digest}"),
            f"delete {repository}@{digest}",
            expected=(202,),
        )

    def blob(self, repository: str, digest: str) -> bytes:
        return self._ok(
            self.request("GET", f"/v2/{repository}/blobs/{digest}"), f"blob {repository}@{digest}"
        ).body


def _refused(answer: Response, username: str | None) -> Response:
    """The registry's 401, saying why: the token service refused the login."""
    message = (f"the token service refused the login of {username!r} (wrong password, "
               "unknown user, or an expired or revoked robot)")
    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": message}]}).encode()
    return Response(401, answer.headers, body)


def _header(headers: dict[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")


_REPOSITORY_PATH = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags)(/|$)")


def _scope_for(method: str, path: str) -> str:
    """The token scope a request needs, as the registry will ask for it."""
    if path.rstrip("/") == "/v2":
        return ""
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    match = _REPOSITORY_PATH.match(path)
    if not match:
        return path
    action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "pull,push")
    return f"repository:{match[1]}:{action}"


def _next_link(headers: dict[str, str]) -> str | None:
    """The `Link: </v2/...>; rel="next"` header the registry sends while more pages exist."""
    for name, value in headers.items():
        if name.lower() == "link" and 'rel="next"' in value:
            target = value.split(";")[0].strip().strip("<>")
            parsed = urllib.parse.urlsplit(target)
            return urllib.parse.urlunsplit(("", "", parsed.path, parsed.query, ""))
    return None
