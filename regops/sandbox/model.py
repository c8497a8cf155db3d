"""What a sandbox is: its names, hosts, paths and recorded state (no Docker here)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regops.errors import RegopsError
from regops.secrets import paths

DISTROS = ("bookworm", "trixie")
DEFAULT_DISTRO = "bookworm"
DEFAULT_NAME = "regops"
BASE_IMAGE_REPO = "regops-sandbox-base"
REGISTRY_IMAGE_REPO = "regops/registry"
LABEL = "regops.sandbox"
SSH_USER = "root"
REGISTRY_PORT = 5000
DEMO_USER = "demo"
# The sandbox shows the access model (docs/access.md): teams in their
# namespaces, public pulls without a login, a CI robot, and one expired robot the
# token service refuses. The demo user is an admin, so day-2 commands can do it all.
# Tokens live the shortest allowed time, so clients renew them while tests watch.
# The docs' example groups and rules, which the tests of the rules use too.
EXAMPLE_GROUPS: dict[str, list[str]] = {"platform": ["alice", "bob"]}
EXAMPLE_ACCESS: list[dict[str, Any]] = [
    {"repositories": "platform/**", "who": ["group:platform"],
     "actions": ["pull", "push", "delete"]},
    {"repositories": "public/**", "who": ["anonymous"], "actions": ["pull"]},
    {"repositories": "${user}/**", "who": ["authenticated"],
     "actions": ["pull", "push", "delete"]},
    {"repositories": "**", "who": ["authenticated"], "actions": ["pull"]},
]
ACCESS_DATA: dict[str, Any] = {
    "registry_token_ttl": 60,
    "registry_users": [DEMO_USER, "alice", "bob", "carol", "ci"],
    "registry_groups": EXAMPLE_GROUPS,
    "registry_admins": [DEMO_USER, "alice"],
    "registry_access": EXAMPLE_ACCESS,
    "registry_robots": {
        "ci-platform": {"repositories": ["platform/**"], "actions": ["pull", "push"],
                        "expires": "2099-12-31"},
        "ci-retired": {"repositories": ["platform/**"], "actions": ["pull", "push"],
                       "expires": "2026-01-31"},
    },
}
# Shapes `regops sandbox up --topology` makes. `single`: every host its own registry.
# `ha`: one registry name on six hosts: a load balancer, two replicas on S3, and three
# storage hosts that serve their bucket and survive losing one (docs/storage.md: Object storage
# and replicas). More hosts than a shape names are replicas.
TOPOLOGIES: dict[str, tuple[str, ...]] = {
    "single": (),
    "ha": ("load_balancer", "registry", "registry", "storage", "storage", "storage"),
}
HA_BUCKET = "images"
REGISTRY_BINARY = "/usr/bin/docker-registry"
STATE_VERSION = 1

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")

Log = Callable[[str], None]


class SandboxError(RegopsError):
    """A sandbox operation failed in a way the operator can act on."""


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

    @property
    def network(self) -> str:
        return network_name(self.sandbox)


def network_name(sandbox: str) -> str:
    """The sandbox's own bridge network (its hosts keep their addresses on it)."""
    return f"{sandbox}-net"


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


