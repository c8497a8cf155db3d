"""Read a pyinfra inventory the way `pyinfra INVENTORY deploy.py` does, for the
day-2 and compliance commands: the same hosts, the same data, the same checks."""

from __future__ import annotations

import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regops.config.settings import (
    ConfigError,
    Settings,
    check_data,
    load,
    load_in_group,
    tls_names,
)


@dataclass(frozen=True)
class InventoryHost:
    name: str
    data: dict[str, Any]
    # Every host's data in the inventory: the hosts of one registry name are read
    # together (replicas must agree; a storage host gives them their endpoint).
    peers: dict[str, dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def ssh_target(self) -> dict[str, Any]:
        """How to reach the host over SSH, from pyinfra's connector data."""
        d = self.data
        return {
            "hostname": d.get("ssh_hostname") or self.name,
            "port": int(d.get("ssh_port") or 22),
            "user": d.get("ssh_user") or "root",
            "key": d.get("ssh_key"),
            "sudo": bool(d.get("_sudo")),
        }

    def ssh_argv(self, command: str) -> list[str]:
        """`ssh` running `command` as root on the host (a session the caller keeps open)."""
        t = self.ssh_target()
        checking = str(self.data.get("ssh_strict_host_key_checking") or "accept-new")
        argv = ["ssh", "-p", str(t["port"]), "-o", f"StrictHostKeyChecking={checking}",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=15", "-o", "BatchMode=yes",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if self.data.get("ssh_known_hosts_file"):
            argv += ["-o", f"UserKnownHostsFile={self.data['ssh_known_hosts_file']}"]
        if t["key"]:
            argv += ["-i", str(t["key"])]
        sudo = "sudo -n " if t["sudo"] else ""
        return [*argv, f"{t['user']}@{t['hostname']}", f"{sudo}{command}"]

    def testinfra(self) -> Any:
        """A testinfra host over SSH (read-only use: checks and status)."""
        import testinfra

        t = self.ssh_target()
        # Host keys as pyinfra treats them: checked (new hosts accepted once)
        # unless the inventory turns checking off, as the sandbox's does.
        checking = str(self.data.get("ssh_strict_host_key_checking") or "accept-new")
        options = f"-o StrictHostKeyChecking={checking} -o LogLevel=ERROR"
        if self.data.get("ssh_known_hosts_file"):
            options += f" -o UserKnownHostsFile={self.data['ssh_known_hosts_file']}"
        # A host that stops answering ends the command instead of hanging it.
        options += " -o ConnectTimeout=15 -o ServerAliveInterval=15 -o ServerAliveCountMax=4"
        kwargs: dict[str, Any] = {"ssh_extra_args": options, "sudo": t["sudo"]}
        if t["key"]:
            kwargs["ssh_identity_file"] = t["key"]
        return testinfra.get_host(f"ssh://{t['user']}@{t['hostname']}:{t['port']}", **kwargs)

    def settings(self, environ: dict[str, str] | None = None) -> Settings:
        """Full settings; resolves (and may generate) passwords operator-side."""
        if self.peers is not None:
            return load_in_group(self.name, self.data, self.peers, environ=environ)
        return load(self.name, self.data, environ=environ)

    def checked_data(self) -> dict[str, Any]:
        """Defaults merged and checked, without touching secrets."""
        return check_data(self.name, self.data)

    def settings_without_secrets(self) -> Settings:
        """Settings for reading (checks, the access rules): the data validated, users
        left out so no password is resolved or generated."""
        data = self.checked_data()
        return Settings(
            host=self.name, data=data, registry_name=data["registry_name"],
            major_version=data["registry_major_version"], tls_names=tls_names(data),
            secrets_root=Path(data["registry_secrets_dir"]).absolute(), users=[],
        )


def _group_data(directory: Path, group: str) -> dict[str, Any]:
    path = directory / f"{group}.py"
    if not path.is_file():
        return {}
    return {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("_")}


def _entries(value: Any) -> list[tuple[str, dict[str, Any]]] | None:
    """A group's hosts, or None if the module attribute is not a host list."""
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[1], dict)
        and (isinstance(value[0], list))
    ):
        value = value[0]  # (hosts, group data) form
    if not isinstance(value, list):
        return None
    hosts: list[tuple[str, dict[str, Any]]] = []
    for entry in value:
        if isinstance(entry, str):
            hosts.append((entry, {}))
        elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict):
            hosts.append((str(entry[0]), dict(entry[1])))
        else:
            return None
    return hosts


def load_inventory(path: str, limit: list[str] | None = None,
                   roles: tuple[str, ...] | None = ("registry",)) -> list[InventoryHost]:
    """Hosts of a pyinfra inventory file with their data merged as pyinfra merges it:
    group_data/all.py, then group_data/<group>.py, then the host's own data.

    Only hosts of `roles` (`registry_role`; None: all): the day-2 commands work on
    registries, and load balancers and storage hosts have none."""
    if not Path(path).is_file():
        raise ConfigError(path, "inventory", "no such file")
    namespace = runpy.run_path(path)
    # Like pyinfra: group_data/ beside the inventory, then in the working directory.
    group_dirs = list(dict.fromkeys([Path(path).resolve().parent / "group_data",
                                     Path(os.getcwd()).resolve() / "group_data"]))
    merged: dict[str, dict[str, Any]] = {}
    groups_of: dict[str, list[str]] = {}
    for group, value in namespace.items():
        entries = None if group.startswith("_") else _entries(value)
        if entries is None:
            continue
        for name, data in entries:
            merged.setdefault(name, {}).update(data)
            groups_of.setdefault(name, []).append(group)
    every: dict[str, dict[str, Any]] = {}
    for name, data in merged.items():
        combined: dict[str, Any] = {}
        for group in ["all", *groups_of[name]]:
            for directory in group_dirs:
                combined.update(_group_data(directory, group))
        combined.update(data)
        every[name] = combined
    hosts = [InventoryHost(name, combined, peers=every) for name, combined in every.items()
             if roles is None or combined.get("registry_role", "registry") in roles]
    if limit:
        hosts = [h for h in hosts if h.name in limit]
    return hosts


def group_members(namespace: dict[str, Any], group: str) -> list[str] | None:
    """Host names of a group in an executed inventory module; None if there is no such group."""
    if group.startswith("_") or group not in namespace:
        return None
    entries = _entries(namespace[group])
    return None if entries is None else [name for name, _ in entries]
