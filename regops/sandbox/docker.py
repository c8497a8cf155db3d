"""The local Docker engine, as the sandbox uses it: commands, inspection, locks, ports."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import zlib
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
    else:  # volume, network
        argv = ["docker", kind, "ls", "--filter", f"label={label}", "--format", "{{.Name}}"]
    return run(argv).stdout.split()


# Each sandbox's own bridge is a /24 from here: outside Docker's default pools
# (172.17-31/16, 192.168/16), so networks Docker picks itself (Vagrant's
# 192.168.56.0/24, a nested dockerd's 172.17.0.0/16) never collide with one.
SUBNET_POOL = ipaddress.IPv4Network("172.16.0.0/16")


def _routed_elsewhere() -> list[ipaddress.IPv4Network]:
    """What this machine already reaches that a new bridge must not shadow: its
    routes (other than the default) and its nameservers, as Docker itself checks."""
    taken: list[ipaddress.IPv4Network] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            dest, mask = (int(fields[i], 16).to_bytes(4, "little") for i in (1, 7))
            if mask != bytes(4):
                net = f"{ipaddress.IPv4Address(dest)}/{ipaddress.IPv4Address(mask)}"
                taken.append(ipaddress.IPv4Network(net, strict=False))
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    taken.append(ipaddress.IPv4Network(parts[1]))
    return taken


def machine_resolv_conf() -> str | None:
    """This machine's resolv.conf without loopback nameservers: what Docker gives a
    container on its default bridge. On a network of its own a container would get
    Docker's embedded resolver (127.0.0.11) instead, and a dockerd inside it, finding
    no other nameserver, would give its containers Google's. None when none is left."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return None
    kept, servers = [], 0
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
            servers += 1
        kept.append(line)
    return "\n".join(kept) + "\n" if servers else None


def network_subnet(network: str) -> ipaddress.IPv4Network | None:
    """The subnet of an existing network; None when there is no such network."""
    cp = run(["docker", "network", "inspect", "--format", "{{json .IPAM.Config}}", network],
             check=False)
    if cp.returncode != 0:
        return None
    for config in json.loads(cp.stdout or "null") or []:
        if config.get("Subnet"):
            return ipaddress.IPv4Network(config["Subnet"])
    raise SandboxError(f"network {network} has no subnet of its own; remove it "
                       f"(docker network rm {network})")


def ensure_network(network: str, sandbox: str) -> ipaddress.IPv4Network:
    """A user-defined bridge with a subnet of its own, so each host keeps its address
    (`docker run --ip`) when it is stopped and started while other containers come
    and go: on Docker's default bridge a restarted container can get another one."""
    existing = network_subnet(network)
    if existing is not None:
        return existing
    taken = _routed_elsewhere()
    candidates = [ipaddress.IPv4Network(n) for n in SUBNET_POOL.subnets(new_prefix=24)]
    start = zlib.crc32(network.encode()) % len(candidates)  # sandboxes rarely probe alike
    with lock("network"):
        for subnet in candidates[start:] + candidates[:start]:
            if any(subnet.overlaps(t) for t in taken):
                continue
            cp = run(["docker", "network", "create", "--driver", "bridge",
                      "--label", f"{LABEL}={sandbox}", "--subnet", str(subnet), network],
                     check=False)
            if cp.returncode == 0:
                return subnet
            if "overlaps" not in cp.stderr:  # another network has it: try the next
                raise SandboxError(f"docker network create {network} failed: "
                                   f"{cp.stderr.strip()}")
    raise SandboxError(f"no free /24 in {SUBNET_POOL} for network {network}")


def host_address(subnet: ipaddress.IPv4Network, index: int) -> str:
    """Host sbN's fixed address: the Nth after the first ten (the gateway is first)."""
    return str(subnet.network_address + 10 + index)


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


