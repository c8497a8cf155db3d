"""Manifests and images as the registry stores them: parsing, platforms, sizes.

Pure functions and data, shared by the token service's web pages and the operator
toolkit (`regops.registry.images` builds on them), so both count a size the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)

class ManifestError(ValueError):
    """A manifest or config the registry returned is not what its media type says."""


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int
    media_type: str = ""
    platform: str | None = None  # os/arch[/variant], index entries only


@dataclass(frozen=True)
class Manifest:
    """One manifest as stored: an image (config + layers) or an index (children)."""

    digest: str
    media_type: str
    size: int
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def content(self) -> dict[str, int]:
        """Config and layer blobs (digest -> size) of an image manifest."""
        parts = ([self.config] if self.config else []) + list(self.layers)
        return {d.digest: d.size for d in parts}


@dataclass
class Image:
    """What one tag points at, resolved: for an index, with its child images."""

    manifest: Manifest
    created: datetime | None = None
    platform: str | None = None
    children: list[Image] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def is_index(self) -> bool:
        return self.manifest.is_index

    @property
    def platforms(self) -> list[str]:
        return [c.platform for c in self.children if c.platform]

    def content(self) -> dict[str, int]:
        """Config and layer blobs (digest -> size), of every child for an index."""
        if self.is_index:
            return {d: s for c in self.children for d, s in c.content().items()}
        return self.manifest.content()

    @property
    def size(self) -> int:
        """Bytes of config and layers; a blob two children share counts once."""
        return sum(self.content().values())

    def own_blobs(self) -> dict[str, int]:
        """What deleting this manifest lets a plain GC reclaim (ignoring other references):
        everything for an image; for an index only the index manifest, because its
        children stay behind as untagged manifests, which GC keeps unless
        --delete-untagged."""
        if self.is_index:
            return {self.digest: self.manifest.size}
        return {self.digest: self.manifest.size, **self.content()}

    def all_blobs(self) -> dict[str, int]:
        """Every blob stored for this image: manifests, configs and layers."""
        blobs = {self.digest: self.manifest.size}
        if self.is_index:
            for child in self.children:
                blobs.update(child.all_blobs())
        else:
            blobs.update(self.content())
        return blobs

    def child_digests(self) -> set[str]:
        return {c.digest for c in self.children}


def platform_name(platform: Mapping[str, Any] | None) -> str | None:
    """`linux/arm64/v8` from an index entry's platform object."""
    if not isinstance(platform, Mapping):
        return None
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    if not parts[0] or not parts[1]:
        return None
    return "/".join(str(p) for p in parts if p)


def _descriptor(raw: Any, where: str) -> Descriptor:
    if (
        not isinstance(raw, Mapping)
        or not isinstance(raw.get("digest"), str)
        or not isinstance(raw.get("size"), int)
    ):
        raise ManifestError(f"{where}: descriptor without digest and size")
    return Descriptor(
        raw["digest"],
        raw["size"],
        str(raw.get("mediaType") or ""),
        platform_name(raw.get("platform")),
    )


def parse_manifest(digest: str, media_type: str, body: bytes) -> Manifest:
    """A Manifest from what the registry returned for it."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ManifestError(f"{digest}: manifest is not JSON") from None
    if not isinstance(doc, Mapping):
        raise ManifestError(f"{digest}: manifest is not a JSON object")
    kind = media_type or str(doc.get("mediaType") or "")
    if not kind:  # OCI allows omitting mediaType; the content decides
        kind = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if kind in INDEX_TYPES:
        children = tuple(_descriptor(d, digest) for d in doc.get("manifests") or [])
        return Manifest(digest, kind, len(body), children=children)
    if kind in IMAGE_TYPES:
        config = _descriptor(doc.get("config"), digest)
        layers = tuple(_descriptor(d, digest) for d in doc.get("layers") or [])
        return Manifest(digest, kind, len(body), config=config, layers=layers)
    raise ManifestError(f"{digest}: unsupported manifest type {kind!r}")


_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 / ISO 8601 (`...Z`, nanoseconds as Go writes them); None if absent or bad."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = _FRACTION.sub(lambda m: "." + m[1][:6].ljust(6, "0"), value.strip(), count=1)
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def config_platform(doc: Mapping[str, Any]) -> str | None:
    """`linux/arm64/v8` from an image config's os, architecture and variant."""
    return platform_name({"os": doc.get("os"), "architecture": doc.get("architecture"),
                          "variant": doc.get("variant")})


def config_created(body: bytes) -> datetime | None:
    """The `created` time of an image config blob."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return parse_time(doc.get("created")) if isinstance(doc, Mapping) else None
