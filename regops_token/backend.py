"""The registry as the web pages read it: on loopback, with tokens this service signs
for itself, one kept-alive connection per thread.

The registry listens on its primary port, or on the standby port while it is
replaced or collected (read-only then); a refused connection tries the other.
Reads carry the subject `regops-web` and exactly the scope they need; a delete
carries the user's own name, so the registry's notification (and the audit
log) names who deleted."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
READER = "regops-web"
# Signs a token: (subject, [(type, name, actions)]) -> (token, lifetime in seconds).
Mint = Callable[[str, list[tuple[str, str, list[str]]]], tuple[str, int]]


class BackendError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Backend:
    def __init__(self, ports: list[int], mint: Mint, timeout: float = 30.0) -> None:
        self.ports = ports
        self.mint = mint
        self.timeout = timeout
        self._local = threading.local()
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _token(self, subject: str, scope: tuple[str, str, list[str]]) -> str:
        key = (subject, ":".join((scope[0], scope[1], ",".join(scope[2]))))
        now = time.monotonic()
        with self._lock:
            found = self._tokens.get(key)
        if found and found[1] > now:
            return found[0]
        token, ttl = self.mint(subject, [scope])
        with self._lock:
            if len(self._tokens) > 4096:
                self._tokens.clear()
            self._tokens[key] = (token, now + max(1, ttl - 30))
        return token

    def _connection(self, port: int) -> http.client.HTTPConnection:
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {})
        if port not in conns:
            conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        return conns[port]

    def request(
        self, method: str, path: str, scope: tuple[str, str, list[str]],
        subject: str = READER, accept: str = "", client_ip: str = "",
    ) -> Answer:
        headers = {"Authorization": f"Bearer {self._token(subject, scope)}"}
        if accept:
            headers["Accept"] = accept
        if client_ip:  # the registry's notification then names the person's address
            headers["X-Real-IP"] = client_ip
        last: Exception | None = None
        for port in self.ports:
            for attempt in range(2):  # a kept-alive connection the registry closed: once more
                conn = self._connection(port)
                try:
                    conn.request(method, path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    return Answer(response.status, {k.lower(): v for k, v in
                                                    response.getheaders()}, body)
                except ConnectionRefusedError as error:
                    conn.close()
                    last = error
                    break  # try the other port
                except (http.client.HTTPException, OSError) as error:
                    conn.close()
                    last = error
                    if attempt:
                        break
        raise BackendError(503, f"the registry does not answer on loopback ({last})")

    # ------------------------------------------------------------------ the API

    def catalog(self) -> list[str]:
        names: list[str] = []
        path = "/v2/_catalog?n=1000"
        while path:
            answer = self._ok(self.request("GET", path, ("registry", "catalog", ["*"])))
            names += answer.json().get("repositories") or []
            path = _next_link(answer.headers.get("link", ""))
        return names

    def tags(self, repository: str) -> list[str]:
        tags: list[str] = []
        path = f"/v2/{quote(repository)}/tags/list?n=1000"
        while path:
            answer = self.request("GET", path, ("repository", repository, ["pull"]))
            if answer.status == 404:
                return []
            tags += self._ok(answer).json().get("tags") or []
            path = _next_link(answer.headers.get("link", ""))
        return tags

    def digest(self, repository: str, reference: str) -> str | None:
        answer = self.request("HEAD", f"/v2/{quote(repository)}/manifests/{quote(reference)}",
                              ("repository", repository, ["pull"]), accept=MANIFEST_ACCEPT)
        if answer.status == 404:
            return None
        return self._ok(answer).headers.get("docker-content-digest")

    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes]:
        answer = self._ok(self.request(
            "GET", f"/v2/{quote(repository)}/manifests/{quote(reference)}",
            ("repository", repository, ["pull"]), accept=MANIFEST_ACCEPT))
        return (answer.headers.get("docker-content-digest", ""),
                answer.headers.get("content-type", ""), answer.body)

    def blob(self, repository: str, digest: str) -> bytes:
        return self._ok(self.request("GET", f"/v2/{quote(repository)}/blobs/{digest}",
                                     ("repository", repository, ["pull"]))).body

    def delete_manifest(self, repository: str, digest: str, user: str,
                        client_ip: str = "") -> None:
        self._ok(self.request("DELETE", f"/v2/{quote(repository)}/manifests/{digest}",
                              ("repository", repository, ["delete"]), subject=user,
                              client_ip=client_ip))

    @staticmethod
    def _ok(answer: Answer) -> Answer:
        if answer.status < 300:
            return answer
        try:
            message = answer.json()["errors"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            message = answer.body[:200].decode(errors="replace")
        raise BackendError(answer.status, message or f"HTTP {answer.status}")


def _next_link(header: str) -> str:
    """`</v2/_catalog?last=x&n=1000>; rel="next"` -> the path."""
    if 'rel="next"' not in header:
        return ""
    start, end = header.find("<"), header.find(">")
    return header[start + 1:end] if 0 <= start < end else ""
