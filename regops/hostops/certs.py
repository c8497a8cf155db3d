"""`regops certs`: what certificate each host serves and holds, and renewal of
generated ones (re-issued operator-side, rolled out by the deploy)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import SITE_DEPLOY
from regops.errors import RegopsError, UsageError
from regops.hostops.remote import pyinfra_tail, run_pyinfra, run_remote, summarize
from regops.inventory import InventoryHost
from regops.registry import endpoint
from regops.secrets import paths, pki
from regops.util import parallel_all


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
        raise RegopsError(f"TLS handshake with {host}:{port} failed: {error}") from None
    if not der:
        raise RegopsError(f"{host}:{port} sent no certificate")
    return pki.load_leaf(der)


def _is_ip(text: str) -> bool:

    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _sni(s: Settings) -> str:
    host = urllib.parse.urlsplit(s.api_url).hostname or s.registry_name
    return s.registry_name if _is_ip(host) else host


def served_cert(s: Settings) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return cert_summary(served_certificate(s.api_url, _sni(s))), None
    except RegopsError as error:
        return None, str(error)


def host_cert_command(s: Settings) -> str:
    return f"cat {hostpaths.FRONTDOOR_CERT} 2>/dev/null || true"


def file_cert(pem: str) -> tuple[dict[str, Any] | None, str | None]:
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
        served, served_error = served_cert(s)
        try:
            _, pem, _ = run_remote(h, host_cert_command(s))
            on_host, file_error = file_cert(pem)
        except RegopsError as error:
            on_host, file_error = None, str(error)
        return cert_entry(h.name, s.registry_address, served, served_error, on_host, file_error)

    doc = summarize(parallel_all(one, list(pairs)))
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
    before = {h.name: served_cert(s)[0] for h, s in pairs}
    issued: dict[Path, str] = {}  # one certificate per registry (its pki directory)
    for _, s in pairs:
        pki_dir = paths.pki_dir(s.secrets_root, s.registry_name)
        if pki_dir not in issued:
            cert = pki.renew_server_cert(pki_dir, s.tls_names, days=s["registry_tls_days"])
            issued[pki_dir] = pki.serial_hex(pki.load_leaf(cert.cert_pem))
    rc, output = run_pyinfra(inventory, SITE_DEPLOY, [h.name for h, _ in pairs])

    def one(pair: tuple[InventoryHost, Settings]) -> dict[str, Any]:
        h, s = pair
        want = issued[paths.pki_dir(s.secrets_root, s.registry_name)]
        served, error = served_cert(s)
        deadline = time.monotonic() + wait
        while (served is None or served["serial"] != want) and time.monotonic() < deadline:
            time.sleep(2)
            served, error = served_cert(s)
        old = before[h.name]
        ok = served is not None and served["serial"] == want
        if not ok and error is None:
            error = f"still serves serial {served['serial'] if served else '?'}, not {want}"
        return {"host": h.name, "registry": s.registry_address, "ok": ok,
                "old_serial": old["serial"] if old else None, "new_serial": want,
                "served": served, "error": error}

    doc = summarize(parallel_all(one, list(pairs)))
    doc["deploy_ok"] = rc == 0
    if rc != 0:
        doc["ok"] = False
        doc["deploy_error"] = f"the deploy failed (exit {rc}):\n{pyinfra_tail(output)}"
    return doc

