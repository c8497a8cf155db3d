"""Run skopeo against a registry with a private CA and a login.

The password goes into a temporary auth file (mode 0600), never onto the
command line where `ps` would show it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def write_authfile(path: Path, registry: str, username: str, password: str | None) -> Path:
    """A containers-auth.json (mode 0600, created new) with one login for `registry`."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"auths": {registry: {"auth": token}}}, handle)
    return path


def copy(
    src: str,
    dest: str,
    *,
    registry: str,
    username: str | None,
    password: str | None,
    ca_file: str | None,
    all_images: bool = False,
    timeout: int = 300,
) -> subprocess.CompletedProcess[str]:
    """`skopeo copy SRC DEST`; `registry` is the `host:port` the credentials are for."""
    with tempfile.TemporaryDirectory(prefix="regops-skopeo-") as tmp:
        args = ["skopeo", "copy", "--retry-times", "2"]
        env = dict(os.environ)
        if username is not None:
            auth = write_authfile(Path(tmp) / "auth.json", registry, username, password)
            args += ["--authfile", str(auth)]
        certs = Path(tmp) / "certs"
        certs.mkdir()
        if ca_file:
            shutil.copy(ca_file, certs / "ca.crt")
        for side in ("src", "dest"):
            location = src if side == "src" else dest
            if location.startswith("docker://"):
                args += [f"--{side}-cert-dir", str(certs)]
        if all_images:
            args.append("--all")
        args += [src, dest]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
