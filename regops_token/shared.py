"""Where the token service keeps what it writes at run time (today the CLI secrets),
as small JSON documents by key: in a file on the host, or, when the registry keeps its
images in S3, in that bucket, so every replica of one registry name reads what any of
them wrote (a CLI secret made on one replica logs docker in on the others, and one
revoked on any is revoked on all).

The bucket's documents live under `<root>/regops/<kind>/`, beside the registry's
`docker/` tree, which the registry's garbage collection never walks out of. A key is
stored hex-encoded, so any name makes a plain object key. Reads are not cached: a
revocation counts at the next request on every replica. A bucket that does not answer
raises `StoreDown`, which callers turn into a clear refusal of what needed it alone.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any, Protocol

from regops_token.sigv4 import Bucket, Credentials, send


class StoreDown(OSError):
    """The store did not answer, or answered as no store should."""


class Store(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, doc: dict[str, Any]) -> None: ...

    def delete(self, key: str) -> bool: ...

    def names(self) -> list[str]: ...


class FileStore:
    """One JSON file of {key: document}, read once, replaced whole (mode 0600) on each
    change: the host's own store, for a registry on its own disk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._docs: dict[str, dict[str, Any]] = {}
        try:
            with open(path, encoding="utf-8") as f:
                self._docs = dict(json.load(f))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None

    def _write(self) -> None:
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(sorted(self._docs.items())), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._docs.get(key)

    def put(self, key: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._docs[key] = doc
            self._write()

    def delete(self, key: str) -> bool:
        with self._lock:
            if self._docs.pop(key, None) is None:
                return False
            self._write()
            return True

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._docs)


class BucketStore:
    """Documents as objects `<root>/regops/<kind>/<hex of key>.json` of the registry's
    bucket, with the registry's own S3 credentials."""

    def __init__(self, bucket: Bucket, credentials: Credentials, kind: str,
                 timeout: float = 5.0) -> None:
        self.bucket, self.credentials, self.timeout = bucket, credentials, timeout
        self.prefix = "/".join(p for p in (bucket.root.strip("/"), "regops", kind) if p) + "/"

    def _request(self, method: str, key: str | None = None, query: str = "",
                 body: bytes = b"") -> tuple[int, bytes]:
        scheme, host, path = self.bucket.url()
        if key is not None:
            path += self.prefix + key.encode().hex() + ".json"
        if query:
            path += "?" + query
        headers = {"content-type": "application/json"} if body else {}
        try:
            return send(method, scheme, host, path, self.credentials, self.bucket.region,
                        self.bucket.verify_tls, self.timeout, body, headers)
        except OSError as error:
            raise StoreDown(f"bucket {self.bucket.name!r} at {self.bucket.endpoint} does "
                            f"not answer: {error.strerror or error}") from None

    def _refused(self, method: str, status: int) -> StoreDown:
        return StoreDown(f"bucket {self.bucket.name!r} at {self.bucket.endpoint} answered "
                         f"{method} with HTTP {status}")

    def get(self, key: str) -> dict[str, Any] | None:
        status, body = self._request("GET", key)
        if status == 404:
            return None
        if status != 200:
            raise self._refused("GET", status)
        try:
            doc = json.loads(body)
        except ValueError:
            raise StoreDown(f"bucket {self.bucket.name!r}: {self.prefix}: not JSON") from None
        return doc if isinstance(doc, dict) else None

    def put(self, key: str, doc: dict[str, Any]) -> None:
        status, _ = self._request("PUT", key, body=json.dumps(doc).encode())
        if status not in (200, 201, 204):
            raise self._refused("PUT", status)

    def delete(self, key: str) -> bool:
        if self.get(key) is None:
            return False
        status, _ = self._request("DELETE", key)
        if status not in (200, 204, 404):
            raise self._refused("DELETE", status)
        return True

    def names(self) -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": self.prefix, "max-keys": "1000"}
            if token:
                params["continuation-token"] = token
            status, body = self._request("GET", query=urllib.parse.urlencode(params))
            if status != 200:
                raise self._refused("GET (list)", status)
            try:
                root = ET.fromstring(body)
            except ET.ParseError:
                raise StoreDown(f"bucket {self.bucket.name!r}: a listing that is not XML"
                                ) from None
            for element in root.iter():
                if element.tag.rsplit("}", 1)[-1] == "Key" and element.text:
                    name = element.text[len(self.prefix):]
                    if name.endswith(".json"):
                        try:
                            found.append(bytes.fromhex(name[:-5]).decode())
                        except ValueError:
                            continue  # not one of ours
            fields = {c.tag.rsplit("}", 1)[-1]: c.text for c in root}
            token = fields.get("NextContinuationToken")
            if fields.get("IsTruncated") != "true" or not token:
                return sorted(found)


def open_store(config: str | dict[str, Any], kind: str) -> Store:
    """The store a config names: a file's path, or {"bucket": {...}, "credentials": path}
    (a JSON file of access_key and secret_key, which only the service may read)."""
    if isinstance(config, str):
        return FileStore(config)
    if "bucket" in config:
        b = config["bucket"]
        bucket = Bucket(str(b["endpoint"]), str(b["region"]), str(b["name"]),
                        str(b.get("root", "")), bool(b.get("path_style", True)),
                        bool(b.get("verify_tls", True)))
        with open(config["credentials"], encoding="utf-8") as f:
            keys = json.load(f)
        return BucketStore(bucket, Credentials(str(keys["access_key"]),
                                               str(keys["secret_key"]), "file"), kind)
    return FileStore(str(config["file"]))
