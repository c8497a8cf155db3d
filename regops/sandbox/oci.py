"""Build small OCI images on disk, with no registry to pull from.

skopeo copies them (`oci:DIR:TAG`) into a registry. Used by the sandbox's
end-to-end check and by the tests, which need real images with known layers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_dict(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _blob(layout: Path, data: bytes, media_type: str) -> Descriptor:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Descriptor(media_type, f"sha256:{digest}", len(data))


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """(gzip of a tar of `files`, diff_id of the tar); fixed mtimes keep it reproducible."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"


def _init(layout: Path) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _write_index(layout: Path, tag: str, top: Descriptor) -> None:
    entry = {**top.as_dict(), "annotations": {"org.opencontainers.image.ref.name": tag}}
    index_path = layout / "index.json"
    index: dict[str, Any] = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "manifests": []}
    )
    index["manifests"] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ] + [entry]
    index_path.write_text(json.dumps(index))


def image(
    layout: Path,
    tag: str,
    layers: list[dict[str, bytes]],
    arch: str = "amd64",
    created: str = "2026-01-01T00:00:00Z",
    write_tag: bool = True,
) -> Descriptor:
    """Write one single-platform image into the OCI layout at `layout`; returns its manifest."""
    _init(layout)
    descriptors, diff_ids = [], []
    for files in layers:
        data, diff_id = _layer(files)
        descriptors.append(_blob(layout, data, LAYER))
        diff_ids.append(diff_id)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {"Labels": {"org.opencontainers.image.ref.name": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = _blob(layout, json.dumps(config, sort_keys=True).encode(), CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc.as_dict(),
        "layers": [d.as_dict() for d in descriptors],
    }
    top = _blob(layout, json.dumps(manifest, sort_keys=True).encode(), MANIFEST)
    if write_tag:
        _write_index(layout, tag, top)
    return top


def multiarch(layout: Path, tag: str, per_arch: dict[str, list[dict[str, bytes]]]) -> Descriptor:
    """An OCI index over one image per architecture."""
    children = []
    for arch, layers in per_arch.items():
        child = image(layout, f"{tag}-{arch}", layers, arch=arch, write_tag=False)
        children.append({**child.as_dict(), "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": children}
    top = _blob(layout, json.dumps(index, sort_keys=True).encode(), INDEX)
    _write_index(layout, tag, top)
    return top
