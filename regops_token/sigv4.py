"""AWS Signature Version 4 for S3, and one signed request: what both the operator's
checks of a bucket (`regops.storage.s3`) and the token service's shared store
(`regops_token.shared`) send, on the standard library alone (hosts install no SDK
for a handful of small requests). Credentials never appear in a message, a repr or
a log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    source: str  # env or file


@dataclass(frozen=True)
class Bucket:
    """One bucket at one endpoint, as the registry's s3 driver is configured with it."""

    endpoint: str  # scheme://host[:port], no path
    region: str
    name: str
    root: str  # "" or "/some/prefix"
    path_style: bool
    verify_tls: bool

    @property
    def secure(self) -> bool:
        return self.endpoint.startswith("https://")

    def url(self, query: str = "") -> tuple[str, str, str]:
        """(scheme, host[:port], path?query) of the bucket itself."""
        parts = urllib.parse.urlsplit(self.endpoint)
        host, path = parts.netloc, f"/{self.name}/" if self.path_style else "/"
        if not self.path_style:
            host = f"{self.name}.{host}"
        return parts.scheme, host, path + (f"?{query}" if query else "")


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(pairs))


def sign_v4(
    method: str,
    host: str,
    path_and_query: str,
    headers: Mapping[str, str],
    credentials: Credentials,
    region: str,
    now: dt.datetime,
    payload_sha256: str = EMPTY_SHA256,
) -> dict[str, str]:
    """The request's headers with `x-amz-date`, `x-amz-content-sha256` and `Authorization`.

    `path_and_query` is already URI-encoded (as sent); S3 signs the path as is.
    """
    path, _, query = path_and_query.partition("?")
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    signed = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed.update({"host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256})
    names = sorted(signed)
    canonical = "\n".join([
        method, path, canonical_query(query),
        "".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names), payload_sha256,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest(),
    ])
    key = _sign(f"AWS4{credentials.secret_key}".encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _sign(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {k: v for k, v in headers.items()}
    out.update({"x-amz-date": stamp, "x-amz-content-sha256": payload_sha256})
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


def send(method: str, scheme: str, host: str, path: str, credentials: Credentials,
         region: str, verify_tls: bool = True, timeout: float = 10.0, body: bytes = b"",
         headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """One signed request: (status, body). Raises OSError if nothing answers."""
    payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    signed = sign_v4(method, host, path, dict(headers or {}), credentials, region,
                     dt.datetime.now(dt.UTC), payload)
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context()
        if not verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=signed)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
