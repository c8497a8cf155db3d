"""What tags point at: manifests parsed, sizes, created times, platforms, storage use.

The registry API only lists repositories and tags; everything else (digest,
size, age, platforms, which blobs an image holds) comes from reading the
manifests and image configs. Parsing and accounting are pure functions so they
are tested without a registry; `Scanner` does the reading, with a cache because
tags sharing a digest and images sharing a config are common.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from regops.errors import RegopsError
from regops_token import manifests as _model
from regops_token.manifests import (  # noqa: F401 - the model, re-exported
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    IMAGE_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Image,
    Manifest,
    config_created,
    platform_name,
)

_REFERENCE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)




class ManifestError(RegopsError, _model.ManifestError):
    """A manifest or config the registry returned is not what its media type says."""


def parse_manifest(digest: str, media_type: str, body: bytes) -> Manifest:
    """A Manifest from what the registry returned for it (ManifestError, a RegopsError)."""
    try:
        return _model.parse_manifest(digest, media_type, body)
    except _model.ManifestError as error:
        raise ManifestError(str(error)) from None


def split_reference(text: str) -> tuple[str, str]:
    """(repository, tag or digest) of `repo:tag` or `repo@sha256:...`; ValueError if neither."""
    match = _REFERENCE.match(text or "")
    if not match or not (match["tag"] or match["digest"]):
        raise ValueError(f"{text!r} is not REPOSITORY:TAG (lower-case path, tag [A-Za-z0-9_.-])")
    if match["tag"] and match["digest"]:
        raise ValueError(f"{text!r}: give a tag or a digest, not both")
    return match["repo"], match["tag"] or match["digest"]


# --------------------------------------------------------------------------- accounting


def namespaces(repository: str) -> list[str]:
    """Every proper prefix: `a/b/c` -> [`a`, `a/b`]."""
    parts = repository.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class Usage:
    bytes: int
    blobs: int
    repositories: int
    tags: int


def disk_usage(
    blobs_by_repo: Mapping[str, Mapping[str, int]], tags_by_repo: Mapping[str, int] | None = None
) -> tuple[dict[str, Usage], dict[str, Usage], Usage]:
    """(per repository, per namespace, total): each aggregate counts a blob once however
    many of its repositories hold it, as the registry stores it once."""
    tags_by_repo = tags_by_repo or {}

    def aggregate(names: Iterable[str]) -> Usage:
        names = list(names)
        unique: dict[str, int] = {}
        for name in names:
            unique.update(blobs_by_repo[name])
        return Usage(
            sum(unique.values()),
            len(unique),
            len(names),
            sum(tags_by_repo.get(n, 0) for n in names),
        )

    members: dict[str, list[str]] = {}
    for repo in blobs_by_repo:
        for prefix in namespaces(repo):
            members.setdefault(prefix, [])
    for prefix in members:
        members[prefix] = [r for r in blobs_by_repo if r == prefix or r.startswith(prefix + "/")]
    per_repo = {r: aggregate([r]) for r in sorted(blobs_by_repo)}
    per_ns = {p: aggregate(members[p]) for p in sorted(members)}
    return per_repo, per_ns, aggregate(blobs_by_repo)


def freed_estimate(deleted: Iterable[Image], surviving: Iterable[Image]) -> tuple[int, int]:
    """(bytes a plain GC reclaims, bytes more that only GC --delete-untagged reclaims).

    A blob counts when no surviving image still references it. Children of a
    deleted index stay as untagged manifests, which keep their blobs until GC
    runs with --delete-untagged. Blobs shared with other repositories are not
    seen here, so this is an upper bound."""
    deleted = list(deleted)
    kept: dict[str, int] = {}
    for image in surviving:
        kept.update(image.all_blobs())
    held_by_children: dict[str, int] = {}
    for image in deleted:
        for child in image.children:
            held_by_children.update(child.all_blobs())
    plain: dict[str, int] = {}
    for image in deleted:
        plain.update(
            {
                d: s
                for d, s in image.own_blobs().items()
                if d not in kept and d not in held_by_children
            }
        )
    untagged = {d: s for d, s in held_by_children.items() if d not in kept and d not in plain}
    return sum(plain.values()), sum(untagged.values())


# --------------------------------------------------------------------------- reading


class ApiClient(Protocol):
    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes]: ...

    def blob(self, repository: str, digest: str) -> bytes: ...


class Scanner:
    """Resolves tags to Images through the API, caching manifests and configs by digest
    (content-addressed, so safe to share between tags and threads)."""

    def __init__(self, client: ApiClient, created: bool = True) -> None:
        self.client = client
        self.created = created
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._configs: dict[str, datetime | None] = {}
        self._lock = threading.Lock()

    def _manifest(self, repository: str, reference: str) -> Manifest:
        key = (repository, reference)
        with self._lock:
            if key in self._manifests:
                return self._manifests[key]
        digest, media_type, body = self.client.manifest(repository, reference)
        if not digest:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        manifest = parse_manifest(digest, media_type, body)
        with self._lock:
            self._manifests[(repository, digest)] = manifest
        return manifest

    def _created(self, repository: str, config: Descriptor | None) -> datetime | None:
        if not self.created or config is None:
            return None
        with self._lock:
            if config.digest in self._configs:
                return self._configs[config.digest]
        created = config_created(self.client.blob(repository, config.digest))
        with self._lock:
            self._configs[config.digest] = created
        return created

    def image(self, repository: str, reference: str, platform: str | None = None) -> Image:
        """The image a tag or digest points at; for an index, every child too."""
        manifest = self._manifest(repository, reference)
        if not manifest.is_index:
            return Image(manifest, self._created(repository, manifest.config), platform)
        children = [self.image(repository, c.digest, c.platform) for c in manifest.children]
        times = [c.created for c in children if c.created]
        return Image(manifest, max(times) if times else None, platform, children)


# --------------------------------------------------------------------------- writing
# Pushing through the API directly: tests and benchmarks fill registries with
# many small images much faster than one skopeo process per image.


class WriteClient(Protocol):
    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        auth: bool = True,
    ) -> Any: ...


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_blob(
    client: WriteClient, repository: str, data: bytes, mount_from: str | None = None
) -> str:
    """Monolithic upload (POST, then PUT with the digest); a cross-repository mount
    when `mount_from` holds the blob. Returns the digest."""
    digest = sha256(data)
    start = f"/v2/{repository}/blobs/uploads/"
    if mount_from:
        start += f"?mount={digest}&from={mount_from}"
    answer = client.request("POST", start)
    if answer.status == 201:
        return digest
    if answer.status != 202:
        raise ManifestError(f"upload to {repository}: HTTP {answer.status}")
    location = {k.lower(): v for k, v in answer.headers.items()}["location"]
    separator = "&" if "?" in location else "?"
    done = client.request(
        "PUT",
        f"{location}{separator}digest={digest}",
        headers={"Content-Type": "application/octet-stream"},
        data=data,
    )
    if done.status != 201:
        raise ManifestError(f"upload to {repository}: HTTP {done.status}")
    return digest


def put_manifest(
    client: WriteClient, repository: str, reference: str, media_type: str, body: bytes
) -> str:
    answer = client.request(
        "PUT",
        f"/v2/{repository}/manifests/{reference}",
        headers={"Content-Type": media_type},
        data=body,
    )
    if answer.status != 201:
        raise ManifestError(
            f"manifest {repository}:{reference}: HTTP {answer.status} {answer.body[:200]!r}"
        )
    return sha256(body)


def image_config(created: str, arch: str = "amd64", diff_ids: list[str] | None = None) -> bytes:
    return json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "created": created,
            "rootfs": {"type": "layers", "diff_ids": diff_ids or []},
        },
        sort_keys=True,
    ).encode()


def image_manifest(config: bytes, layers: list[bytes], docker: bool = False) -> tuple[str, bytes]:
    """(media type, body) of a schema 2 image manifest: Docker v2 or OCI."""
    kind, config_type, layer_type = (
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        if docker
        else (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    )
    doc = {
        "schemaVersion": 2,
        "mediaType": kind,
        "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha256(b), "size": len(b)} for b in layers],
    }
    return kind, json.dumps(doc, sort_keys=True).encode()


def index_manifest(
    children: list[tuple[str, bytes, str]],
    docker: bool = False,
) -> tuple[str, bytes]:
    """(media type, body) of a manifest list / OCI index over (media type, body, os/arch)."""
    kind = DOCKER_LIST if docker else OCI_INDEX
    entries = []
    for media_type, body, platform in children:
        os_name, arch, *variant = platform.split("/")
        plat = {"os": os_name, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        entries.append(
            {"mediaType": media_type, "digest": sha256(body), "size": len(body), "platform": plat}
        )
    doc = {"schemaVersion": 2, "mediaType": kind, "manifests": entries}
    return kind, json.dumps(doc, sort_keys=True).encode()


def push_image(
    client: WriteClient,
    repository: str,
    tags: list[str],
    *,
    platforms: tuple[str, ...] = ("linux/amd64",),
    created: str = "2026-01-01T00:00:00Z",
    labels: dict[str, str] | None = None,
    layer_bytes: int = 1024,
) -> str:
    """A small random image, an index over its platforms when more than one, under every
    tag; with an entrypoint, env, labels, a port and history, as `docker build` writes
    them. Returns its digest."""
    children = []
    for platform in platforms:
        layer = os.urandom(layer_bytes)
        doc = json.loads(image_config(created, platform.split("/")[1]))
        doc["config"] = {"Entrypoint": ["/app"], "Cmd": ["--serve"],
                         "Env": ["PATH=/usr/bin", "API_TOKEN=do-not-show-me"],
                         "Labels": labels or {}, "ExposedPorts": {"8080/tcp": {}}}
        doc["history"] = [{"created": created, "created_by": "COPY app /app"}]
        config = json.dumps(doc, sort_keys=True).encode()
        for blob in (layer, config):
            upload_blob(client, repository, blob)
        kind, body = image_manifest(config, [layer])
        children.append((kind, body, platform))
    if len(children) == 1:
        kind, body = children[0][0], children[0][1]
    else:
        for child_kind, child, _ in children:
            put_manifest(client, repository, sha256(child), child_kind, child)
        kind, body = index_manifest(children)
    for tag in tags:
        put_manifest(client, repository, tag, kind, body)
    return sha256(body)
