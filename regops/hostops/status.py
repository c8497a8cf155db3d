"""`regops status`: health, version, certificate, disk, last GC and container state
of every host, from the registry API and one read-only command per host."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from regops import hostpaths
from regops.config.settings import Settings
from regops.errors import RegopsError
from regops.hostops.certs import file_cert, host_cert_command, served_cert
from regops.hostops.gc import parse_gc_state
from regops.hostops.remote import q, run_remote, script, summarize, texts
from regops.inventory import InventoryHost
from regops.registry.client import RegistryError
from regops.registry.endpoint import api_client
from regops.storage import seaweedfs
from regops.util import parallel_all


def parse_df(text: str) -> dict[str, Any] | None:
    """`df -B1 --output=size,avail,target PATH`: total, free (available to non-root)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    fields = lines[-1].split(None, 2)
    if len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
        return None
    total, free = int(fields[0]), int(fields[1])
    return {
        "total_bytes": total,
        "free_bytes": free,
        "free_percent": round(100.0 * free / total, 1) if total else 0.0,
        "mount": fields[2],
    }


_VERSION = re.compile(r"\bv?(\d+\.\d+\.\d+[0-9A-Za-z.+~-]*)")


def parse_version(text: str) -> str | None:
    """`registry --version` says e.g. `registry github.com/distribution/distribution v2.8.3`."""
    match = _VERSION.search(text or "")
    return match[1] if match else None


def image_tag_version(image: str) -> str | None:
    """`registry:2.8.3` or `repo/registry:2.8.2@sha256:...` -> the tag, if it looks like one."""
    ref = image.split("@", 1)[0]
    tail = ref.rsplit("/", 1)[-1]
    if ":" not in tail:
        return None
    return parse_version(tail.split(":", 1)[1])


def container_state(inspect_json: str) -> dict[str, Any]:
    """Running, started-at and image of the registry container from `docker inspect`."""
    try:
        items = json.loads(inspect_json or "[]")
    except json.JSONDecodeError:
        items = []
    if not items:
        return {"exists": False, "running": False, "started_at": None, "image": None}
    item = items[0]
    state = item.get("State") or {}
    return {
        "exists": True,
        "running": bool(state.get("Running")),
        "started_at": state.get("StartedAt"),
        "image": (item.get("Config") or {}).get("Image"),
    }

def status_ok(entry: dict[str, Any]) -> bool:
    """A host is fine when it serves /v2/, its container runs and, with token auth,
    the token service runs (without it nobody can log in)."""
    auth = entry.get("auth") or {}
    return bool(entry.get("health", {}).get("serving")) and bool(
        entry.get("container", {}).get("running")) and (
        auth.get("mode") != "token" or auth.get("token_service") == "active")

def frontdoor_state(text: str) -> dict[str, Any]:
    """nginx running, and where /v2/ goes (normal, standby or gc), from the host's answer."""
    lines = text.split()
    mode = lines[1].removeprefix("registry-").removesuffix(".conf") if len(lines) > 1 else None
    return {"running": bool(lines) and lines[0] == "active", "mode": mode}


def status_command(s: Settings) -> str:
    d = s.data
    name = q(d["registry_container_name"])
    return script(
        {
            "inspect": f"docker inspect --type container {name}",
            "version": f"docker exec {name} registry --version",
            "df": f"df -B1 --output=size,avail,target {q(d['registry_data_dir'])}",
            "gc": f"cat {hostpaths.GC_STATE}",
            "cert": host_cert_command(s),
            "frontdoor": f"systemctl is-active nginx; readlink {hostpaths.FRONTDOOR_MODE_LINK}",
            "token": "systemctl is-active regops-token",
        }
    )


def health(s: Settings) -> dict[str, Any]:
    """GET /v2/ anonymously through verified TLS: 401 (or 200) means it serves."""
    try:
        code = api_client(s).ping()
    except (RegistryError, RegopsError) as error:
        return {"serving": False, "http_status": None, "error": str(error)}
    return {"serving": code in (200, 401), "http_status": code,
            "error": None if code in (200, 401) else f"GET /v2/ answered HTTP {code}"}


def storage_state(s: Settings) -> dict[str, Any]:
    """Where the images live, as declared: this host's disk or a shared bucket."""
    bucket = s.bucket
    if bucket is None:
        return {"kind": "filesystem", "path": s["registry_data_dir"]}
    return {"kind": "s3", "endpoint": bucket.endpoint, "bucket": bucket.name,
            "rootdirectory": bucket.root, "descriptor_cache": (
                f"redis on {s.redis.host}" if s.redis else "memory")}


def cache_state(s: Settings) -> dict[str, Any] | None:
    """A pull-through cache's upstream and how long it keeps what it fetched."""
    if not s.cache:
        return None
    expiry = "7 days after each fetch" if s.major_version == 2 else "the registry's proxy ttl"
    return {"upstream": s["registry_proxy_remote_url"], "expiry": expiry,
            "size_bound": None}


def status_entry(host: str, s: Settings, remote: str, served: dict[str, Any] | None,
                 check: dict[str, Any]) -> dict[str, Any]:
    """Combine what the host and the API said into one status entry (pure)."""
    parts = texts(remote)
    container = container_state(parts.get("inspect", ""))
    version = parse_version(parts.get("version", ""))
    source = "registry --version" if version else None
    if version is None and container["image"]:
        version, source = image_tag_version(container["image"]), "image tag"
    on_host, _ = file_cert(parts.get("cert", ""))
    cert = served or on_host
    disk = parse_df(parts.get("df", ""))
    if disk is not None:
        disk["path"] = s["registry_data_dir"]
    entry: dict[str, Any] = {
        "host": host,
        "registry": s.registry_address,
        "api_url": s.api_url,
        "health": check,
        "version": version,
        "version_source": source,
        "container": {"name": s["registry_container_name"], **container},
        "certificate": None if cert is None else {
            "days_left": cert["days_left"], "not_after": cert["not_after"],
            "serial": cert["serial"], "source": "served" if served else "file"},
        "disk": disk,
        "storage": storage_state(s),
        "cache": cache_state(s),
        "gc": parse_gc_state(parts.get("gc", "")),
        "frontdoor": frontdoor_state(parts.get("frontdoor", "")),
        "auth": {"mode": s["registry_auth"],
                 "token_service": (parts.get("token") or "unknown").split()[0]
                 if s.token_auth else None},
    }
    entry["ok"] = status_ok(entry)
    return entry


def role_services(s: Settings) -> list[str]:
    """The systemd services a load balancer or storage host runs."""
    if s.role == "load_balancer":
        return ["haproxy"]
    parts = [f"regops-seaweedfs@{part}" for part in s.storage.parts(s.private_address)]
    # The filers' shared store: an etcd member on each master host of a cluster.
    return parts + ["etcd"] if s.storage.runs_etcd(s.private_address) else parts


def role_entry(host: str, s: Settings, remote: str, check: dict[str, Any] | None
               ) -> dict[str, Any]:
    """A load balancer or storage host: its services and, for a balancer, the API
    behind it; for a storage host, the volumes with a copy missing."""
    parts = texts(remote)
    names = role_services(s)
    states = (parts.get("service") or "").split() + ["unknown"] * len(names)
    services = [{"name": n, "state": st} for n, st in zip(names, states, strict=False)]
    entry: dict[str, Any] = {
        "host": host, "role": s.role, "registry": s.registry_address,
        "services": services, "service": services[0],
        "health": check, "storage": storage_state(s) if s.role == "storage" else None,
        "disk": parse_df(parts.get("df", "")),
    }
    down = [sv for sv in services if sv["state"] != "active"]
    if s.role == "storage":
        fix = parts.get("replication")
        missing = None if fix is None else seaweedfs.under_replicated(fix)
        entry["cluster"] = {"storage_hosts": len(s.storage.hosts),
                            "replication": s.storage.replication,
                            "under_replicated_volumes": missing}
        if not down and missing:
            entry.update(ok=False, error=(
                f"{len(missing)} volumes lack a copy (a storage host is gone; once it is "
                "back they heal, or run volume.fix.replication -apply in weed shell)"))
            return entry
    entry["ok"] = not down and (check is None or bool(check.get("serving")))
    entry["error"] = None if entry["ok"] else (
        f"{down[0]['name']} is {down[0]['state']}" if down else (check or {}).get("error"))
    return entry


def status(pairs: Sequence[tuple[InventoryHost, Settings]]) -> dict[str, Any]:
    def one(pair: tuple[InventoryHost, Settings]) -> dict[str, Any]:
        h, s = pair
        if s.role != "registry":
            probe = health(s) if s.role == "load_balancer" else None
            parts = {"service": "systemctl is-active " + " ".join(role_services(s)),
                     "df": f"df -B1 --output=size,avail,target "
                           f"{q(s['registry_seaweedfs_data_dir'])}"}
            if s.role == "storage":  # a dry run: which volumes lack a copy
                parts["replication"] = (
                    f"printf 'volume.fix.replication\\n' | {hostpaths.WEED_BINARY} shell "
                    f"-master={s.storage.master_list} 2>/dev/null")
            command = script(parts)
            try:
                _, out, _ = run_remote(h, command)
            except RegopsError as error:
                return {"host": h.name, "role": s.role, "ok": False, "error": str(error)}
            return role_entry(h.name, s, out, probe)
        check = health(s)
        on_api, _ = served_cert(s)
        try:
            _, out, _ = run_remote(h, status_command(s))
        except RegopsError as error:
            entry = status_entry(h.name, s, "", on_api, check)
            entry.update(ok=False, error=str(error))
            return entry
        entry = status_entry(h.name, s, out, on_api, check)
        entry["error"] = None if entry["ok"] else (
            check["error"] or ("container not running" if not entry["container"]["running"]
                               else f"the token service is {entry['auth']['token_service']}"))
        return entry

    return summarize(parallel_all(one, list(pairs)))

