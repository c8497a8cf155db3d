"""Throwaway Debian hosts for trying deploys: systemd containers on the local
Docker engine, reachable over SSH on 127.0.0.1.

Containers, not VMs, because CI machines have no nested KVM and no box or
cloud image can be downloaded; only the Debian mirror is reachable, so base
images are built with debootstrap and the registry image from Debian's
`docker-registry` binary. Everything that can be a pure function (parsing,
naming, argv building, status shape) is one, so it is unit-tested without
Docker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from regops import paths

DISTROS = ("bookworm", "trixie")
DEFAULT_DISTRO = "bookworm"
DEFAULT_NAME = "regops"
BASE_IMAGE_REPO = "regops-sandbox-base"
REGISTRY_IMAGE_REPO = "regops/registry"
LABEL = "regops.sandbox"
SSH_USER = "root"
REGISTRY_PORT = 5000
DEMO_USER = "demo"
REGISTRY_BINARY = "/usr/bin/docker-registry"
STATE_VERSION = 1

# Verified to boot systemd with sshd; dbus and procps make the host behave like
# a real minimal Debian server (hostnamectl, ps) without hiding missing deps.
BOOTSTRAP_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "ca-certificates",
    "iproute2",
    "procps",
)

# Debian suite names that mark an entry as a Debian archive (not a third-party repo).
_DEBIAN_SUITES = {
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
}

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")

# Units the sandbox image adds: the image ships without SSH host keys so that
# every container gets its own, generated before sshd starts.
_HOSTKEY_UNIT = """\
[Unit]
Description=Generate this sandbox host's own SSH host keys
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""
_HOSTKEY_UNIT_NAME = "regops-ssh-host-keys.service"
_MASKED_UNITS = ("systemd-modules-load.service",)
# Bump when customize_rootfs or BOOTSTRAP_PACKAGES change: cached base images
# with another recipe are rebuilt by the next `up`.
BASE_RECIPE = "2"


class SandboxError(RuntimeError):
    """A sandbox operation failed in a way the operator can act on."""


# --------------------------------------------------------------------------- names


def default_name() -> str:
    """REGOPS_SANDBOX lets a shell (or CI job) pin one sandbox for every command."""
    return os.environ.get("REGOPS_SANDBOX") or DEFAULT_NAME


def validate_name(name: str) -> str:
    """Names end up in container names and DNS labels, so keep them DNS-safe."""
    if not _NAME_RE.match(name):
        raise SandboxError(
            f"invalid sandbox name {name!r}: use lowercase letters, digits and '-' "
            "(at most 40, not starting or ending with '-')"
        )
    return name


@dataclass(frozen=True)
class HostSpec:
    """One planned sandbox host; all its names derive from sandbox name + index."""

    sandbox: str
    index: int
    distro: str

    @property
    def name(self) -> str:
        return f"sb{self.index}"

    @property
    def container(self) -> str:
        return f"{self.sandbox}-{self.name}"

    @property
    def hostname(self) -> str:
        return f"{self.name}.{self.sandbox}.test"

    @property
    def volume(self) -> str:
        return f"{self.container}-docker"

    @property
    def image(self) -> str:
        return base_image(self.distro)


def base_image(distro: str) -> str:
    return f"{BASE_IMAGE_REPO}:{distro}"


def plan_hosts(
    sandbox: str,
    hosts: int | None,
    distros: Sequence[str],
    existing: dict[int, str] | None = None,
) -> list[HostSpec]:
    """Decide which distro each host gets.

    One --distro applies to every host; several are assigned in order (and
    cycled), and imply at least that many hosts. Without --distro, hosts that
    already exist keep theirs so re-running `up` never fights the sandbox;
    hosts beyond the count are kept (and restarted if stopped).
    """
    existing = existing or {}
    distros = list(distros)
    for d in distros:
        if d not in DISTROS:
            raise SandboxError(f"unknown distro {d!r}; choose from {', '.join(DISTROS)}")
    if hosts is not None and hosts < 1:
        raise SandboxError("--hosts must be at least 1")
    if hosts is not None and len(distros) > 1 and hosts < len(distros):
        raise SandboxError(f"--hosts {hosts} is fewer than the {len(distros)} distros given")
    count = hosts if hosts is not None else max(1, len(distros))
    specs = []
    for i in range(1, count + 1):
        if distros:
            distro = distros[(i - 1) % len(distros)]
            if i in existing and existing[i] != distro:
                raise SandboxError(
                    f"host sb{i} of sandbox {sandbox!r} already runs {existing[i]}, not {distro}; "
                    f"run `regops sandbox down --name {sandbox}` first"
                )
        else:
            distro = existing.get(i, DEFAULT_DISTRO)
        specs.append(HostSpec(sandbox, i, distro))
    # Hosts beyond the requested count stay as they are (`up` never removes).
    specs += [HostSpec(sandbox, i, existing[i]) for i in sorted(existing) if i > count]
    return specs


# --------------------------------------------------------------------------- paths


def state_dir() -> Path:
    """Absolute, read at call time so tests (and REGOPS_STATE_DIR) can move it."""
    return Path(paths.STATE_DIR).resolve()


def secrets_dir() -> Path:
    return state_dir() / "secrets"


def sandbox_root() -> Path:
    return state_dir() / "sandbox"


def sandbox_dir(name: str) -> Path:
    return sandbox_root() / name


def state_path(name: str) -> Path:
    return sandbox_dir(name) / "state.json"


def key_path(name: str) -> Path:
    return sandbox_dir(name) / "id_ed25519"


def images_dir() -> Path:
    return sandbox_root() / "images"


def registry_archive_path(version: str) -> Path:
    return images_dir() / f"regops-registry-{version}.tar"


# --------------------------------------------------------------------------- mirror


@dataclass(frozen=True)
class SourceEntry:
    """One apt source: enough of it to tell a Debian mirror from the rest."""

    uri: str
    suites: tuple[str, ...]


def parse_deb822_sources(text: str) -> list[SourceEntry]:
    """Entries of a deb822 `.sources` file (binary `deb` types, enabled only)."""
    entries = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        suites = tuple(fields.get("suites", "").split())
        entries.extend(SourceEntry(uri, suites) for uri in fields.get("uris", "").split())
    return entries


def parse_one_line_sources(text: str) -> list[SourceEntry]:
    """Entries of a classic `sources.list` (`deb [opts] URI suite comps...`)."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        parts = rest.split()
        if len(parts) >= 2:
            entries.append(SourceEntry(parts[0], (parts[1],)))
    return entries


def _is_security(entry: SourceEntry) -> bool:
    return "security" in entry.uri or any(s.endswith("-security") for s in entry.suites)


def _is_debian(entry: SourceEntry) -> bool:
    return any(s.split("-", 1)[0] in _DEBIAN_SUITES for s in entry.suites)


def pick_mirror(entries: Iterable[SourceEntry]) -> str | None:
    """First plain http(s) Debian archive that is not the security archive."""
    for entry in entries:
        if not entry.uri.startswith(("http://", "https://")):
            continue
        if _is_security(entry) or not _is_debian(entry):
            continue
        return entry.uri.rstrip("/")
    return None


def apt_source_files(root: Path = Path("/")) -> list[Path]:
    """In apt's own order: sources.list, then sources.list.d alphabetically."""
    files = [root / "etc/apt/sources.list"]
    d = root / "etc/apt/sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def detect_mirror(root: Path = Path("/")) -> str:
    """The mirror this machine already uses: the repo must not name one itself."""
    entries: list[SourceEntry] = []
    for f in apt_source_files(root):
        text = f.read_text(errors="replace")
        entries += parse_deb822_sources(text) if f.suffix == ".sources" else (
            parse_one_line_sources(text)
        )
    mirror = pick_mirror(entries)
    if not mirror:
        raise SandboxError(
            "no Debian mirror found in this machine's apt sources; pass --mirror URL"
        )
    return mirror


# --------------------------------------------------------------------------- registry image


def parse_registry_version(output: str) -> str:
    """`docker-registry --version` says e.g. '... 2.8.2+ds1'; the tag wants '2.8.2'."""
    m = re.search(r"\bv?(\d+\.\d+\.\d+)", output)
    if not m:
        raise SandboxError(f"cannot read a registry version from {output.strip()!r}")
    return m.group(1)


def parse_ldd(output: str) -> list[Path]:
    """Shared objects a binary loads, so the scratch image carries exactly those."""
    libs = []
    for line in output.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" ", 1)[0]
        else:
            target = line.split(" ", 1)[0]
        if target.startswith("/"):
            libs.append(Path(target))
    return libs


def registry_dockerfile(version: str) -> str:
    """ENTRYPOINT is the binary itself: the deploy runs `serve CONFIG` and execs
    `registry garbage-collect` inside, which both need /usr/bin/registry."""
    return f"""\
FROM scratch
COPY rootfs/ /
COPY --chown=1000:1000 data/ /var/lib/registry/
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL {LABEL}.registry="{version}" \\
      org.opencontainers.image.title="registry" \\
      org.opencontainers.image.version="{version}" \\
      org.opencontainers.image.description="distribution registry from Debian's docker-registry"
USER 1000:1000
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/usr/bin/registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
"""


# --------------------------------------------------------------------------- argv builders


def debootstrap_argv(distro: str, target: Path, mirror: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(BOOTSTRAP_PACKAGES),
        distro,
        str(target),
        mirror,
    ]


def import_argv(distro: str, mirror: str) -> list[str]:
    """container=docker tells systemd it is in a container (skips hardware units).
    (Docker 20.10 refuses STOPSIGNAL here, so `docker run` sets it.)"""
    changes = [
        'CMD ["/sbin/init"]',
        "ENV container=docker",
        f'LABEL {LABEL}.base="{distro}" {LABEL}.recipe="{BASE_RECIPE}" {LABEL}.mirror="{mirror}"',
    ]
    argv = ["docker", "import"]
    for c in changes:
        argv += ["--change", c]
    return [*argv, "-", base_image(distro)]


def run_argv(spec: HostSpec, ssh_port: int, registry_port: int) -> list[str]:
    """Not --privileged: it fails where CAP_SYS_RESOURCE is outside the bounding
    set. These options boot systemd on cgroup v1 and (per common practice) v2."""
    return [
        "docker", "run", "-d",
        "--name", spec.container,
        "--hostname", spec.hostname,
        "--label", f"{LABEL}={spec.sandbox}",
        "--label", f"{LABEL}.host={spec.name}",
        "--label", f"{LABEL}.distro={spec.distro}",
        "--cap-add", "ALL",
        "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined",
        "--security-opt", "apparmor=unconfined",
        # Writable /proc/sys, as on a real host: the hardened daemon.json turns
        # the userland proxy off, and dockerd then sets route_localnet.
        "--security-opt", "systempaths=unconfined",
        "--cgroupns=host",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run",
        "--tmpfs", "/run/lock",
        # How systemd wants to be asked to shut down cleanly.
        "--stop-signal", "SIGRTMIN+3",
        # A volume, so the nested dockerd gets overlay2 instead of slow vfs.
        "-v", f"{spec.volume}:/var/lib/docker",
        "-p", f"127.0.0.1:{ssh_port}:22",
        "-p", f"127.0.0.1:{registry_port}:{REGISTRY_PORT}",
        spec.image,
    ]


def ssh_argv(key: Path | str, port: int, *command: str) -> list[str]:
    """Throwaway hosts get new host keys every time: never record or check them."""
    return [
        "ssh", "-i", str(key), "-p", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
        f"{SSH_USER}@127.0.0.1", *command,
    ]


# --------------------------------------------------------------------------- ports


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


# --------------------------------------------------------------------------- status


def host_status(state: dict[str, Any], host: dict[str, Any],
                live: dict[str, Any] | None) -> dict[str, Any]:
    """One host as tools and tests consume it; live `docker inspect` wins over
    the recorded state (IPs move when containers restart)."""
    secrets = Path(state.get("secrets_dir") or secrets_dir())
    ssh_port = host["ssh_port"]
    reg_port = host["registry_published_port"]
    ip = host.get("ip")
    running = False
    if live is not None:
        ssh_port = published_port(live, 22) or ssh_port
        reg_port = published_port(live, REGISTRY_PORT) or reg_port
        running = bool((live.get("State") or {}).get("Running"))
        ip = container_ip(live) or ip
    registry_name = host["hostname"]
    return {
        "name": host["name"],
        "container": host["container"],
        "distro": host["distro"],
        "hostname": host["hostname"],
        "ip": ip,
        "ssh_host": "127.0.0.1",
        "ssh_port": ssh_port,
        "ssh_user": SSH_USER,
        "ssh_key": state["ssh_key"],
        "registry_name": registry_name,
        "registry_port": REGISTRY_PORT,
        "registry_published_port": reg_port,
        "registry_url": f"https://127.0.0.1:{reg_port}",
        "ca_path": str(paths.ca_cert_path(secrets, registry_name)),
        "demo_user": DEMO_USER,
        "demo_password_file": str(paths.password_path(secrets, registry_name, DEMO_USER)),
        "running": running,
    }


def status_document(state: dict[str, Any],
                    live: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The `status --json` shape; `live` maps container name to inspect data."""
    return {
        "name": state["name"],
        "ssh_key": state["ssh_key"],
        "registry_image": state["registry_image"],
        "registry_image_archive": state["registry_image_archive"],
        "hosts": [host_status(state, h, live.get(h["container"])) for h in state["hosts"]],
    }


def inventory_hosts(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """pyinfra host data for a status document: SSH on loopback plus the
    registry data a deploy needs to serve this host's name and IPs."""
    secrets = str(secrets_dir())
    hosts = []
    for h in doc["hosts"]:
        extra = ["localhost", "127.0.0.1"] + ([h["ip"]] if h.get("ip") else [])
        hosts.append((h["name"], {
            "ssh_hostname": h["ssh_host"],
            "ssh_port": h["ssh_port"],
            "ssh_user": h["ssh_user"],
            "ssh_key": h["ssh_key"],
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no",
            "sandbox_distro": h["distro"],
            "sandbox_container": h["container"],
            "registry_name": h["registry_name"],
            "registry_extra_names": extra,
            "registry_image": doc["registry_image"],
            "registry_image_archive": doc["registry_image_archive"],
            "registry_users": [DEMO_USER],
            # The operator's machine reaches the registry through the published port.
            "registry_api_url": h["registry_url"],
            "registry_secrets_dir": secrets,
        }))
    return hosts


def format_table(doc: dict[str, Any]) -> str:
    rows = [("HOST", "DISTRO", "STATE", "SSH", "REGISTRY", "IP")]
    for h in doc["hosts"]:
        rows.append((
            h["name"], h["distro"], "running" if h["running"] else "stopped",
            f"127.0.0.1:{h['ssh_port']}", h["registry_url"], h["ip"] or "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"sandbox {doc['name']}  (image {doc['registry_image']})"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if doc["hosts"]:
        lines.append(f"ssh: ssh -i {doc['ssh_key']} -p {doc['hosts'][0]['ssh_port']} "
                     "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1")
    return "\n".join(lines)


# --------------------------------------------------------------------------- state


def load_state(name: str | None = None) -> dict[str, Any]:
    """The recorded sandbox, or a one-line error saying how to make one."""
    name = name or default_name()
    p = state_path(name)
    try:
        state: dict[str, Any] = json.loads(p.read_text())
    except FileNotFoundError:
        raise SandboxError(
            f"no sandbox named {name!r} is up (no {p}); run `regops sandbox up --name {name}`"
        ) from None
    except json.JSONDecodeError as e:
        raise SandboxError(f"{p} is not valid JSON ({e}); run `regops sandbox down`") from None
    return state


def save_state(state: dict[str, Any]) -> None:
    p = state_path(state["name"])
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(p)


def ensure_ssh_key(path: Path) -> str:
    """One key pair per sandbox, made with `cryptography` so no ssh-keygen is needed."""
    pub_path = path.with_name(path.name + ".pub")
    if path.exists() and pub_path.exists():
        os.chmod(path, 0o600)
        return pub_path.read_text().strip()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() + f" regops-sandbox-{path.parent.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    pub_path.write_text(public + "\n")
    return public


# --------------------------------------------------------------------------- docker


Log = Callable[[str], None]


def _run(argv: Sequence[str], *, check: bool = True, input: str | None = None,
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
    cp = _run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    if cp.returncode != 0:
        raise SandboxError("the Docker engine is not reachable (`docker info` fails); "
                           "run scripts/setup")


def image_labels(ref: str) -> dict[str, str] | None:
    """None when the image is missing; its labels otherwise."""
    cp = _run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
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
    cp = _run(["docker", "container", "inspect", *names], check=False)
    try:
        for item in json.loads(cp.stdout or "[]"):
            result[item["Name"].lstrip("/")] = item
    except json.JSONDecodeError:
        pass
    return result


def _labelled(kind: str, name: str | None = None) -> list[str]:
    label = f"{LABEL}={name}" if name else LABEL
    if kind == "container":
        argv = ["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"]
    else:
        argv = ["docker", "volume", "ls", "--filter", f"label={label}", "--format", "{{.Name}}"]
    return _run(argv).stdout.split()


def reserved_ports() -> set[int]:
    """Host ports pinned by any sandbox container, even stopped ones."""
    used: set[int] = set()
    for info in inspect_containers(_labelled("container")).values():
        if info:
            used.update(p for p in (published_port(info, 22),
                                    published_port(info, REGISTRY_PORT)) if p)
    return used


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Serialise image builds between concurrent `up` runs (parallel CI jobs)."""
    sandbox_root().mkdir(parents=True, exist_ok=True)
    with open(sandbox_root() / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """A failed debootstrap can leave /proc or a bind of the host's /dev mounted
    inside the target: unmount first, and never rmtree through a mount."""
    for m in _mounts_under(path):
        subprocess.run(["umount", "-l", m], capture_output=True)
    left = _mounts_under(path)
    if left:
        raise SandboxError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    base = os.environ.get("REGOPS_SANDBOX_TMPDIR") or "/var/tmp"
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield d
    finally:
        _remove_tree(d)


# --------------------------------------------------------------------------- image builds


def customize_rootfs(rootfs: Path, distro: str, mirror: str) -> None:
    """Make a debootstrapped tree into a sandbox image: apt pointed at the
    mirror, no shared SSH host keys, no package cache."""
    (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {distro} main\n")
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    units = rootfs / "etc/systemd/system"
    (units / _HOSTKEY_UNIT_NAME).write_text(_HOSTKEY_UNIT)
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / _HOSTKEY_UNIT_NAME
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{_HOSTKEY_UNIT_NAME}")
    # A container cannot load kernel modules (the host's are not there), yet
    # trixie's systemd runs modules-load for its own modules.conf link and
    # fails without libkmod. Mask it so hosts report "running", as a VM
    # would, rather than "degraded".
    for unit in _MASKED_UNITS:
        masked = units / unit
        if not masked.is_symlink():
            masked.symlink_to("/dev/null")
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def build_base_image(distro: str, mirror: str, log: Log) -> None:
    """debootstrap + `docker import`: the only way to a Debian image here,
    since no registry can be pulled from."""
    if os.geteuid() != 0:
        raise SandboxError("building a sandbox base image needs root (debootstrap)")
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed; run scripts/setup")
    images_dir().mkdir(parents=True, exist_ok=True)
    logfile = images_dir() / f"debootstrap-{distro}.log"
    started = time.monotonic()
    with _workdir(f"regops-{distro}-") as work:
        rootfs = work / "rootfs"
        log(f"{distro}: debootstrap from {mirror} (log: {logfile})")
        with open(logfile, "w") as out:
            rc = subprocess.run(debootstrap_argv(distro, rootfs, mirror), stdout=out,
                                stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
            raise SandboxError(f"debootstrap {distro} failed (exit {rc}): {' | '.join(tail)}")
        customize_rootfs(rootfs, distro, mirror)
        log(f"{distro}: docker import {base_image(distro)}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run(import_argv(distro, mirror), stdin=tar.stdout,
                             capture_output=True, text=True)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise SandboxError(f"docker import of {distro} failed: {imp.stderr.strip()}")
    log(f"{distro}: base image built in {time.monotonic() - started:.0f}s")


def _base_is_current(distro: str) -> bool:
    labels = image_labels(base_image(distro))
    return labels is not None and labels.get(f"{LABEL}.recipe") == BASE_RECIPE


def ensure_base_images(distros: Iterable[str], mirror: str | None, rebuild: bool,
                       log: Log) -> None:
    """Build missing base images, several distros at once (debootstrap is mostly
    waiting on the network and dpkg, so two overlap well)."""
    with _lock("build-base"):
        todo = sorted({d for d in distros if rebuild or not _base_is_current(d)})
        if not todo:
            return
        mirror = mirror or detect_mirror()
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            futures = [pool.submit(build_base_image, d, mirror, log) for d in todo]
            errors = [f.exception() for f in futures]
        for e in errors:
            if e:
                raise e


def registry_binary_version(binary: str = REGISTRY_BINARY) -> str:
    if not Path(binary).exists():
        raise SandboxError(f"{binary} is missing; run scripts/setup (package docker-registry)")
    return parse_registry_version(_run([binary, "--version"]).stdout)


def build_registry_image(image: str, version: str, binary: str, log: Log) -> None:
    """A FROM scratch image around Debian's registry binary and the libs it
    links, since the official image cannot be pulled."""
    with _workdir("regops-registry-") as ctx:
        rootfs = ctx / "rootfs"
        for d in ("etc/docker/registry", "tmp", "usr/bin"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        # /var/lib/registry comes only from data/, so COPY --chown makes it the
        # registry user's (an anonymous volume then inherits that owner).
        (ctx / "data").mkdir()
        (rootfs / "tmp").chmod(0o1777)
        shutil.copy2(binary, rootfs / "usr/bin/registry")
        ldd = _run(["ldd", binary], check=False)
        libs = parse_ldd(ldd.stdout) if ldd.returncode == 0 else []
        cafile = Path("/etc/ssl/certs/ca-certificates.crt")
        for lib in [*libs, *([cafile] if cafile.exists() else [])]:
            dest = rootfs / str(lib).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib.resolve(), dest)
        (ctx / "Dockerfile").write_text(registry_dockerfile(version))
        log(f"registry: docker build {image} ({len(libs)} shared libraries)")
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        cp = subprocess.run(["docker", "build", "-q", "-t", image, str(ctx)],
                            capture_output=True, text=True, env=env)
        if cp.returncode != 0:
            raise SandboxError(f"docker build {image} failed: {cp.stderr.strip()[-400:]}")


def ensure_registry_image(rebuild: bool, log: Log) -> tuple[str, Path]:
    """The archive the deploy uploads to air-gapped hosts; built once, cached."""
    version = registry_binary_version()
    image = f"{REGISTRY_IMAGE_REPO}:{version}"
    archive = registry_archive_path(version)
    with _lock("build-registry"):
        if archive.exists() and not rebuild:
            return image, archive
        labels = image_labels(image)
        if rebuild or labels is None or f"{LABEL}.registry" not in labels:
            build_registry_image(image, version, REGISTRY_BINARY, log)
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_suffix(".tar.tmp")
        _run(["docker", "save", "-o", str(tmp), image])
        tmp.replace(archive)
        log(f"registry: saved {image} to {archive}")
    return image, archive


# --------------------------------------------------------------------------- hosts


def _start_host(spec: HostSpec, live: dict[str, Any] | None, log: Log) -> None:
    """Create (or restart) one container; ports are pinned and retried on a race."""
    if live is not None:
        if not (live.get("State") or {}).get("Running"):
            log(f"{spec.name}: starting stopped container {spec.container}")
            _run(["docker", "start", spec.container])
        return
    _run(["docker", "volume", "create", "--label", f"{LABEL}={spec.sandbox}", spec.volume])
    reserved = reserved_ports()
    for attempt in range(5):
        ssh_port = free_port(reserved)
        reg_port = free_port(reserved | {ssh_port})
        cp = _run(run_argv(spec, ssh_port, reg_port), check=False)
        if cp.returncode == 0:
            log(f"{spec.name}: started {spec.container} ({spec.distro}, ssh 127.0.0.1:{ssh_port})")
            return
        _run(["docker", "rm", "-f", spec.container], check=False)
        err = cp.stderr.strip()
        if "already allocated" not in err and "address already in use" not in err:
            raise SandboxError(f"docker run {spec.container} failed: {err}")
        reserved |= {ssh_port, reg_port}
        log(f"{spec.name}: port taken, retrying ({attempt + 1})")
    raise SandboxError(f"could not publish ports for {spec.container}")


def _install_key(container: str, public_key: str) -> None:
    _run(["docker", "exec", "-i", container, "sh", "-c",
          "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys"],
         input=public_key + "\n")


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_ready(container: str, ssh_port: int, key: Path, timeout: float) -> str:
    """Ready means systemd finished booting and a key login over SSH works,
    the same path the deploy and tests take."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        cp = _run(["docker", "exec", container, "systemctl", "is-system-running"],
                  check=False, timeout=30)
        state = cp.stdout.strip() or "unknown"
        if state in ("running", "degraded"):
            break
        if state in ("maintenance", "stopping"):
            raise SandboxError(f"{container}: systemd is {state}")
        time.sleep(1)
    else:
        raise SandboxError(f"{container}: systemd still {state} after {timeout:.0f}s")
    while time.monotonic() < deadline:
        if _ssh_banner(ssh_port):
            if shutil.which("ssh") is None:
                return state
            if _run(ssh_argv(key, ssh_port, "true"), check=False, timeout=30).returncode == 0:
                return state
        time.sleep(1)
    raise SandboxError(f"{container}: sshd on 127.0.0.1:{ssh_port} does not accept the key")


def up(name: str, hosts: int | None, distros: Sequence[str], mirror: str | None = None,
       rebuild: bool = False, timeout: float = 180, log: Log = lambda _m: None
       ) -> dict[str, Any]:
    """Make the sandbox match the request, reusing whatever already runs."""
    validate_name(name)
    require_docker()
    with _lock(f"up-{name}"):  # two `up`s of one sandbox would race for its hosts
        return _up(name, hosts, distros, mirror, rebuild, timeout, log)


def _up(name: str, hosts: int | None, distros: Sequence[str], mirror: str | None,
        rebuild: bool, timeout: float, log: Log) -> dict[str, Any]:
    try:
        state = load_state(name)
    except SandboxError:
        state = {"version": STATE_VERSION, "name": name, "hosts": []}
    known = set(_labelled("container", name)) | {h["container"] for h in state["hosts"]}
    live_all = inspect_containers(sorted(known))
    existing = {int(h["name"][2:]): h["distro"] for h in state["hosts"]}
    for info in live_all.values():
        labels = ((info or {}).get("Config") or {}).get("Labels") or {}
        host = labels.get(f"{LABEL}.host", "")
        if host.startswith("sb") and host[2:].isdigit():
            existing.setdefault(int(host[2:]), labels.get(f"{LABEL}.distro", DEFAULT_DISTRO))
    specs = plan_hosts(name, hosts, distros, existing)

    ensure_base_images({s.distro for s in specs}, mirror, rebuild, log)
    image, archive = ensure_registry_image(rebuild, log)
    key = key_path(name)
    public_key = ensure_ssh_key(key)
    state.update({
        "version": STATE_VERSION, "ssh_key": str(key), "registry_image": image,
        "registry_image_archive": str(archive), "secrets_dir": str(secrets_dir()),
    })
    state.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    by_name = {h["name"]: h for h in state["hosts"]}

    for spec in specs:
        _start_host(spec, live_all.get(spec.container), log)
        info = inspect_containers([spec.container])[spec.container] or {}
        by_name[spec.name] = {
            "name": spec.name, "container": spec.container, "distro": spec.distro,
            "hostname": spec.hostname, "volume": spec.volume, "image": spec.image,
            "ssh_port": published_port(info, 22),
            "registry_published_port": published_port(info, REGISTRY_PORT),
            "ip": container_ip(info),
        }
        state["hosts"] = sorted(by_name.values(), key=lambda h: int(h["name"][2:]))
        save_state(state)  # record early so `down` finds a half-made sandbox
        _install_key(spec.container, public_key)

    def ready(h: dict[str, Any]) -> None:
        s = wait_ready(h["container"], h["ssh_port"], key, timeout)
        log(f"{h['name']}: systemd {s}, ssh ok")

    with ThreadPoolExecutor(max_workers=max(1, len(state["hosts"]))) as pool:
        for f in [pool.submit(ready, h) for h in state["hosts"]]:
            f.result()
    doc = status(name)
    for h in state["hosts"]:  # IPs are only final once containers run
        h["ip"] = next(x["ip"] for x in doc["hosts"] if x["name"] == h["name"])
    save_state(state)
    return doc


def status(name: str | None = None) -> dict[str, Any]:
    state = load_state(name)
    try:
        live = inspect_containers(h["container"] for h in state["hosts"])
    except SandboxError:  # no docker here: report what was recorded
        live = {}
    return status_document(state, live)


def down(name: str, log: Log = lambda _m: None) -> int:
    """Remove containers, volumes and state; keep base images and the registry
    archive because they are slow to build and shared between sandboxes."""
    validate_name(name)
    require_docker()
    containers = set(_labelled("container", name))
    volumes = set(_labelled("volume", name))
    with contextlib.suppress(SandboxError):
        for h in load_state(name)["hosts"]:
            containers.add(h["container"])
            volumes.add(h.get("volume") or f"{h['container']}-docker")
    present = {c for c, i in inspect_containers(sorted(containers)).items() if i}
    if present:
        _run(["docker", "rm", "-f", "-v", *sorted(present)])
        log(f"removed containers: {', '.join(sorted(present))}")
    existing_vols = set(_labelled("volume")) | set(
        _run(["docker", "volume", "ls", "--format", "{{.Name}}"]).stdout.split())
    gone = sorted(volumes & existing_vols)
    if gone:
        _run(["docker", "volume", "rm", "-f", *gone])
        log(f"removed volumes: {', '.join(gone)}")
    d = sandbox_dir(name)
    if d.exists():
        shutil.rmtree(d)
        log(f"removed {d}")
    return len(present)


# --------------------------------------------------------------------------- CLI


def _logger() -> Log:
    started = time.monotonic()

    def log(msg: str) -> None:
        click.echo(f"[sandbox {time.monotonic() - started:5.1f}s] {msg}", err=True)

    return log


_name_option = click.option(
    "--name", default=default_name, show_default="$REGOPS_SANDBOX or regops",
    help="Sandbox name; several sandboxes can run side by side.",
)


@click.group()
def sandbox() -> None:
    """Throwaway Debian hosts (systemd containers) reachable over SSH on 127.0.0.1."""


@sandbox.command("up")
@click.option("--hosts", type=click.IntRange(min=1), default=None,
              help="Number of hosts [default: 1, or one per --distro].")
@click.option("--distro", "distros", multiple=True, type=click.Choice(DISTROS),
              help="Debian release; repeat to give hosts different ones [default: bookworm].")
@_name_option
@click.option("--mirror", envvar="REGOPS_MIRROR", default=None,
              help="Debian mirror URL [default: the first one in this machine's apt sources].")
@click.option("--rebuild", is_flag=True, help="Rebuild base images and the registry image.")
@click.option("--timeout", type=float, default=180, show_default=True,
              help="Seconds to wait for each host to boot and answer SSH.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def up_cmd(hosts: int | None, distros: tuple[str, ...], name: str, mirror: str | None,
           rebuild: bool, timeout: float, as_json: bool) -> None:
    """Create or complete a sandbox (idempotent: running hosts are reused)."""
    log = _logger()
    try:
        doc = up(name, hosts, distros, mirror=mirror, rebuild=rebuild, timeout=timeout, log=log)
    except SandboxError as e:
        raise click.ClickException(str(e)) from None
    log("ready")
    click.echo(json.dumps(doc, indent=2) if as_json else format_table(doc))


@sandbox.command("status")
@_name_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(name: str, as_json: bool) -> None:
    """Show the hosts of a sandbox and how to reach them."""
    try:
        doc = status(name)
    except SandboxError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(doc, indent=2) if as_json else format_table(doc))


@sandbox.command("down")
@_name_option
def down_cmd(name: str) -> None:
    """Remove a sandbox's containers, volumes and state (cached images stay)."""
    try:
        n = down(name, log=_logger())
    except SandboxError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"sandbox {name}: removed {n} container(s)")


@sandbox.command("verify")
@_name_option
def verify_cmd(name: str) -> None:
    """Prove each deployed sandbox registry works: TLS, login, push, pull, 401."""
    from regops.verify import push_pull

    try:
        doc = status(name)
    except SandboxError as e:
        raise click.ClickException(str(e)) from None
    for h in doc["hosts"]:
        password_file = Path(h["demo_password_file"])
        if not Path(h["ca_path"]).is_file() or not password_file.is_file():
            raise click.ClickException(
                f"{h['name']}: not deployed yet (run: pyinfra -y inventories/sandbox.py deploy.py)"
            )
        try:
            lines = push_pull(f"127.0.0.1:{h['registry_published_port']}", h["ca_path"],
                              h["demo_user"], password_file.read_text().strip())
        except (RuntimeError, OSError) as e:
            raise click.ClickException(f"{h['name']}: {e}") from None
        for line in lines:
            click.echo(f"{h['name']}: {line}")
    click.echo(f"sandbox {name}: the registry works")
