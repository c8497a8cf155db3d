from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from regops.secrets import pki
from tests.support.require import require_command

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
NAMES = ["registry.example.com", "10.0.0.5"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _permissive_umask():
    old = os.umask(0)
    yield
    os.umask(old)


# --- helpers to build foreign certificates -------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _self_signed(
    key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    not_before: datetime = NOW - timedelta(days=10),
    not_after: datetime = NOW + timedelta(days=90),
    cn: str = "ignored.example.com",
    eku: list[x509.ObjectIdentifier] | None = None,
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def _dns(*names: str) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names]


# --- CA ------------------------------------------------------------------------------


def test_ca_created_with_expected_extensions_and_modes(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    cert, key = pki.ensure_ca(d, now=NOW)
    assert _mode(d) == 0o700
    assert _mode(d / "ca.crt") == 0o644
    assert _mode(d / "ca.key") == 0o600
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"

    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.key_encipherment and not ku.value.key_agreement
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert.verify_directly_issued_by(cert)  # self-signed
    assert pki.days_left(cert, NOW) >= 3649
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=3650)


def test_ca_is_reused_not_regenerated(tmp_path: Path) -> None:
    first, _ = pki.ensure_ca(tmp_path, now=NOW)
    before = (tmp_path / "ca.crt").read_bytes()
    # Even far in the future, when the CA is nearly expired, it is kept.
    later, _ = pki.ensure_ca(tmp_path, now=NOW + timedelta(days=3640))
    assert later == first
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert pki.days_left(later, NOW + timedelta(days=3640)) < 10


def test_ca_without_key_is_an_error(tmp_path: Path) -> None:
    pki.ensure_ca(tmp_path, now=NOW)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(pki.PkiError, match="missing"):
        pki.ensure_ca(tmp_path, now=NOW)


def test_ca_key_mismatch_is_an_error(tmp_path: Path) -> None:
    pki.ensure_ca(tmp_path, now=NOW)
    (tmp_path / "ca.key").write_bytes(_pem_key(_key()))
    with pytest.raises(pki.PkiError, match="does not match"):
        pki.ensure_ca(tmp_path, now=NOW)


def test_days_left_floors() -> None:
    pem = _self_signed(_key(), _dns("a.example"), not_after=NOW + timedelta(days=2, hours=23))
    cert = x509.load_pem_x509_certificate(pem)
    assert pki.days_left(cert, NOW) == 2
    assert pki.days_left(cert, NOW + timedelta(days=3)) == -1


# --- server certificate ------------------------------------------------------------


def test_server_cert_generated(tmp_path: Path) -> None:
    sc = pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    assert sc.renewed
    cert = x509.load_pem_x509_certificate(sc.cert_pem)
    ca = x509.load_pem_x509_certificate(sc.ca_pem)
    cert.verify_directly_issued_by(ca)
    assert len(x509.load_pem_x509_certificates(sc.cert_pem)) == 1  # no chain appended

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["registry.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAMES[0]

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest

    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=366)
    assert sc.not_after == cert.not_valid_after_utc

    key = serialization.load_pem_private_key(sc.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()

    assert (tmp_path / "server.crt").read_bytes() == sc.cert_pem
    assert (tmp_path / "server.key").read_bytes() == sc.key_pem
    assert _mode(tmp_path / "server.crt") == 0o644
    assert _mode(tmp_path / "server.key") == 0o600


def test_server_cert_reused(tmp_path: Path) -> None:
    first = pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    second = pki.ensure_server_cert(tmp_path, NAMES, now=NOW + timedelta(days=100))
    assert not second.renewed
    assert second.cert_pem == first.cert_pem
    assert second.key_pem == first.key_pem
    assert second.ca_pem == first.ca_pem


def test_server_cert_reused_regardless_of_name_order_and_case(tmp_path: Path) -> None:
    first = pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    again = pki.ensure_server_cert(tmp_path, ["10.0.0.5", "Registry.Example.com."], now=NOW)
    assert not again.renewed
    assert again.cert_pem == first.cert_pem


def test_server_cert_renewed_when_few_days_left(tmp_path: Path) -> None:
    first = pki.ensure_server_cert(tmp_path, NAMES, days=365, renew_days=30, now=NOW)
    later = NOW + timedelta(days=340)  # 25 days left
    renewed = pki.ensure_server_cert(tmp_path, NAMES, days=365, renew_days=30, now=later)
    assert renewed.renewed
    assert renewed.cert_pem != first.cert_pem
    assert renewed.key_pem != first.key_pem  # new key as well
    assert renewed.not_after > first.not_after
    assert renewed.ca_pem == first.ca_pem


def test_new_name_forces_reissue(tmp_path: Path) -> None:
    first = pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    grown = pki.ensure_server_cert(tmp_path, [*NAMES, "mirror.example.com"], now=NOW)
    assert grown.renewed
    assert grown.cert_pem != first.cert_pem
    assert pki.check_provided(grown.cert_pem, grown.key_pem, ["mirror.example.com"], NOW) == []


def test_removed_name_forces_reissue(tmp_path: Path) -> None:
    pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    shrunk = pki.ensure_server_cert(tmp_path, NAMES[:1], now=NOW)
    assert shrunk.renewed
    assert "10.0.0.5" not in pki.cert_info(shrunk.cert_pem, NOW)["sans"]


def test_cert_from_another_ca_is_replaced(tmp_path: Path) -> None:
    pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    for name in ("ca.crt", "ca.key"):
        (tmp_path / name).unlink()
    again = pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    assert again.renewed
    ca = x509.load_pem_x509_certificate(again.ca_pem)
    x509.load_pem_x509_certificate(again.cert_pem).verify_directly_issued_by(ca)


def test_mismatched_server_key_is_replaced(tmp_path: Path) -> None:
    pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    (tmp_path / "server.key").write_bytes(_pem_key(_key()))
    again = pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    assert again.renewed
    assert pki.check_provided(again.cert_pem, again.key_pem, NAMES, NOW) == []


@pytest.mark.parametrize("days", [0, 367, 825])
def test_lifetime_limits(tmp_path: Path, days: int) -> None:
    with pytest.raises(ValueError):
        pki.ensure_server_cert(tmp_path, NAMES, days=days, now=NOW)


def test_max_lifetime_is_366_days(tmp_path: Path) -> None:
    sc = pki.ensure_server_cert(tmp_path, NAMES, days=366, renew_days=30, now=NOW)
    cert = x509.load_pem_x509_certificate(sc.cert_pem)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=366)


def test_invalid_names_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        pki.ensure_server_cert(tmp_path, [], now=NOW)
    with pytest.raises(ValueError):
        pki.ensure_server_cert(tmp_path, ["bad name"], now=NOW)


def test_ipv6_and_bracketed_names(tmp_path: Path) -> None:
    sc = pki.ensure_server_cert(tmp_path, ["reg.example", "[fd00::5]"], now=NOW)
    assert pki.cert_info(sc.cert_pem, NOW)["sans"] == ["reg.example", "fd00::5"]
    assert pki.check_provided(sc.cert_pem, sc.key_pem, ["fd00::5", "[fd00::5]"], NOW) == []


def test_openssl_verifies_chain(tmp_path: Path) -> None:
    require_command("openssl", "openssl")
    pki.ensure_server_cert(tmp_path, NAMES)  # real clock: openssl checks validity
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(tmp_path / "ca.crt"),
            str(tmp_path / "server.crt"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip().endswith(": OK")


# --- provided certificates -----------------------------------------------------------


def test_check_provided_accepts_good_pair() -> None:
    key = _key()
    pem = _self_signed(
        key, [*_dns("reg.example.com"), x509.IPAddress(ipaddress.ip_address("10.1.2.3"))]
    )
    assert pki.check_provided(pem, _pem_key(key), ["reg.example.com", "10.1.2.3"], NOW) == []


def test_check_provided_key_mismatch() -> None:
    pem = _self_signed(_key(), _dns("reg.example.com"))
    problems = pki.check_provided(pem, _pem_key(_key()), ["reg.example.com"], NOW)
    assert problems == ["key does not match certificate"]


def test_check_provided_expired() -> None:
    key = _key()
    pem = _self_signed(
        key,
        _dns("reg.example.com"),
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2025, 1, 1, tzinfo=UTC),
    )
    problems = pki.check_provided(pem, _pem_key(key), ["reg.example.com"], NOW)
    assert problems == ["certificate expired on 2025-01-01"]


def test_check_provided_not_yet_valid() -> None:
    key = _key()
    pem = _self_signed(
        key,
        _dns("reg.example.com"),
        not_before=NOW + timedelta(days=2),
        not_after=NOW + timedelta(days=30),
    )
    problems = pki.check_provided(pem, _pem_key(key), ["reg.example.com"], NOW)
    assert problems == ["certificate is not valid until 2030-06-03 12:00 UTC"]


def test_check_provided_wrong_names_ignores_cn() -> None:
    key = _key()
    pem = _self_signed(key, _dns("other.example.com"), cn="reg.example.com")
    problems = pki.check_provided(pem, _pem_key(key), ["reg.example.com", "10.0.0.5"], NOW)
    assert problems == [
        "certificate does not cover reg.example.com",
        "certificate does not cover 10.0.0.5",
    ]


def test_check_provided_without_san_covers_nothing() -> None:
    key = _key()
    pem = _self_signed(key, [], cn="reg.example.com")
    problems = pki.check_provided(pem, _pem_key(key), ["reg.example.com"], NOW)
    assert problems == ["certificate does not cover reg.example.com"]


def test_check_provided_ip_name_needs_ip_san() -> None:
    key = _key()
    pem = _self_signed(key, _dns("10.0.0.5"))  # an IP written as a DNS SAN does not count
    assert pki.check_provided(pem, _pem_key(key), ["10.0.0.5"], NOW) == [
        "certificate does not cover 10.0.0.5"
    ]


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        ("reg.example.com", True),
        ("REG.Example.com", True),
        ("example.com", False),
        ("a.reg.example.com", False),
        ("reg.example.org", False),
    ],
)
def test_wildcard_matching(name: str, covered: bool) -> None:
    key = _key()
    pem = _self_signed(key, _dns("*.example.com"))
    problems = pki.check_provided(pem, _pem_key(key), [name], NOW)
    assert (problems == []) is covered
    if not covered:
        assert problems == [f"certificate does not cover {name}"]


def test_check_provided_checks_leaf_of_chain() -> None:
    leaf_key = _key()
    leaf = _self_signed(leaf_key, _dns("reg.example.com"))
    other = _self_signed(_key(), _dns("elsewhere.example.com"))
    assert pki.check_provided(leaf + other, _pem_key(leaf_key), ["reg.example.com"], NOW) == []
    # Reversed order: the leaf position now holds a cert that neither matches nor covers.
    problems = pki.check_provided(other + leaf, _pem_key(leaf_key), ["reg.example.com"], NOW)
    assert "key does not match certificate" in problems
    assert "certificate does not cover reg.example.com" in problems


def test_check_provided_client_only_certificate() -> None:
    key = _key()
    pem = _self_signed(key, _dns("reg.example.com"), eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    problems = pki.check_provided(pem, _pem_key(key), ["reg.example.com"], NOW)
    assert problems == ["certificate is not for TLS servers (no serverAuth usage)"]


def test_check_provided_unparseable_inputs() -> None:
    key = _key()
    good_cert = _self_signed(key, _dns("reg.example.com"))
    bad_cert = pki.check_provided(b"not a pem", _pem_key(key), ["reg.example.com"], NOW)
    assert len(bad_cert) == 1 and bad_cert[0].startswith("cannot parse certificate: ")
    bad_key = pki.check_provided(good_cert, b"garbage", ["reg.example.com"], NOW)
    assert len(bad_key) == 1 and bad_key[0].startswith("cannot parse key: ")
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    enc_problems = pki.check_provided(good_cert, encrypted, ["reg.example.com"], NOW)
    assert len(enc_problems) == 1 and enc_problems[0].startswith("cannot parse key: ")


def test_generated_cert_passes_check_provided(tmp_path: Path) -> None:
    sc = pki.ensure_server_cert(tmp_path, NAMES, now=NOW)
    assert pki.check_provided(sc.cert_pem, sc.key_pem, NAMES, NOW) == []
    assert pki.check_provided(sc.cert_pem, sc.key_pem, ["x.example.com"], NOW) == [
        "certificate does not cover x.example.com"
    ]


def test_cert_info(tmp_path: Path) -> None:
    sc = pki.ensure_server_cert(tmp_path, NAMES, days=90, renew_days=10, now=NOW)
    info = pki.cert_info(sc.cert_pem, now=NOW)
    assert info == {
        "not_after": (NOW - timedelta(minutes=5) + timedelta(days=90)).isoformat(),
        "days_left": 89,
        "sans": ["registry.example.com", "10.0.0.5"],
        "subject_cn": "registry.example.com",
        "issuer_cn": "regops private CA",
        "is_ca": False,
    }
    ca_info = pki.cert_info(sc.ca_pem, now=NOW)
    assert ca_info["is_ca"] is True
    assert ca_info["sans"] == []
    assert ca_info["subject_cn"] == ca_info["issuer_cn"] == "regops private CA"


def test_server_cert_never_outlives_the_ca(tmp_path: Path) -> None:
    ca, _ = pki.ensure_ca(tmp_path, now=NOW)
    late = ca.not_valid_after_utc - timedelta(days=100)
    sc = pki.ensure_server_cert(tmp_path, NAMES, days=365, renew_days=30, now=late)
    assert sc.not_after == ca.not_valid_after_utc


def test_expired_ca_is_not_replaced_silently(tmp_path: Path) -> None:
    ca, _ = pki.ensure_ca(tmp_path, now=NOW)
    after = ca.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(pki.PkiError, match="expired"):
        pki.ensure_server_cert(tmp_path, NAMES, now=after)
    assert x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes()) == ca
