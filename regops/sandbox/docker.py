"""The local Docker engine, as the sandbox uses it: commands, inspection, locks, ports."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from regops.sandbox.model import LABEL, REGISTRY_PORT, SandboxError, sandbox_root


def free_port(exclude: Collection[int] = ()) -> int:
    """Ask the kernel for a free loopback port; pinned in `docker run` so it
    survives container restarts (docker's own `-p ::22` would not)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in exclude:
            return port
    raise SandboxError("could not find a free TCP port on 127.0.0.1")


def published_port(inspect: dict[str, Any], container_port: int) -> int | None:
    """Host port bound to a container port, from `docker inspect` (works stopped too)."""
    bindings = (inspect.get("HostConfig") or {}).get("PortBindings") or {}
    for b in bindings.get(f"{container_port}/tcp") or []:
        if b.get("HostPort"):
            return int(b["HostPort"])
    return None


def container_ip(inspect: dict[str, Any]) -> str | None:
    net = inspect.get("NetworkSettings") or {}
    if net.get("IPAddress"):
        return str(net["IPAddress"])
    for n in (net.get("Networks") or {}).values():
        if n.get("IPAddress"):
            return str(n["IPAddress"])
    return None




def run(argv: Sequence[str], *, check: bool = True, input: str | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    try:
        cp = subprocess.run(list(argv), capture_output=True, text=True, input=input,
                            timeout=timeout)
    except FileNotFoundError:
        raise SandboxError(f"{argv[0]} not found; run scripts/setup") from None
    if check and cp.returncode != 0:
        msg = (cp.stderr or cp.stdout).strip().splitlines()
        raise SandboxError(f"{' '.join(argv[:3])} ... failed: {msg[-1] if msg else cp.returncode}")
    return cp


def require_docker() -> None:
    if shutil.which("docker") is None:
        raise SandboxError("docker is not installed; run scripts/setup")
    cp = run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    if cp.returncode != 0:
        raise SandboxError("the Docker engine is not reachable (`docker info` fails); "
                           "run scripts/setup")


def image_labels(ref: str) -> dict[str, str] | None:
    """None when the image is missing; its labels otherwise."""
    cp = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
              check=False)
    if cp.returncode != 0:
        return None
    return json.loads(cp.stdout or "null") or {}


def inspect_containers(names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """One `docker inspect` call for all hosts; missing containers map to None."""
    names = list(names)
    result: dict[str, dict[str, Any] | None] = dict.fromkeys(names)
    if not names:
        return result
    cp = run(["docker", "container", "inspect", *names], check=False)
    try:
        for item in json.loads(cp.stdout or "[]"):
            result[item["Name"].lstrip("/")] = item
    except json.JSONDecodeError:
        pass
    return result


def labelled(kind: str, name: str | None = None) -> list[str]:
    label = f"{LABEL}={name}" if name else LABEL
    if kind == "container":
        argv = ["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"]
    else:
        argv = ["docker", "volume", "ls", "--filter", f"label={label}", "--format", "{{.Name}}"]
    return run(argv).stdout.split()


def reserved_ports() -> set[int]:
    """Host ports pinned by any sandbox container, even stopped ones."""
    used: set[int] = set()
    for info in inspect_containers(labelled("container")).values():
        if info:
            used.update(p for p in (published_port(info, 22),
                                    published_port(info, REGISTRY_PORT)) if p)
    return used


@contextlib.contextmanager
def lock(name: str) -> Iterator[None]:
    """Serialise image builds between concurrent `up` runs (parallel CI jobs)."""
    sandbox_root().mkdir(parents=True, exist_ok=True)
    with open(sandbox_root() / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """A failed debootstrap can leave /proc or a bind of the host's /dev mounted
    inside the target: unmount first, and never rmtree through a mount."""
    for m in mounts_under(path):
        subprocess.run(["umount", "-l", m], capture_output=True)
    left = mounts_under(path)
    if left:
        raise SandboxError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    base = os.environ.get("REGOPS_SANDBOX_TMPDIR") or "/var/tmp"
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield d
    finally:
        remove_tree(d)


