"""Private CA and server certificates, plus checks of operator-provided ones.

The CA is created once and never replaced silently: clients trust it, so a
new CA would break every client. Server certificates are short-lived and
reissued by the next deploy when they near expiry or the names change.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from regops.secrets.store import ensure_private_dir, tighten, write_atomic

PrivateKey = CertificateIssuerPrivateKeyTypes
_ISSUER_KEY_TYPES = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"

CA_DAYS = 3650
MAX_SERVER_DAYS = 366
BACKDATE = timedelta(minutes=5)  # tolerate clients whose clock is a little behind

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_RE = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


class PkiError(RuntimeError):
    """The PKI directory is in a state that needs the operator's decision."""


@dataclass(frozen=True)
class ServerCert:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    not_after: datetime
    renewed: bool


# --- helpers -----------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    """Aware UTC time in whole seconds (what X.509 can store)."""
    value = now or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def days_left(cert: x509.Certificate, now: datetime | None = None) -> int:
    """Whole days until the certificate expires (floor; negative once expired)."""
    seconds = (cert.not_valid_after_utc - _now(now)).total_seconds()
    return math.floor(seconds / 86400)


def _sign_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """Ed25519/Ed448 sign without a separate hash; everything else with SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _spki(key: CertificatePublicKeyTypes | PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _cn(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _unbracket(name: str) -> str:
    text = name.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text


def general_name(name: str) -> x509.GeneralName:
    """A SAN entry for a DNS name or an IP literal ("[::1]" brackets allowed)."""
    text = _unbracket(name)
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    dns = text.lower().rstrip(".")
    if not dns.isascii():
        try:
            dns = dns.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{name!r} is not a valid DNS name") from exc
    if len(dns) > 253 or not _DNS_RE.fullmatch(dns):
        raise ValueError(f"{name!r} is neither a DNS name nor an IP address")
    return x509.DNSName(dns)


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def _san_text(entry: x509.GeneralName) -> str:
    return str(entry.value)


def _dns_matches(pattern: str, host: str) -> bool:
    """RFC 6125 matching: exact, or `*.` standing for exactly one leftmost label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    head, dot, rest = host.partition(".")
    return bool(head and dot and rest) and rest == pattern[2:]


def covers(cert: x509.Certificate, name: str) -> bool:
    """True if a SAN of `cert` matches `name` (DNS with wildcards, or IP). CN is ignored."""
    text = _unbracket(name)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    for entry in _sans(cert):
        if ip is not None:
            if isinstance(entry, x509.IPAddress) and entry.value == ip:
                return True
        elif isinstance(entry, x509.DNSName) and _dns_matches(entry.value, text):
            return True
    return False


def _read_key(path: Path) -> PrivateKeyTypes:
    tighten(path)
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# Leaf certificates (the server's, the token signer's) may only sign: an EC key
# agrees on TLS keys by signing, and a signer signs tokens.
_SIGNING_ONLY = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


# --- private CA ----------------------------------------------------------------


def _create_ca(common_name: str, now: datetime) -> tuple[x509.Certificate, PrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before = now - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def ensure_ca(
    pki_dir: Path,
    common_name: str = "regops private CA",
    now: datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """Load the private CA from `pki_dir`, creating it (EC P-256, 10 years) if absent.

    An existing CA is never replaced, even when expiring: clients trust it, so
    replacing it is the operator's call (`days_left` tells how urgent it is).
    """
    pki_dir = Path(pki_dir)
    ensure_private_dir(pki_dir)
    tighten(pki_dir, 0o700)
    cert_path, key_path = pki_dir / CA_CERT, pki_dir / CA_KEY
    if not cert_path.exists():
        # No certificate was ever written, so nobody can trust a leftover key.
        cert, key = _create_ca(common_name, _now(now))
        write_atomic(key_path, _key_pem(key), 0o600)
        write_atomic(cert_path, _cert_pem(cert), 0o644)
        return cert, key
    if not key_path.exists():
        raise PkiError(f"{cert_path} exists but {key_path} is missing; cannot sign certificates")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    loaded = _read_key(key_path)
    if not isinstance(loaded, _ISSUER_KEY_TYPES):
        raise PkiError(f"{key_path} holds a key type that cannot sign certificates")
    key = loaded
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise PkiError(f"{key_path} does not match {cert_path}")
    if not _is_ca(cert):
        raise PkiError(f"{cert_path} is not a CA certificate")
    return cert, key


# --- server certificate -----------------------------------------------------------


def _issue_server(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    wanted: list[x509.GeneralName],
    first_name: str,
    days: int,
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = now - BACKDATE
    not_after = min(not_before + timedelta(days=days), ca.not_valid_after_utc)
    cn = _unbracket(first_name)
    # CN is limited to 64 characters; clients only look at the SANs anyway.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if len(cn) <= 64 else [])
    try:
        ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SIGNING_ONLY, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(wanted), critical=len(subject) == 0)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, _sign_hash(ca_key))
    )
    return cert, key


def _reusable(
    pki_dir: Path,
    ca: x509.Certificate,
    wanted: list[x509.GeneralName],
    renew_days: int,
    now: datetime,
) -> tuple[x509.Certificate, PrivateKeyTypes] | None:
    """The stored server certificate and key, if they can serve another deploy."""
    cert_path, key_path = pki_dir / SERVER_CERT, pki_dir / SERVER_KEY
    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = _read_key(key_path)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return None
    if _spki(key.public_key()) != _spki(cert.public_key()):
        return None
    # Same set, not just a superset: a name removed from the inventory should
    # stop being valid for this host.
    if set(_sans(cert)) != set(wanted):
        return None
    if cert.not_valid_before_utc > now or days_left(cert, now) <= renew_days:
        return None
    return cert, key


def ensure_server_cert(
    pki_dir: Path,
    names: list[str],
    days: int = 365,
    renew_days: int = 30,
    now: datetime | None = None,
    force: bool = False,
) -> ServerCert:
    """Reuse `server.crt`/`server.key` if still good for `names`, else issue new ones.

    Good means: signed by the current CA, SANs equal to `names`, and more than
    `renew_days` days left. A new certificate gets a new EC P-256 key. `force`
    issues a new one even when the stored pair is still good.
    """
    if not names:
        raise ValueError("a server certificate needs at least one name")
    if not 1 <= days <= MAX_SERVER_DAYS:
        raise ValueError(f"certificate lifetime must be 1..{MAX_SERVER_DAYS} days, not {days}")
    if not 0 <= renew_days < days:
        raise ValueError(f"renew_days must be 0..{days - 1}, not {renew_days}")
    wanted: list[x509.GeneralName] = []
    for name in names:
        entry = general_name(name)
        if entry not in wanted:
            wanted.append(entry)
    current = _now(now)
    pki_dir = Path(pki_dir)
    ca, ca_key = ensure_ca(pki_dir, now=current)
    ca_pem = _cert_pem(ca)
    found = None if force else _reusable(pki_dir, ca, wanted, renew_days, current)
    if found is not None:
        cert, key = found
        return ServerCert(_cert_pem(cert), _key_pem(key), ca_pem, cert.not_valid_after_utc, False)
    if days_left(ca, current) <= 0:
        raise PkiError(
            f"the private CA in {pki_dir} expired on {ca.not_valid_after_utc.date()}; "
            "move the directory away to create a new CA (clients must trust it again)"
        )
    cert, key = _issue_server(ca, ca_key, wanted, names[0], days, current)
    cert_pem, key_pem = _cert_pem(cert), _key_pem(key)
    # Key first: a crash in between leaves a mismatched pair, which is reissued.
    write_atomic(pki_dir / SERVER_KEY, key_pem, 0o600)
    write_atomic(pki_dir / SERVER_CERT, cert_pem, 0o644)
    return ServerCert(cert_pem, key_pem, ca_pem, cert.not_valid_after_utc, True)


# --- provided certificates -----------------------------------------------------------


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def check_provided(
    cert_pem: bytes,
    key_pem: bytes,
    names: list[str],
    now: datetime | None = None,
) -> list[str]:
    """Problems with an operator-provided certificate and key, as short phrases.

    `cert_pem` may hold a chain; the first certificate (the leaf) is checked.
    An empty list means the pair can be deployed for `names`.
    """
    problems: list[str] = []
    cert: x509.Certificate | None = None
    key: PrivateKeyTypes | None = None
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except (ValueError, IndexError) as exc:
        problems.append(f"cannot parse certificate: {exc}")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        problems.append(f"cannot parse key: {exc}")
    if cert is None:
        return problems
    if key is not None and _spki(key.public_key()) != _spki(cert.public_key()):
        problems.append("key does not match certificate")
    current = _now(now)
    if current < cert.not_valid_before_utc:
        problems.append(f"certificate is not valid until {_when(cert.not_valid_before_utc)}")
    if current > cert.not_valid_after_utc:
        problems.append(f"certificate expired on {cert.not_valid_after_utc.date().isoformat()}")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and not {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    } & set(usages):
        problems.append("certificate is not for TLS servers (no serverAuth usage)")
    for name in names:
        if not covers(cert, name):
            problems.append(f"certificate does not cover {name}")
    return problems


def cert_info(cert_pem: bytes, now: datetime | None = None) -> dict[str, Any]:
    """Summary of the leaf certificate in `cert_pem`, for status output."""
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    return {
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": days_left(cert, now),
        "sans": [_san_text(entry) for entry in _sans(cert)],
        "subject_cn": _cn(cert.subject),
        "issuer_cn": _cn(cert.issuer),
        "is_ca": _is_ca(cert),
    }


# --- day-2: forced renewal and certificate details -------------------------------------


def renew_server_cert(
    pki_dir: Path,
    names: list[str],
    days: int = 365,
    now: datetime | None = None,
) -> ServerCert:
    """Issue a new server certificate and key now, even if the stored pair is still good.

    For `regops certs renew`: the next deploy's `ensure_server_cert` reuses the
    new pair (same names, fresh dates), so it is what the hosts will serve.
    """
    return ensure_server_cert(pki_dir, names, days=days, renew_days=0, now=now, force=True)


def serial_hex(cert: x509.Certificate) -> str:
    """The serial as lower-case hex, how status output and tests compare certificates."""
    return format(cert.serial_number, "x")


def load_leaf(data: bytes) -> x509.Certificate:
    """The first certificate in PEM (a chain is fine) or DER bytes."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)[0]
    return x509.load_der_x509_certificate(data)


# --- token signing ------------------------------------------------------------------

TOKEN_DIR = "token"  # below a registry's pki directory: the token CA and its signer
TOKEN_CERT, TOKEN_KEY = "signer.crt", "signer.key"


@dataclass(frozen=True)
class TokenSigner:
    """What signs the registry's tokens: a key and its certificate under the token CA,
    which the registry trusts (`rootcertbundle`). Separate from the TLS CA, so the
    token key can be rotated without touching what clients trust."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)


def _issue_signer(ca: x509.Certificate, ca_key: PrivateKey, days: int, now: datetime
                  ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = now - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regops token signer")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_before + timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SIGNING_ONLY, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, _sign_hash(ca_key))
    )
    return cert, key


def ensure_token_signer(pki_dir: Path, days: int = 365, renew_days: int = 30,
                        now: datetime | None = None, force: bool = False) -> TokenSigner:
    """The token CA (made once) and a signing key and certificate under it, reused until
    fewer than `renew_days` are left (or `force`)."""
    token_dir = Path(pki_dir) / TOKEN_DIR
    ca, ca_key = ensure_ca(token_dir, "regops token CA", now)
    cert_path, key_path = token_dir / TOKEN_CERT, token_dir / TOKEN_KEY
    current = _now(now)
    if not force and cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if days_left(cert, current) >= renew_days:
            return TokenSigner(_cert_pem(ca), cert_path.read_bytes(), key_path.read_bytes())
    cert, key = _issue_signer(ca, ca_key, days, current)
    write_atomic(key_path, _key_pem(key), 0o600)
    write_atomic(cert_path, _cert_pem(cert), 0o644)
    return TokenSigner(_cert_pem(ca), _cert_pem(cert), _key_pem(key))
