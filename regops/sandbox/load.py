"""A bounded load on a registry: pushers and pullers through the API, counting what
failed, then proof that every push the registry acknowledged can still be pulled.

For measuring what maintenance (garbage collection, a replaced registry) costs
clients: the GC benchmark and the sandbox tests run it while the GC job runs. A
push refused with 503 (the front door while GC runs) is retried after a second,
as docker push does; every other failure counts. Bounded by its caller's
`stop()`, the number of threads and a pause between operations.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from regops.registry.client import RegistryClient, RegistryError
from regops.registry.images import (
    ManifestError,
    image_config,
    image_manifest,
    parse_manifest,
    put_manifest,
    upload_blob,
)


@dataclass(frozen=True)
class Pushed:
    repository: str
    tag: str
    digest: str


@dataclass
class LoadResult:
    pulls: int = 0
    pull_failures: list[str] = field(default_factory=list)
    acknowledged: list[Pushed] = field(default_factory=list)  # pushes the registry took
    refused: int = 0  # push attempts answered 503 (and retried)
    push_failures: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # acknowledged, then not pullable

    def as_dict(self) -> dict[str, Any]:
        return {
            "pulls": self.pulls,
            "failed_pulls": len(self.pull_failures),
            "pushes_acknowledged": len(self.acknowledged),
            "pushes_refused_503": self.refused,
            "failed_pushes": len(self.push_failures),
            "lost_images": len(self.lost),
            "examples": (self.pull_failures + self.push_failures + self.lost)[:5],
        }


class Refused(Exception):
    """503 from the front door: the registry is read-only for a moment; retry."""


def pull(client: RegistryClient, repository: str, reference: str) -> str:
    """Manifest and every blob it names, each re-hashed; returns the manifest digest."""
    digest, media_type, body = client.manifest(repository, reference)
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise ManifestError(f"{repository}:{reference}: manifest does not hash to {digest}")
    manifest = parse_manifest(digest, media_type, body)
    for blob in [manifest.config, *manifest.layers]:
        if blob is None:
            continue
        data = client.blob(repository, blob.digest)
        if "sha256:" + hashlib.sha256(data).hexdigest() != blob.digest:
            raise ManifestError(f"{repository}@{blob.digest}: content does not hash to it")
    return digest


def push(client: RegistryClient, repository: str, tag: str, layer_bytes: int) -> Pushed:
    """One new image (a random layer and its config); Refused on 503."""
    layer = os.urandom(layer_bytes)
    config = image_config(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        upload_blob(client, repository, layer)
        upload_blob(client, repository, config)
        media_type, body = image_manifest(config, [layer])
        digest = put_manifest(client, repository, tag, media_type, body)
    except (ManifestError, RegistryError) as error:
        if "HTTP 503" in str(error):
            raise Refused(str(error)) from None
        raise
    return Pushed(repository, tag, digest)


class Load:
    """`pushers` threads pushing new images, `pullers` threads pulling `seeds`."""

    def __init__(
        self,
        client: Callable[[], RegistryClient],
        seeds: Sequence[tuple[str, str]],
        pushers: int = 10,
        pullers: int = 2,
        layer_bytes: int = 256 * 1024,
        pause: float = 0.0,
    ) -> None:
        self._client, self._seeds = client, list(seeds)
        self._pushers, self._pullers = pushers, pullers
        self._layer_bytes, self._pause = layer_bytes, pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.result = LoadResult()

    def start(self) -> None:
        for n in range(self._pushers):
            self._threads.append(threading.Thread(target=self._pusher, args=(n,), daemon=True))
        for n in range(self._pullers):
            self._threads.append(threading.Thread(target=self._puller, args=(n,), daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 120) -> LoadResult:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.result

    def _pusher(self, n: int) -> None:
        client = self._client()
        count = 0
        while not self._stop.is_set():
            count += 1
            try:
                pushed = push(client, f"load/pusher{n}", f"t{count}", self._layer_bytes)
            except Refused:
                with self._lock:
                    self.result.refused += 1
                self._stop.wait(1.0)
                continue
            except Exception as error:  # noqa: BLE001 - every failure is counted, not raised
                with self._lock:
                    self.result.push_failures.append(f"{time.strftime('%T')} push: {error}")
                continue
            with self._lock:
                self.result.acknowledged.append(pushed)
            self._stop.wait(self._pause)

    def _puller(self, n: int) -> None:
        client = self._client()
        chooser = random.Random(n)
        while not self._stop.is_set():
            repository, tag = chooser.choice(self._seeds)
            try:
                pull(client, repository, tag)
                with self._lock:
                    self.result.pulls += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted, not raised
                with self._lock:
                    self.result.pulls += 1
                    self.result.pull_failures.append(f"{time.strftime('%T')} pull: {error}")
            self._stop.wait(self._pause)


def verify(client: RegistryClient, pushed: Sequence[Pushed]) -> list[str]:
    """Which acknowledged pushes cannot be pulled back whole (empty: none lost)."""
    lost = []
    for image in pushed:
        try:
            digest = pull(client, image.repository, image.tag)
        except Exception as error:  # noqa: BLE001 - a lost image is a finding, not a crash
            lost.append(f"{image.repository}:{image.tag}: {error}")
            continue
        if digest != image.digest:
            lost.append(f"{image.repository}:{image.tag}: now {digest}, pushed {image.digest}")
    return lost
