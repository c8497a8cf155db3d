"""End-to-end proof that a deployed registry works: push and pull a freshly
built image through TLS with a login, and see anonymous access refused."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from regops.registry import skopeo
from regops.registry.client import RegistryClient
from regops.sandbox import oci


def push_pull(
    url_host: str,
    ca_file: str,
    username: str,
    password: str,
    repo: str = "demo/hello/world",
    tag: str = "1.0",
) -> list[str]:
    """Returns what was proven, one line each; raises RuntimeError on the first failure."""
    proven = []
    client = RegistryClient(f"https://{url_host}", username, password, ca_file=ca_file)
    anonymous = RegistryClient(f"https://{url_host}", ca_file=ca_file)
    status = anonymous.ping()
    if status != 401:
        raise RuntimeError(f"{url_host}: anonymous GET /v2/ gave HTTP {status}, expected 401")
    proven.append(f"{url_host}: anonymous access refused (401)")
    with tempfile.TemporaryDirectory(prefix="regops-verify-") as tmp:
        layout = Path(tmp) / "src"
        pushed = oci.image(
            layout,
            tag,
            [{"hello.txt": b"hello from regops\n", "random.bin": os.urandom(32 * 1024)}],
        )
        ref = f"{url_host}/{repo}:{tag}"
        result = skopeo.copy(
            f"oci:{layout}:{tag}",
            f"docker://{ref}",
            registry=url_host,
            username=username,
            password=password,
            ca_file=ca_file,
        )
        if result.returncode != 0:
            raise RuntimeError(f"push of {ref} failed: {result.stderr.strip()}")
        proven.append(f"{url_host}: pushed {repo}:{tag} as {username} over verified TLS")
        result = skopeo.copy(
            f"docker://{ref}",
            f"oci:{Path(tmp) / 'back'}:{tag}",
            registry=url_host,
            username=username,
            password=password,
            ca_file=ca_file,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pull of {ref} failed: {result.stderr.strip()}")
        digest = client.digest(repo, tag)
        if digest != pushed.digest:
            raise RuntimeError(f"{ref}: registry has {digest}, pushed {pushed.digest}")
        proven.append(f"{url_host}: pulled it back, digest {digest[:19]}... matches")
    return proven
