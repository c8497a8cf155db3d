"""A small client for the registry HTTP API (OCI distribution spec).

Standard library only, so it runs anywhere the CLI runs. It follows the
API's pagination, sends the Accept headers that make the registry answer with
the manifest actually stored (Docker v2, OCI, lists and indexes), and never
puts credentials in errors or reprs.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
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
    """`url` like https://registry.example.com:5000; `ca_file` None uses system trust."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._context = ssl.create_default_context(cafile=self.ca_file)

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
        req = urllib.request.Request(target, method=method, data=data, headers=headers or {})
        if auth and self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as answer:
                return Response(answer.status, dict(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers.items()), error.read())
        except urllib.error.URLError as error:
            raise RegistryError(f"{self.url}: {error.reason}") from None

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


def _next_link(headers: dict[str, str]) -> str | None:
    """The `Link: </v2/...>; rel="next"` header the registry sends while more pages exist."""
    for name, value in headers.items():
        if name.lower() == "link" and 'rel="next"' in value:
            target = value.split(";")[0].strip().strip("<>")
            parsed = urllib.parse.urlsplit(target)
            return urllib.parse.urlunsplit(("", "", parsed.path, parsed.query, ""))
    return None
