"""Day-2 operations on deployed registries: GC, users, certificates, status, client trust.

Changes to hosts go through pyinfra deploy files (deploy.py, deploys/*.py), so
the day-2 path and the deploy can never disagree; reads go over SSH (testinfra,
honouring sudo) and to the registry API from this machine. Parsing and
aggregation are pure functions, unit-tested without hosts. Passwords never
reach output or the argv of a subprocess.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import runpy
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from regops import endpoint, paths, pki, secrets
from regops.client import RegistryClient, RegistryError
from regops.inventory import InventoryHost, load_inventory
from regops.settings import (
    ConfigError,
    Settings,
    _user_names,
    cli_users,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy.py"
USERS_DEPLOY = REPO_ROOT / "deploys" / "users.py"
TRUST_DEPLOY = REPO_ROOT / "deploys" / "trust.py"
GC_SCRIPT = "/usr/local/sbin/regops-gc"
GC_STATE = "/var/lib/regops/gc-last.json"
GC_LOG = "/var/log/regops-gc.log"  # where cron appends the job's output, too
TRUST_DIR = "/var/lib/regops-trust"  # root-only; holds the login password for a moment
MARK = "@@regops-section@@"
PYINFRA_TIMEOUT = 1800
MAX_WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


class OpsError(Exception):
    """A one-line failure; `code` is the exit status (1 failure, 2 usage or bad data)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UsageError(OpsError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


# --------------------------------------------------------------------------- pure helpers


def parse_sections(text: str, mark: str = MARK) -> dict[str, str]:
    """Split `MARK name` delimited output of one remote script into {name: body}."""
    sections: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(mark + " "):
            if name is not None:
                sections[name] = "\n".join(lines).strip()
            name, lines = line[len(mark) + 1:].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = "\n".join(lines).strip()
    return sections


GC_FIELDS = ("time", "result", "exit_code", "bytes_freed", "readonly_seconds",
             "duration_seconds", "message")


def parse_gc_state(text: str) -> dict[str, Any] | None:
    """The GC job's gc-last.json; None when absent, empty or not what the job writes."""
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not {"time", "result"} <= set(doc):
        return None
    out = {k: doc.get(k) for k in GC_FIELDS}
    for key in ("exit_code", "bytes_freed", "readonly_seconds", "duration_seconds"):
        if not isinstance(out[key], int) or isinstance(out[key], bool):
            out[key] = None
    return out


def parse_time(text: str) -> datetime | None:
    """ISO 8601 as the GC job writes it (`2024-05-01T03:17:02Z`); None if unparsable."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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


def cert_summary(cert: x509.Certificate, now: datetime | None = None) -> dict[str, Any]:
    """What status output says of a certificate: serial, expiry, days left, names."""
    info = pki.cert_info(cert.public_bytes(Encoding.PEM), now)
    return {
        "serial": pki.serial_hex(cert),
        "not_after": info["not_after"],
        "days_left": info["days_left"],
        "sans": info["sans"],
        "issuer_cn": info["issuer_cn"],
    }


def merge_user_names(declared: Sequence[str], stored: Iterable[str]) -> list[str]:
    """Inventory users in their order, then users that only have a password file, sorted."""
    names = list(dict.fromkeys(declared))
    names += sorted(set(stored) - set(names))
    return names


def user_rows(registry: str, declared: Sequence[str], stored: Iterable[str],
              environ: dict[str, str], password_file: Callable[[str], Path]
              ) -> list[dict[str, Any]]:
    """One row per user: where it is declared and where its password comes from."""
    stored = set(stored)
    rows = []
    for name in merge_user_names(declared, stored):
        var = secrets.env_var_for_user(name)
        if var in environ:
            source = f"env {var}"
        elif name in stored:
            source = "file"
        else:
            source = "missing (the next deploy generates it)"
        rows.append({
            "registry": registry,
            "user": name,
            "declared_in": "inventory" if name in declared else "cli",
            "password": source,
            "password_file": str(password_file(name)) if name in stored else None,
        })
    return rows


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def table(rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns; None prints as '-'."""
    text = [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(text[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in text)


def status_ok(entry: dict[str, Any]) -> bool:
    """A host is fine when it serves /v2/ and its container runs."""
    return bool(entry.get("health", {}).get("serving")) and bool(
        entry.get("container", {}).get("running"))


def summarize(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"ok": all(e.get("ok") for e in entries), "hosts": list(entries)}


def group_members(namespace: dict[str, Any], group: str) -> list[str] | None:
    """Host names of a group in an executed inventory module; None if there is no such group."""
    from regops.inventory import _entries

    if group.startswith("_") or group not in namespace:
        return None
    entries = _entries(namespace[group])
    return None if entries is None else [name for name, _ in entries]


def pyinfra_tail(output: str, lines: int = 15) -> str:
    """The end of pyinfra's output, for a failure message (it carries no secrets)."""
    kept = [line for line in output.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


# --------------------------------------------------------------------------- inventory


def load_hosts(inventory: str, limit: Sequence[str] = ()) -> list[InventoryHost]:
    """The inventory's hosts, narrowed by --limit; unknown names are a usage error."""
    try:
        hosts = load_inventory(inventory)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    except Exception as error:  # an inventory is code; say which file broke and how
        raise UsageError(f"{inventory}: cannot load the inventory: {error}") from None
    if not hosts:
        raise UsageError(f"{inventory}: no hosts in the inventory")
    if limit:
        unknown = sorted(set(limit) - {h.name for h in hosts})
        if unknown:
            raise UsageError(f"{inventory}: no host named {', '.join(unknown)}")
        hosts = [h for h in hosts if h.name in limit]
    return hosts


def load_settings(hosts: Sequence[InventoryHost]) -> list[tuple[InventoryHost, Settings]]:
    """Checked settings of every host before anything runs (bad data: exit 2)."""
    try:
        return [(h, h.settings()) for h in hosts]
    except ConfigError as error:
        raise UsageError(str(error)) from None


def checked(hosts: Sequence[InventoryHost]) -> list[tuple[InventoryHost, dict[str, Any]]]:
    """Checked data without touching secrets (for commands that only read them)."""
    try:
        return [(h, h.checked_data()) for h in hosts]
    except ConfigError as error:
        raise UsageError(str(error)) from None


def parallel(items: Sequence[T], work: Callable[[T], R]) -> list[R]:
    """`work` on every item at once (hosts are slow, not busy), results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items))) as pool:
        return list(pool.map(work, items))


# --------------------------------------------------------------------------- remote


def run_remote(h: InventoryHost, command: str) -> tuple[int, str, str]:
    """(rc, stdout, stderr) of a shell command on the host as root (sudo if configured)."""
    try:
        result = h.testinfra().run(command)
    except RuntimeError as error:  # testinfra: ssh itself failed (exit 255)
        result = error.args[0] if error.args else None
        detail = getattr(result, "stderr", "") or str(error)
        last = [line for line in str(detail).strip().splitlines() if line.strip()]
        raise OpsError(f"ssh failed: {last[-1] if last else 'exit 255'}") from None
    return result.rc, result.stdout, result.stderr


def _q(value: str) -> str:
    return shlex.quote(value)


def gc_command() -> str:
    """Run the deployed GC job as cron does (same log), then show its record."""
    return (
        f"start=$(date -u +%s); echo \"{MARK} start\"; echo $start; "
        f"if [ ! -x {GC_SCRIPT} ]; then echo \"{MARK} missing\"; exit 3; fi; "
        f"{GC_SCRIPT} >>{GC_LOG} 2>&1; rc=$?; "
        f"echo \"{MARK} rc\"; echo $rc; echo \"{MARK} state\"; cat {GC_STATE} 2>/dev/null; "
        "exit 0"
    )


def gc_result(host: str, rc: int, stdout: str) -> dict[str, Any]:
    """Interpret `gc_command` output: the job's record, if it is from this run."""
    parts = parse_sections(stdout)
    entry: dict[str, Any] = {"host": host, "ok": False, "error": None,
                             **dict.fromkeys(GC_FIELDS)}
    if "missing" in parts:
        entry["error"] = f"{GC_SCRIPT} is not installed (run the deploy first)"
        return entry
    if rc != 0 or "rc" not in parts:
        entry["error"] = f"the GC job did not run (exit {rc})"
        return entry
    state = parse_gc_state(parts.get("state", ""))
    started = parts.get("start", "")
    when = parse_time(state["time"]) if state and isinstance(state["time"], str) else None
    job_rc = int(parts["rc"]) if parts["rc"].lstrip("-").isdigit() else -1
    if state is None or when is None or (started.isdigit() and when.timestamp() < int(started)):
        entry["error"] = f"the GC job exited {job_rc} without recording a result in {GC_STATE}"
        return entry
    entry.update(state)
    entry["ok"] = job_rc == 0 and state["result"] == "ok"
    if not entry["ok"]:
        entry["error"] = f"GC failed (exit {job_rc}): {state.get('message') or 'see ' + GC_LOG}"
    return entry


def run_gc(hosts: Sequence[InventoryHost]) -> dict[str, Any]:
    def one(h: InventoryHost) -> dict[str, Any]:
        try:
            rc, out, _ = run_remote(h, gc_command())
        except OpsError as error:
            return {"host": h.name, "ok": False, "error": str(error), **dict.fromkeys(GC_FIELDS)}
        return gc_result(h.name, rc, out)

    return summarize(parallel(list(hosts), one))


# --------------------------------------------------------------------------- certificates


def served_certificate(api_url: str, server_name: str, timeout: float = 10
                       ) -> x509.Certificate:
    """The leaf certificate the registry actually serves at `api_url` (not validated here:
    `status` checks trust separately, and an untrusted certificate is still worth reading)."""
    parts = urllib.parse.urlsplit(api_url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sni = None if _is_ip(server_name) else server_name
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as error:
        raise OpsError(f"TLS handshake with {host}:{port} failed: {error}") from None
    if not der:
        raise OpsError(f"{host}:{port} sent no certificate")
    return pki.load_leaf(der)


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _sni(s: Settings) -> str:
    host = urllib.parse.urlsplit(s.api_url).hostname or s.registry_name
    return s.registry_name if _is_ip(host) else host


def _served(s: Settings) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return cert_summary(served_certificate(s.api_url, _sni(s))), None
    except OpsError as error:
        return None, str(error)


def host_cert_command(s: Settings) -> str:
    return f"cat {_q(s['registry_config_dir'] + '/tls/server.crt')} 2>/dev/null || true"


def _file_cert(pem: str) -> tuple[dict[str, Any] | None, str | None]:
    if "BEGIN CERTIFICATE" not in pem:
        return None, "no certificate file on the host"
    try:
        return cert_summary(pki.load_leaf(pem.encode())), None
    except ValueError as error:
        return None, f"unreadable certificate file: {error}"


def cert_entry(host: str, registry: str, served: dict[str, Any] | None,
               served_error: str | None, on_host: dict[str, Any] | None,
               file_error: str | None) -> dict[str, Any]:
    """One host's certificates; `days_left` is of the served one (else the file's)."""
    main = served or on_host
    return {
        "host": host,
        "registry": registry,
        "ok": served is not None and served["days_left"] > 0,
        "days_left": main["days_left"] if main else None,
        "serial": main["serial"] if main else None,
        "served": served,
        "served_error": served_error,
        "file": on_host,
        "file_error": file_error,
        "differ": bool(served and on_host and served["serial"] != on_host["serial"]),
    }


def ca_entries(pairs: Sequence[tuple[InventoryHost, Settings]]) -> list[dict[str, Any]]:
    """Operator-side CA and server certificate per registry (generated), or the provided CA."""
    seen: dict[str, dict[str, Any]] = {}
    for _, s in pairs:
        if s.registry_name in seen:
            continue
        entry: dict[str, Any] = {"registry": s.registry_name, "generated": not s.provided_tls,
                                 "ca_file": endpoint.ca_file(s), "ca": None, "server": None}
        if entry["ca_file"] and Path(entry["ca_file"]).is_file():
            entry["ca"] = cert_summary(pki.load_leaf(Path(entry["ca_file"]).read_bytes()))
        server = (Path(s["registry_tls_cert_file"]) if s.provided_tls
                  else paths.pki_dir(s.secrets_root, s.registry_name) / pki.SERVER_CERT)
        if server.is_file():
            entry["server"] = cert_summary(pki.load_leaf(server.read_bytes()))
        seen[s.registry_name] = entry
    return list(seen.values())


def certs_status(pairs: Sequence[tuple[InventoryHost, Settings]]) -> dict[str, Any]:
    def one(pair: tuple[InventoryHost, Settings]) -> dict[str, Any]:
        h, s = pair
        served, served_error = _served(s)
        try:
            _, pem, _ = run_remote(h, host_cert_command(s))
            on_host, file_error = _file_cert(pem)
        except OpsError as error:
            on_host, file_error = None, str(error)
        return cert_entry(h.name, s.registry_address, served, served_error, on_host, file_error)

    doc = summarize(parallel(list(pairs), one))
    doc["registries"] = ca_entries(pairs)
    return doc


def renew_refusals(pairs: Sequence[tuple[InventoryHost, Settings]]) -> list[str]:
    """One line per host whose certificate the operator provides: regops cannot renew it."""
    return [
        f"{h.name}: the certificate is provided (registry_tls_cert_file "
        f"{s['registry_tls_cert_file']}); put a new certificate and key there and run the deploy"
        for h, s in pairs if s.provided_tls
    ]


def renew_certs(inventory: str, pairs: Sequence[tuple[InventoryHost, Settings]],
                wait: float = 60) -> dict[str, Any]:
    """Re-issue each registry's generated certificate, deploy, check what is served."""
    refusals = renew_refusals(pairs)
    if refusals:
        raise UsageError(refusals[0] if len(refusals) == 1 else
                         f"{refusals[0]} (and {len(refusals) - 1} more host(s))")
    before = {h.name: _served(s)[0] for h, s in pairs}
    issued: dict[Path, str] = {}  # one certificate per registry (its pki directory)
    for _, s in pairs:
        pki_dir = paths.pki_dir(s.secrets_root, s.registry_name)
        if pki_dir not in issued:
            cert = pki.renew_server_cert(pki_dir, s.tls_names, days=s["registry_tls_days"])
            issued[pki_dir] = pki.serial_hex(pki.load_leaf(cert.cert_pem))
    rc, output = run_pyinfra(inventory, DEPLOY, [h.name for h, _ in pairs])

    def one(pair: tuple[InventoryHost, Settings]) -> dict[str, Any]:
        h, s = pair
        want = issued[paths.pki_dir(s.secrets_root, s.registry_name)]
        served, error = _served(s)
        deadline = time.monotonic() + wait
        while (served is None or served["serial"] != want) and time.monotonic() < deadline:
            time.sleep(2)
            served, error = _served(s)
        old = before[h.name]
        ok = served is not None and served["serial"] == want
        if not ok and error is None:
            error = f"still serves serial {served['serial'] if served else '?'}, not {want}"
        return {"host": h.name, "registry": s.registry_address, "ok": ok,
                "old_serial": old["serial"] if old else None, "new_serial": want,
                "served": served, "error": error}

    doc = summarize(parallel(list(pairs), one))
    doc["deploy_ok"] = rc == 0
    if rc != 0:
        doc["ok"] = False
        doc["deploy_error"] = f"the deploy failed (exit {rc}):\n{pyinfra_tail(output)}"
    return doc


# --------------------------------------------------------------------------- status


def status_command(s: Settings) -> str:
    d = s.data
    name = _q(d["registry_container_name"])
    return "; ".join([
        f"echo '{MARK} inspect'", f"docker inspect --type container {name} 2>/dev/null",
        f"echo '{MARK} version'", f"docker exec {name} registry --version 2>/dev/null",
        f"echo '{MARK} df'", f"df -B1 --output=size,avail,target {_q(d['registry_data_dir'])}",
        f"echo '{MARK} gc'", f"cat {GC_STATE} 2>/dev/null",
        f"echo '{MARK} cert'", host_cert_command(s),
        "true",
    ])


def api_client(s: Settings, user: str | None = None, password: str | None = None
               ) -> RegistryClient:
    """A client that trusts the registry's CA; a missing CA file is a one-line error."""
    ca = endpoint.ca_file(s)
    if ca and not Path(ca).is_file():
        raise OpsError(f"no CA certificate at {ca} (deploy {s.host} first)")
    return RegistryClient(s.api_url, user, password, ca_file=ca, timeout=10)


def health(s: Settings) -> dict[str, Any]:
    """GET /v2/ anonymously through verified TLS: 401 (or 200) means it serves."""
    try:
        code = api_client(s).ping()
    except (RegistryError, OpsError) as error:
        return {"serving": False, "http_status": None, "error": str(error)}
    return {"serving": code in (200, 401), "http_status": code,
            "error": None if code in (200, 401) else f"GET /v2/ answered HTTP {code}"}


def status_entry(host: str, s: Settings, remote: str, served: dict[str, Any] | None,
                 check: dict[str, Any]) -> dict[str, Any]:
    """Combine what the host and the API said into one status entry (pure)."""
    parts = parse_sections(remote)
    container = container_state(parts.get("inspect", ""))
    version = parse_version(parts.get("version", ""))
    source = "registry --version" if version else None
    if version is None and container["image"]:
        version, source = image_tag_version(container["image"]), "image tag"
    on_host, _ = _file_cert(parts.get("cert", ""))
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
        "gc": parse_gc_state(parts.get("gc", "")),
    }
    entry["ok"] = status_ok(entry)
    return entry


def status(pairs: Sequence[tuple[InventoryHost, Settings]]) -> dict[str, Any]:
    def one(pair: tuple[InventoryHost, Settings]) -> dict[str, Any]:
        h, s = pair
        check = health(s)
        served, _ = _served(s)
        try:
            _, out, _ = run_remote(h, status_command(s))
        except OpsError as error:
            entry = status_entry(h.name, s, "", served, check)
            entry.update(ok=False, error=str(error))
            return entry
        entry = status_entry(h.name, s, out, served, check)
        entry["error"] = None if entry["ok"] else (
            check["error"] or ("container not running" if not entry["container"]["running"]
                               else None))
        return entry

    return summarize(parallel(list(pairs), one))


# --------------------------------------------------------------------------- pyinfra


def run_pyinfra(inventory: str, deploy_file: Path, hosts: Sequence[str],
                env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a deploy file on `hosts`, from this directory (so relative secrets and
    group_data paths mean what they meant to this command); returns (rc, output)."""
    argv = [sys.executable, "-m", "pyinfra", "-y", str(Path(inventory).resolve()),
            str(deploy_file)]
    for name in hosts:
        argv += ["--limit", name]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=PYINFRA_TIMEOUT,
                                env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return 124, f"pyinfra did not finish within {PYINFRA_TIMEOUT}s"
    return result.returncode, result.stdout + result.stderr


# --------------------------------------------------------------------------- users


@dataclass
class Registry:
    """The hosts that serve one registry name from one secrets directory."""

    name: str
    root: Path
    min_length: int
    declared: list[str]
    hosts: list[InventoryHost]

    def password_file(self, user: str) -> Path:
        return paths.password_path(self.root, self.name, user)

    def marker(self, user: str) -> Path:
        return paths.cli_users_dir(self.root, self.name) / user

    @property
    def stored(self) -> list[str]:
        return cli_users(self.root, self.name)


def registries(hosts: Sequence[InventoryHost]) -> list[Registry]:
    found: dict[tuple[Path, str], Registry] = {}
    for h, d in checked(hosts):
        root = Path(d["registry_secrets_dir"]).absolute()
        key = (root, d["registry_name"])
        if key not in found:
            found[key] = Registry(d["registry_name"], root, d["registry_password_min_length"],
                                  _user_names(h.name, d["registry_users"]), [])
        found[key].hosts.append(h)
    return list(found.values())


def list_users(hosts: Sequence[InventoryHost],
               environ: dict[str, str] | None = None) -> list[dict[str, Any]]:
    env = dict(os.environ if environ is None else environ)
    rows: list[dict[str, Any]] = []
    for reg in registries(hosts):
        rows += user_rows(reg.name, reg.declared, reg.stored, env, reg.password_file)
    return rows


def check_user_name(name: str) -> None:
    try:
        _user_names("user", [name])
    except ConfigError:
        raise UsageError(f"{name!r} is not a valid user name "
                         "(lower-case letters, digits, ._-; at most 64)") from None


def check_password(password: str, user: str, regs: Sequence[Registry]) -> None:
    for reg in regs:
        problem = secrets.password_problem(password, reg.min_length, user=user)
        if problem:
            raise UsageError(f"the password for {user!r} {problem}")


def _env_override(user: str, environ: dict[str, str]) -> None:
    var = secrets.env_var_for_user(user)
    if var in environ:
        raise UsageError(f"{var} is set and overrides the password file of {user!r}; "
                         "unset it, or change the password there and run the deploy")


def _verify_login(s: Settings, user: str, password: str, want: int,
                  wait: float = 15) -> str | None:
    """None once GET /v2/ as `user` answers `want`; else why not (bounded retries)."""
    try:
        client = api_client(s, user, password)
    except OpsError as error:
        return str(error)
    deadline = time.monotonic() + wait
    code: int | None = None
    while True:
        try:
            code = client.ping()
            if code == want:
                return None
            detail = f"HTTP {code}"
        except RegistryError as error:
            detail = str(error)
        if time.monotonic() >= deadline:
            return f"GET /v2/ as {user} gave {detail}, expected {want}"
        time.sleep(1)


@dataclass
class UserChange:
    action: str
    user: str
    password: str  # the new one ("" for remove)
    old_passwords: dict[tuple[Path, str], str | None]  # per (secrets root, registry name)
    generated: bool
    files: list[Path]


def _rollout(inventory: str, regs: Sequence[Registry], change: UserChange) -> dict[str, Any]:
    hosts = [h for reg in regs for h in reg.hosts]
    rc, output = run_pyinfra(inventory, USERS_DEPLOY, [h.name for h in hosts])
    pairs = load_settings(hosts)

    def one(pair: tuple[InventoryHost, Settings]) -> dict[str, Any]:
        h, s = pair
        errors = []
        if change.password:
            errors.append(_verify_login(s, change.user, change.password, 200))
        old = change.old_passwords.get((s.secrets_root, s.registry_name))
        if old and old != change.password:
            errors.append(_verify_login(s, change.user, old, 401))
        error = next((e for e in errors if e), None)
        return {"host": h.name, "registry": s.registry_address, "ok": error is None,
                "error": error}

    doc = summarize(parallel(pairs, one) if rc == 0 else [
        {"host": h.name, "ok": False, "error": "not checked: the rollout failed"} for h in hosts])
    doc.update(action=change.action, user=change.user,
               password_files=[str(p) for p in change.files], generated=change.generated,
               rollout_ok=rc == 0)
    if rc != 0:
        doc["ok"] = False
        doc["rollout_error"] = (
            f"the rollout failed (exit {rc}); the change is recorded operator-side, so "
            f"`pyinfra -y {inventory} {USERS_DEPLOY.relative_to(REPO_ROOT)}` (or the deploy) "
            f"finishes it:\n{pyinfra_tail(output)}")
    return doc


def add_user(inventory: str, hosts: Sequence[InventoryHost], user: str,
             password: str | None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    check_user_name(user)
    regs = registries(hosts)
    for reg in regs:
        if user in reg.declared:
            raise UsageError(f"user {user!r} is already declared in registry_users of "
                             f"{reg.hosts[0].name}; use `regops users passwd {user}`")
        if user in reg.stored:
            raise UsageError(f"user {user!r} already exists ({reg.password_file(user)}); "
                             f"use `regops users passwd {user}`")
    _env_override(user, env)
    generated = password is None
    password = secrets.generate_password() if password is None else password
    check_password(password, user, regs)
    files = []
    for reg in regs:
        # A password file without a marker is left from a user once declared in
        # registry_users: it is replaced, not reused.
        path = reg.password_file(user)
        secrets.write_atomic(path, (password + "\n").encode(), 0o600)
        if not secrets.write_atomic(reg.marker(user), b"", 0o600, exclusive=True):
            raise UsageError(f"user {user!r} was just added by someone else ({path})")
        files.append(path)
    return _rollout(inventory, regs, UserChange("add", user, password, {}, generated, files))


def _current_password(reg: Registry, user: str, env: dict[str, str]) -> str | None:
    var = secrets.env_var_for_user(user)
    if var in env:
        return env[var]
    path = reg.password_file(user)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def remove_user(inventory: str, hosts: Sequence[InventoryHost], user: str,
                environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    check_user_name(user)
    regs = registries(hosts)
    for reg in regs:
        if user in reg.declared:
            raise UsageError(f"user {user!r} is declared in registry_users of "
                             f"{reg.hosts[0].name} in {inventory}: remove it there, then "
                             "run the deploy")
    regs = [reg for reg in regs if user in reg.stored]
    if not regs:
        raise UsageError(f"no user {user!r} (`regops users list` shows the users)")
    old = {(reg.root, reg.name): _current_password(reg, user, env) for reg in regs}
    files = []
    for reg in regs:
        reg.marker(user).unlink(missing_ok=True)
        reg.password_file(user).unlink(missing_ok=True)
        files.append(reg.password_file(user))
    return _rollout(inventory, regs, UserChange("remove", user, "", old, False, files))


def change_password(inventory: str, hosts: Sequence[InventoryHost], user: str,
                    password: str | None, environ: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    check_user_name(user)
    regs = registries(hosts)
    for reg in regs:
        if user not in reg.declared and user not in reg.stored:
            raise UsageError(f"no user {user!r} on registry {reg.name} "
                             "(`regops users add` creates one)")
    _env_override(user, env)
    old = {(reg.root, reg.name): _current_password(reg, user, env) for reg in regs}
    generated = password is None
    password = secrets.generate_password() if password is None else password
    check_password(password, user, regs)
    files = []
    for reg in regs:
        path = reg.password_file(user)
        secrets.write_atomic(path, (password + "\n").encode(), 0o600)
        files.append(path)
    return _rollout(inventory, regs,
                    UserChange("passwd", user, password, old, generated, files))


# --------------------------------------------------------------------------- trust


@dataclass(frozen=True)
class TrustTarget:
    """What a client needs: the registry address, its CA (None: system trust), a login."""

    host: str
    address: str
    ca_pem: bytes | None
    user: str
    password: str = ""

    def __repr__(self) -> str:
        return f"TrustTarget({self.address}, user={self.user})"


TRUST_ENV = ("REGOPS_TRUST_INVENTORY", "REGOPS_TRUST_REGISTRY", "REGOPS_TRUST_USER")


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
def trust_target(inventory: str, registry: str | None, user: str | None) -> TrustTarget:
    """Resolved once per process (pyinfra runs the deploy file once per client host)."""
    h, s = pick_registry(load_settings(load_hosts(inventory)), registry)
    chosen = next((u for u in s.users if u.name == user), None) if user else s.users[0]
    if chosen is None:
        raise UsageError(f"no user {user!r} on registry {s.registry_address} "
                         "(`regops users list` shows the users)")
    ca = endpoint.ca_file(s)
    if ca and not Path(ca).is_file():
        raise UsageError(f"no CA certificate at {ca}: deploy {h.name} first")
    ca_pem = Path(ca).read_bytes() if ca else None  # None: a provided cert of a public CA
    return TrustTarget(h.name, s.registry_address, ca_pem, chosen.name, chosen.password)


def trust_target_from_env() -> TrustTarget:
    """For deploys/trust.py: which registry and user, from the environment regops sets."""
    missing = [k for k in TRUST_ENV[:2] if not os.environ.get(k)]
    if missing:
        raise UsageError(f"deploys/trust.py needs {', '.join(missing)} (run `regops trust`)")
    return trust_target(str(Path(os.environ["REGOPS_TRUST_INVENTORY"]).resolve()),
                        os.environ["REGOPS_TRUST_REGISTRY"],
                        os.environ.get("REGOPS_TRUST_USER") or None)


def trust_login_command(address: str, user: str, password_file: str) -> str:
    """docker login reading the password from a file, which is removed whatever happens."""
    return (f"rc=0; docker login --username {_q(user)} --password-stdin {_q(address)} "
            f"<{_q(password_file)} >/dev/null || rc=$?; rm -f {_q(password_file)}; exit $rc")


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
    ca = f"/etc/docker/certs.d/{target.address}/ca.crt"
    return "; ".join([
        f"echo '{MARK} ca'", f"sha256sum {_q(ca)} 2>/dev/null | cut -d' ' -f1",
        f"echo '{MARK} auth'",
        "home=$(getent passwd \"$(id -u)\" | cut -d: -f6)",
        f"grep -qF {_q(json.dumps(target.address))} \"$home/.docker/config.json\" "
        "2>/dev/null && echo yes || echo no",
        "true",
    ])


def trust_verdict(target: TrustTarget, remote: str) -> str | None:
    """None if the client trusts the CA and holds a login for the registry (pure)."""
    parts = parse_sections(remote)
    if target.ca_pem is not None and parts.get("ca") != hashlib.sha256(target.ca_pem).hexdigest():
        return f"/etc/docker/certs.d/{target.address}/ca.crt is missing or not the registry's CA"
    if parts.get("auth") != "yes":
        return f"no stored docker login for {target.address}"
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
          group: str, limit: Sequence[str]) -> dict[str, Any]:
    """Make the clients' Docker trust the registry's CA and log in, then check both."""
    target = trust_target(str(Path(inventory).resolve()), registry, user)
    clients = client_hosts(clients_inventory, group, limit)

    def docker_ready(h: InventoryHost) -> str | None:
        try:
            _, out, _ = run_remote(h, DOCKER_CHECK)
        except OpsError as error:
            return str(error)
        return docker_problem(out)

    problems = dict(zip([h.name for h in clients], parallel(clients, docker_ready),
                        strict=True))
    ready = [h for h in clients if problems[h.name] is None]
    rc, output = 0, ""
    if ready:
        rc, output = run_pyinfra(clients_inventory, TRUST_DEPLOY, [h.name for h in ready], env={
            "REGOPS_TRUST_INVENTORY": str(Path(inventory).resolve()),
            "REGOPS_TRUST_REGISTRY": target.host,
            "REGOPS_TRUST_USER": target.user,
        })

    def check(h: InventoryHost) -> dict[str, Any]:
        if problems[h.name]:
            return {"host": h.name, "ok": False, "error": problems[h.name]}
        try:
            _, out, _ = run_remote(h, trust_check_command(target))
            error = trust_verdict(target, out)
        except OpsError as exc:
            error = str(exc)
        return {"host": h.name, "ok": error is None, "error": error}

    doc = summarize(parallel(clients, check))
    doc.update(registry=target.address, user=target.user, ca=target.ca_pem is not None,
               deploy_ok=rc == 0)
    if rc != 0:
        doc["ok"] = False
        doc["deploy_error"] = f"the client deploy failed (exit {rc}):\n{pyinfra_tail(output)}"
    return doc
