"""What a host looks like, read over SSH in one read-only command.

One command instead of one per check: each SSH round trip costs a connection,
and a single snapshot means every check sees the same moment. The command
only runs `stat`, `cat`, `docker inspect`/`info` and reads /proc; it never
reads a secret (the key, htpasswd and registry config are only `stat`ed).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from regops import hostpaths
from regops.compliance.model import Unavailable
from regops.config.settings import Settings
from regops.hostops import remote
from regops.hostops.status import role_services

DOCKER_TIMEOUT = 30  # seconds for each docker call: a hung daemon must not hang the run


@dataclass(frozen=True)
class Stat:
    path: str
    kind: str
    user: str
    group: str
    uid: int
    gid: int
    mode: int
    mtime: int
    ctime: int


def paths_to_stat(s: Settings) -> list[str]:
    config_dir = s["registry_config_dir"]
    return [
        "/etc/docker", "/etc/docker/daemon.json", hostpaths.DOCKER_SOCK, "/etc/docker/certs.d",
        certs_d(s), f"{certs_d(s)}/ca.crt",
        hostpaths.FRONTDOOR_KEY, f"{config_dir}/htpasswd",
        s["registry_data_dir"], hostpaths.GC_SCRIPT, hostpaths.GC_SERVICE, hostpaths.GC_TIMER,
        hostpaths.GC_STATE,
        hostpaths.TOKEN_DIR, hostpaths.TOKEN_KEY, hostpaths.TOKEN_USERS, hostpaths.TOKEN_ROBOTS,
        hostpaths.TOKEN_NOTIFY_SECRET, hostpaths.TOKEN_CONFIG, hostpaths.AUDIT_LOG,
    ]


# What `systemctl show` tells of the token service's sandboxing (token.hardened).
TOKEN_UNIT_PROPERTIES = (
    "ActiveState", "User", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
    "PrivateDevices", "CapabilityBoundingSet", "AmbientCapabilities", "RestrictSUIDSGID",
    "MemoryMax",
)


def certs_d(s: Settings) -> str:
    return hostpaths.certs_d(s.registry_address)


LISTEN_COMMAND = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"  # for listening()
# The token service's own directory code, from the host, with its config (root reads it).
DIRECTORY_PROBE = (f"timeout 30 env PYTHONPATH={hostpaths.TOKEN_CODE} python3 -m "
                   f"regops_token.probe --config {hostpaths.TOKEN_CONFIG}")
STAT_FORMAT = "%n\t%F\t%U\t%G\t%u\t%g\t%a\t%Y\t%Z"  # what parse_stat reads


def stat_command(paths: list[str]) -> str:
    """Owner, mode and times of `paths` (the missing ones left out), for parse_stat."""
    return (f"stat -L -c '{STAT_FORMAT}' " + " ".join(shlex.quote(p) for p in paths)
            + " 2>/dev/null")


def free_space_command(directory: str) -> str:
    """Blocks, available blocks and block size of `directory`'s file system (disk_free)."""
    return f"stat -f -c '%b %a %S' {shlex.quote(directory)}"


def role_paths(s: Settings) -> list[str]:
    """What a load balancer's or storage host's checks stat."""
    if s.role == "load_balancer":
        return [hostpaths.HAPROXY_CONFIG, hostpaths.HAPROXY_CA]
    return [hostpaths.SEAWEEDFS_DIR, hostpaths.SEAWEEDFS_S3_CONFIG, hostpaths.WEED_BINARY,
            s["registry_seaweedfs_data_dir"]]


def role_sections(s: Settings, services: list[str]) -> dict[str, str]:
    """A load balancer or storage host: its services, files, listening sockets, and for
    a storage host who runs weed and the free space of its data directory."""
    found = {
        "now": "date +%s",
        "units": "; ".join(f"echo {u} $(systemctl is-active {u}) $(systemctl is-enabled {u})"
                           for u in services),
        "stat": stat_command(role_paths(s)),
        "listen": LISTEN_COMMAND,
    }
    if s.role == "storage":
        found["weed_users"] = "ps -C weed -o user= | sort -u"
        found["data_fs"] = free_space_command(s["registry_seaweedfs_data_dir"])
    return found


def sections(s: Settings) -> dict[str, str]:
    """Section name -> shell command; each command only reads."""
    if s.role != "registry":
        return role_sections(s, role_services(s))
    d = s.data
    docker = f"timeout {DOCKER_TIMEOUT} docker"
    return {
        "now": "date +%s",
        "docker_info": f"{docker} info --format '{{{{json .}}}}'",
        "bridge": f"{docker} network inspect bridge --format '{{{{json .Options}}}}'",
        "daemon_json": "cat /etc/docker/daemon.json",
        "container": f"{docker} inspect --type container "
                     f"{shlex.quote(d['registry_container_name'])}",
        "image": f"{docker} image inspect --format '{{{{.Id}}}}' "
                 f"{shlex.quote(d['registry_image'])}",
        "stat": stat_command(paths_to_stat(s)),
        "certs_d_files": f"find {shlex.quote(certs_d(s))} -mindepth 1 -maxdepth 1 "
                         f"-printf '%p\\t%y\\t%u\\t%g\\t%U\\t%G\\t%m\\n'",
        "gc_state": f"cat {hostpaths.GC_STATE}",
        "gc_timer": "systemctl show regops-gc.timer -p ActiveState,UnitFileState,Triggers",
        "nginx_active": "systemctl is-active nginx",
        "token_unit": "systemctl show regops-token -p "
                      + ",".join(TOKEN_UNIT_PROPERTIES),
        "frontdoor_mode": f"readlink {hostpaths.FRONTDOOR_MODE_LINK}",
        "data_fs": free_space_command(d["registry_data_dir"]),
        "listen": LISTEN_COMMAND,
        **({"directory": DIRECTORY_PROBE} if s.token_auth else {}),
    }


def script(s: Settings) -> str:
    """All sections in one bounded, read-only shell command."""
    return remote.script(sections(s))


def parse_stat(text: str) -> dict[str, Stat]:
    stats = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 9:
            continue
        path, kind, user, group, uid, gid, mode, mtime, ctime = fields
        stats[path.rstrip("/") or "/"] = Stat(path, kind, user, group, int(uid), int(gid),
                                              int(mode, 8), int(mtime), int(ctime))
    return stats


def listening(proc_net_tcp: str) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket in /proc/net/tcp{,6} text."""
    found = []
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A" or ":" not in fields[1]:
            continue
        address_hex, port_hex = fields[1].rsplit(":", 1)
        found.append((_address(address_hex), int(port_hex, 16)))
    return found


def _address(hex_text: str) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_text)
    # /proc prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


@dataclass
class HostFacts:
    """The snapshot, or why there is none; accessors raise Unavailable for missing parts."""

    sections: dict[str, tuple[int, str]] = field(default_factory=dict)
    unreachable: str | None = None

    def _section(self, name: str) -> tuple[int, str]:
        if self.unreachable is not None:
            raise Unavailable(self.unreachable)
        if name not in self.sections:
            raise Unavailable(f"the host did not answer for {name}")
        return self.sections[name]

    def text(self, name: str, missing: str) -> str:
        rc, out = self._section(name)
        if rc != 0:
            raise Unavailable(f"{missing}: {first_line(out)}")
        return out

    def optional_text(self, name: str) -> str | None:
        rc, out = self._section(name)
        return out if rc == 0 else None

    def json(self, name: str, missing: str) -> Any:
        text = self.text(name, missing)
        try:
            return json.loads(text)
        except ValueError:
            raise Unavailable(f"{missing}: not JSON: {first_line(text)}") from None

    def now(self) -> int:
        return int(self.text("now", "cannot read the host's clock").strip())

    def container(self) -> dict[str, Any]:
        found = self.json("container", "no registry container on the host")
        if not found:
            raise Unavailable("no registry container on the host")
        return found[0]

    def docker_info(self) -> dict[str, Any]:
        return self.json("docker_info", "Docker does not answer on the host")

    def stats(self) -> dict[str, Stat]:
        return parse_stat(self._section("stat")[1])

    def stat(self, path: str) -> Stat | None:
        return self.stats().get(path.rstrip("/"))

    def units(self) -> list[tuple[str, str, str]]:
        """(service, is-active, is-enabled) of a load balancer's or storage host's units."""
        text = self.text("units", "cannot ask systemd")
        return [(w[0], w[1] if len(w) > 1 else "unknown", w[2] if len(w) > 2 else "unknown")
                for w in (line.split() for line in text.splitlines()) if w]


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else "(no output)"


def collect(run: Callable[[str], Any], s: Settings) -> HostFacts:
    """Run the snapshot command through `run` (testinfra's `host.run`)."""
    try:
        result = run(script(s))
    except Exception as error:  # noqa: BLE001 - any SSH failure is "unreachable", not a crash
        return HostFacts(unreachable=f"cannot reach the host over SSH: {remote.ssh_problem(error)}")
    found = remote.parse(result.stdout)
    if not found:
        reason = first_line(result.stderr or result.stdout)
        return HostFacts(unreachable=f"the host gave no readable answer: {reason}")
    return HostFacts(sections=found)
