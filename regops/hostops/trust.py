"""`regops trust`: make Docker on client hosts trust a registry's CA and log in to
it (the trust deploy), then check both on each client."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import runpy
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import TRUST_DEPLOY
from regops.errors import RegopsError, UsageError
from regops.hostops.remote import (
    load_hosts,
    load_settings,
    pyinfra_tail,
    q,
    run_pyinfra,
    run_remote,
    script,
    summarize,
    texts,
)
from regops.inventory import InventoryHost, group_members
from regops.registry import endpoint
from regops.util import parallel_all


@dataclass(frozen=True)
class TrustTarget:
    """What a client needs: the registry address, its CA (None: system trust), a login."""

    host: str
    address: str
    ca_pem: bytes | None
    user: str
    password: str = ""
    mirror: str | None = None  # https://address, for the clients' registry-mirrors

    def __repr__(self) -> str:
        return f"TrustTarget({self.address}, user={self.user}, mirror={self.mirror})"


TRUST_ENV = ("REGOPS_TRUST_INVENTORY", "REGOPS_TRUST_REGISTRY", "REGOPS_TRUST_USER",
             "REGOPS_TRUST_MIRROR")
# Docker's registry-mirrors apply to Docker Hub's images only.
DOCKER_HUB = frozenset({"registry-1.docker.io", "docker.io", "index.docker.io",
                        "registry.hub.docker.com"})


def caches_docker_hub(s: Settings) -> bool:
    upstream = s["registry_proxy_remote_url"]
    return bool(upstream) and (urllib.parse.urlsplit(upstream).hostname or "") in DOCKER_HUB


def merge_mirror(host: str, current: str | None, mirror: str) -> str | None:
    """daemon.json with `mirror` among its registry-mirrors, every other setting kept;
    None when it is there already. Raises UsageError (one line) for a file Docker
    could not read either."""
    path = hostpaths.DAEMON_JSON
    try:
        doc = json.loads(current) if current and current.strip() else {}
    except ValueError as error:
        raise UsageError(f"{host}: {path}: not JSON ({error}); nothing changed") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{host}: {path}: not a JSON object; nothing changed")
    mirrors = doc.get("registry-mirrors", [])
    if not isinstance(mirrors, list):
        raise UsageError(f"{host}: {path}: registry-mirrors is not a list; nothing changed")
    if mirror in mirrors or mirror + "/" in mirrors:
        return None
    doc["registry-mirrors"] = [*mirrors, mirror]
    return json.dumps(doc, indent=2) + "\n"


def pick_registry(pairs: Sequence[tuple[InventoryHost, Settings]], wanted: str | None
                  ) -> tuple[InventoryHost, Settings]:
    """The registry clients should trust: by host or registry name, or the only one."""
    if wanted:
        for h, s in pairs:
            if wanted in (h.name, s.registry_name, s.registry_address):
                return h, s
        raise UsageError(f"no registry host or name {wanted!r} in the inventory")
    addresses = sorted({s.registry_address for _, s in pairs})
    if len(addresses) != 1:
        raise UsageError(f"the inventory serves {len(addresses)} registries "
                         f"({', '.join(addresses)}); choose one with --registry")
    return pairs[0]


@functools.lru_cache(maxsize=8)
def trust_target(inventory: str, registry: str | None, user: str | None,
                 mirror: bool | None = None) -> TrustTarget:
    """Resolved once per process (pyinfra runs the deploy file once per client host).
    `mirror` None: a cache of Docker Hub becomes the clients' mirror, nothing else."""
    h, s = pick_registry(load_settings(load_hosts(inventory)), registry)
    chosen = next((u for u in s.users if u.name == user), None) if user else s.users[0]
    if chosen is None:
        raise UsageError(f"no user {user!r} on registry {s.registry_address} "
                         "(`regops users list` shows the users)")
    ca = endpoint.ca_file(s)
    if ca and not Path(ca).is_file():
        raise UsageError(f"no CA certificate at {ca}: deploy {h.name} first")
    ca_pem = Path(ca).read_bytes() if ca else None  # None: a provided cert of a public CA
    as_mirror = caches_docker_hub(s) if mirror is None else mirror
    return TrustTarget(h.name, s.registry_address, ca_pem, chosen.name, chosen.password,
                       f"https://{s.registry_address}" if as_mirror else None)


def trust_target_from_env() -> TrustTarget:
    """For deploy/trust.py: which registry and user, from the environment regops sets."""
    missing = [k for k in TRUST_ENV[:2] if not os.environ.get(k)]
    if missing:
        raise UsageError(f"deploy/trust.py needs {', '.join(missing)} (run `regops trust`)")
    mirror = {"1": True, "0": False}.get(os.environ.get("REGOPS_TRUST_MIRROR", ""))
    return trust_target(str(Path(os.environ["REGOPS_TRUST_INVENTORY"]).resolve()),
                        os.environ["REGOPS_TRUST_REGISTRY"],
                        os.environ.get("REGOPS_TRUST_USER") or None, mirror)


def trust_login_command(address: str, user: str, password_file: str) -> str:
    """docker login reading the password from a file, which is removed whatever happens."""
    return (f"rc=0; docker login --username {q(user)} --password-stdin {q(address)} "
            f"<{q(password_file)} >/dev/null || rc=$?; rm -f {q(password_file)}; exit $rc")


DOCKER_CHECK = (
    "if ! command -v docker >/dev/null 2>&1; then echo missing; "
    "elif ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then echo down; "
    "else echo ok; fi"
)


def docker_problem(answer: str) -> str | None:
    """One line for a client whose Docker cannot log in, from `DOCKER_CHECK` output."""
    word = answer.strip().splitlines()[-1] if answer.strip() else ""
    return {
        "ok": None,
        "missing": "docker is not installed: install Docker on it first",
        "down": "the Docker daemon is not running (docker version fails)",
    }.get(word, f"cannot tell whether Docker works ({word or 'no answer'})")


def trust_check_command(target: TrustTarget) -> str:
    ca = f"{hostpaths.certs_d(target.address)}/ca.crt"
    return script(
        {
            "ca": f"sha256sum {q(ca)} | cut -d' ' -f1",
            "auth": 'home=$(getent passwd "$(id -u)" | cut -d: -f6); '
            f'grep -qF {q(json.dumps(target.address))} "$home/.docker/config.json" '
            "&& echo yes || echo no",
            # What the daemon uses now, not only what its file says (a mirror only).
            **({"mirrors": "docker info --format '{{json .RegistryConfig.Mirrors}}'"}
               if target.mirror else {}),
        }
    )


def trust_verdict(target: TrustTarget, remote: str) -> str | None:
    """None if the client trusts the CA and holds a login for the registry (pure)."""
    parts = texts(remote)
    if target.ca_pem is not None and parts.get("ca") != hashlib.sha256(target.ca_pem).hexdigest():
        return f"{hostpaths.certs_d(target.address)}/ca.crt is missing or not the registry's CA"
    if parts.get("auth") != "yes":
        return f"no stored docker login for {target.address}"
    if target.mirror:
        try:
            mirrors = [m.rstrip("/") for m in json.loads(parts.get("mirrors") or "null") or []]
        except ValueError:
            mirrors = []
        if target.mirror not in mirrors:
            return f"the Docker daemon does not use {target.mirror} as a registry mirror"
    return None


def client_hosts(clients_inventory: str, group: str, limit: Sequence[str]
                 ) -> list[InventoryHost]:
    if not Path(clients_inventory).is_file():
        raise UsageError(f"{clients_inventory}: inventory: no such file")
    try:
        namespace = runpy.run_path(clients_inventory)
    except Exception as error:
        raise UsageError(f"{clients_inventory}: cannot load the inventory: {error}") from None
    members = group_members(namespace, group)
    if not members:
        raise UsageError(f"{clients_inventory}: no group {group!r} with hosts")
    if limit:
        unknown = sorted(set(limit) - set(members))
        if unknown:
            raise UsageError(f"{clients_inventory}: no host {', '.join(unknown)} in group {group}")
        members = [m for m in members if m in limit]
    hosts = load_hosts(clients_inventory, members)
    return hosts


def trust(inventory: str, registry: str | None, user: str | None, clients_inventory: str,
          group: str, limit: Sequence[str], mirror: bool | None = None) -> dict[str, Any]:
    """Make the clients' Docker trust the registry's CA and log in (and use it as a
    mirror of Docker Hub), then check each."""
    target = trust_target(str(Path(inventory).resolve()), registry, user, mirror)
    clients = client_hosts(clients_inventory, group, limit)

    def docker_ready(h: InventoryHost) -> str | None:
        try:
            _, out, _ = run_remote(h, DOCKER_CHECK)
        except RegopsError as error:
            return str(error)
        return docker_problem(out)

    problems = dict(zip([h.name for h in clients], parallel_all(docker_ready, clients),
                        strict=True))
    ready = [h for h in clients if problems[h.name] is None]
    rc, output = 0, ""
    if ready:
        rc, output = run_pyinfra(clients_inventory, TRUST_DEPLOY, [h.name for h in ready], env={
            "REGOPS_TRUST_INVENTORY": str(Path(inventory).resolve()),
            "REGOPS_TRUST_REGISTRY": target.host,
            "REGOPS_TRUST_USER": target.user,
            "REGOPS_TRUST_MIRROR": {True: "1", False: "0", None: ""}[mirror],
        })

    def check(h: InventoryHost) -> dict[str, Any]:
        if problems[h.name]:
            return {"host": h.name, "ok": False, "error": problems[h.name]}
        try:
            _, out, _ = run_remote(h, trust_check_command(target))
            error = trust_verdict(target, out)
        except RegopsError as exc:
            error = str(exc)
        return {"host": h.name, "ok": error is None, "error": error}

    doc = summarize(parallel_all(check, clients))
    doc.update(registry=target.address, user=target.user, ca=target.ca_pem is not None,
               mirror=target.mirror, deploy_ok=rc == 0)
    if rc != 0:
        doc["ok"] = False
        doc["deploy_error"] = f"the client deploy failed (exit {rc}):\n{pyinfra_tail(output)}"
    return doc
