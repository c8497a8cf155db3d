"""S3 object storage as the registry sees it: where the bucket is, and whether it answers.

The deploy asks the bucket one signed question (list at most one key below the
root directory) from the operator's machine before any host changes, so a wrong
endpoint, bucket or key is one line instead of a registry that will not start.
Requests are signed with AWS Signature Version 4 (`regops_token.sigv4`, standard
library only, no SDK on the operator's machine). Credentials never appear in a
message, a repr or a log.
"""

from __future__ import annotations

import ssl
import urllib.parse
import xml.etree.ElementTree as ET

from regops_token.sigv4 import EMPTY_SHA256, Bucket, Credentials, send, sign_v4

__all__ = ["EMPTY_SHA256", "Bucket", "Credentials", "check_bucket", "send", "sign_v4", "usage"]


def aws_endpoint(region: str) -> str:
    return f"https://s3.{region}.amazonaws.com"


# What S3's error codes mean to an operator, in one phrase each.
_ERRORS = {
    "NoSuchBucket": "does not exist at {endpoint}",
    "InvalidAccessKeyId": "the access key is unknown to {endpoint}",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "AccessDenied": "the credentials may not list it",
    "AuthorizationHeaderMalformed": "the endpoint wants another region ({detail})",
    "PermanentRedirect": "lives in another region or endpoint ({detail})",
}


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
