"""S3 object storage as the registry sees it: where the bucket is, and whether it answers.

The deploy asks the bucket one signed question (list at most one key below the
root directory) from the operator's machine before any host changes, so a wrong
endpoint, bucket or key is one line instead of a registry that will not start.
Requests are signed with AWS Signature Version 4, written here on the standard
library (no SDK on the operator's machine). Credentials never appear in a
message, a repr or a log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import ssl
import urllib.parse
import xml.etree.ElementTree as ET
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


def aws_endpoint(region: str) -> str:
    return f"https://s3.{region}.amazonaws.com"


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


# What S3's error codes mean to an operator, in one phrase each.
_ERRORS = {
    "NoSuchBucket": "does not exist at {endpoint}",
    "InvalidAccessKeyId": "the access key is unknown to {endpoint}",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "AccessDenied": "the credentials may not list it",
    "AuthorizationHeaderMalformed": "the endpoint wants another region ({detail})",
    "PermanentRedirect": "lives in another region or endpoint ({detail})",
}


def send(method: str, scheme: str, host: str, path: str, credentials: Credentials,
         region: str, verify_tls: bool = True, timeout: float = 10.0) -> tuple[int, bytes]:
    """One signed request without a body: (status, body). Raises OSError if nothing answers."""
    headers = sign_v4(method, host, path, {}, credentials, region, dt.datetime.now(dt.UTC))
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
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _get(bucket: Bucket, credentials: Credentials, query: str, timeout: float
         ) -> tuple[int, bytes]:
    scheme, host, path = bucket.url(query)
    return send("GET", scheme, host, path, credentials, bucket.region, bucket.verify_tls,
                timeout)


def usage(bucket: Bucket, credentials: Credentials, below: str, timeout: float = 30.0
          ) -> tuple[int, int]:
    """(objects, bytes) below `below` (relative to the root directory), every page read.

    Raises OSError when the bucket does not answer as S3 does."""
    prefix = "/".join(p for p in (bucket.root.strip("/"), below.strip("/")) if p) + "/"
    count = total = 0
    token: str | None = None
    while True:
        params = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            params["continuation-token"] = token
        status, body = _get(bucket, credentials, urllib.parse.urlencode(params), timeout)
        if status != 200:
            raise OSError(f"listing {bucket.name!r} answered HTTP {status}")
        root = ET.fromstring(body)
        for element in root.iter():
            if element.tag.rsplit("}", 1)[-1] == "Size" and (element.text or "").isdigit():
                count += 1
                total += int(element.text or 0)
        found = {c.tag.rsplit("}", 1)[-1]: c.text for c in root}
        token = found.get("NextContinuationToken")
        if found.get("IsTruncated") != "true" or not token:
            return count, total


def check_bucket(bucket: Bucket, credentials: Credentials, timeout: float = 10.0
                 ) -> str | None:
    """None when the bucket lists with these credentials, else why not (one phrase)."""
    prefix = bucket.root.strip("/")
    query = urllib.parse.urlencode(
        {"list-type": "2", "max-keys": "1", **({"prefix": prefix + "/"} if prefix else {})}
    )
    try:
        status, body = _get(bucket, credentials, query, timeout)
    except ssl.SSLError as error:
        return f"TLS to {bucket.endpoint} failed: {error.reason or error}"
    except OSError as error:
        return f"{bucket.endpoint} does not answer: {error.strerror or error}"
    if status == 200:
        return None
    code, detail = _error_code(body)
    phrase = _ERRORS.get(code, "answered HTTP {status} {code}").format(
        endpoint=bucket.endpoint, detail=detail or code, status=status, code=code
    )
    return f"bucket {bucket.name!r}: {phrase.strip()}"


def _error_code(body: bytes) -> tuple[str, str]:
    """(Code, Region or Endpoint hint) of an S3 error document; blanks if it is none."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", ""
    found = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in root}
    hint = found.get("Region") or found.get("Endpoint") or ""
    return found.get("Code", ""), hint
