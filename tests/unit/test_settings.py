"""Bad inventory data is refused with one line naming host, key and problem."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from regops.config.settings import ConfigError, check_data, load
from regops.config.validators import cron_problem, image_problem
from regops.secrets import paths


def _error(data: dict, environ: dict | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load("reg1", data, environ=environ or {})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("reg1: ")
    return info.value


def test_defaults_load_and_generate_passwords(base_data, secrets_dir):
    s = load("reg1", base_data, environ={})
    assert s.registry_address == "reg.example.com:5000"
    assert s.major_version == 2 and s.container_config_dir == "/etc/docker/registry"
    [admin] = s.users
    assert admin.source == "generated"
    stored = paths.password_path(secrets_dir, "reg.example.com", "admin")
    assert stored.read_text().strip() == admin.password
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    # Reused, not regenerated, on the next run.
    assert load("reg1", base_data, environ={}).users[0].password == admin.password


def test_registry_name_defaults_to_the_host_name(secrets_dir):
    s = load("registry.internal", {"registry_secrets_dir": str(secrets_dir)}, environ={})
    assert s.registry_name == "registry.internal"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("registry_prot", 5000, "unknown key"),
        ("registry_port", 0, "1-65535"),
        ("registry_port", 70000, "1-65535"),
        ("registry_port", "5000", "1-65535"),
        ("registry_port", True, "1-65535"),
        ("registry_gc_schedule", "61 * * * *", "minute field"),
        ("registry_gc_schedule", "* * *", "5"),
        ("registry_gc_schedule", "0 3 * * mon-xyz", "day of week"),
        ("registry_users", ["ci", "ops", "ci"], "listed twice"),
        ("registry_users", [], "non-empty"),
        ("registry_users", ["Bad:Name"], "not a valid user name"),
        ("registry_image", "registry", "not pinned"),
        ("registry_image", "registry:latest", "not pinned"),
        ("registry_image", "Bad Image", "not a valid image"),
        ("registry_htpasswd_bcrypt_cost", 5, "10-16"),
        ("registry_uid", 0, "1-"),
        ("registry_bind_address", "somewhere", "IP address"),
        ("registry_tls_days", 400, "1-366"),
        ("registry_log_level", "trace", "one of"),
        ("registry_config_dir", "relative/dir", "absolute"),
        ("registry_image_archive", "/nonexistent/registry.tar", "no such file"),
        ("registry_major_version", 4, "2 or 3"),
        ("registry_name", "not a name!", "not a DNS name"),
        ("registry_retention", [{"repositories": "team/*", "keep_last": -1}], "keep_last"),
        ("registry_retention", "keep 3", "list of policy maps"),
        # What Docker, nginx or the registry would refuse only after the old one is gone:
        ("registry_memory_limit", "1k", "below the minimum of 6m"),
        ("registry_memory_limit", "512", "below the minimum of 6m"),
        ("registry_memory_limit", "lots", "must look like '512m'"),
        ("registry_tls_ciphers", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-BOGUS"],
         "unknown cipher 'ECDHE-BOGUS'"),
        ("registry_tls_ciphers", ["HIGH"], "a group of ciphers"),
        ("registry_tls_ciphers", ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], "OpenSSL names"),
        ("registry_tls_ciphers", [], "non-empty list"),
        ("registry_data_dir", "/var/lib/../../etc", "not a plain path"),
        ("registry_data_dir", "/var/lib/registry/", "not a plain path"),
        ("registry_data_dir", "/etc", "system directory"),
        ("registry_config_dir", "/etc/docker", "system directory"),
        ("registry_backend_port", 4999, "must differ from registry_port 5000"),
        ("registry_backend_port", 80, "1024-65534"),
        ("registry_gc_upload_max_age", "10s", "shorter than 60s"),
        ("registry_gc_upload_max_age", "an hour", "must be a duration"),
        ("registry_drain_timeout", 0, "5-3600"),
        ("registry_tls_cipher_suites", ["TLS_AES_128_GCM_SHA256"], "use registry_tls_ciphers"),
    ],
)
def test_bad_values_name_host_key_and_problem(base_data, key, value, fragment):
    error = _error({**base_data, key: value})
    assert error.key == key
    assert fragment in error.problem


def test_major_version_from_image_and_config_path(base_data):
    s = load("reg1", {**base_data, "registry_image": "registry:3.0.0"}, environ={})
    assert s.major_version == 3 and s.container_config_dir == "/etc/distribution"
    digest = "registry@sha256:" + "a" * 64
    assert _error({**base_data, "registry_image": digest}).key == "registry_major_version"
    s = load(
        "reg1", {**base_data, "registry_image": digest, "registry_major_version": 2}, environ={}
    )
    assert s.major_version == 2


@pytest.mark.parametrize(
    ("password", "fragment"),
    [("", "is empty"), ("x7Qa", "shorter than 12"), ("password1234", "weak")],
)
def test_weak_or_empty_password_from_env(base_data, password, fragment):
    error = _error(base_data, environ={"REGOPS_PASSWORD_ADMIN": password})
    assert error.key == "registry_users"
    assert "REGOPS_PASSWORD_ADMIN" in error.problem and fragment in error.problem
    assert password == "" or password not in error.problem.replace(
        "REGOPS_PASSWORD_ADMIN", ""
    ).replace("weak password", "")


def test_empty_password_file(base_data, secrets_dir):
    path = paths.password_path(secrets_dir, "reg.example.com", "admin")
    path.parent.mkdir(parents=True)
    path.write_text("")
    error = _error(base_data)
    assert "is empty" in error.problem and str(path) in error.problem


def test_password_from_env_wins(base_data):
    s = load("reg1", base_data, environ={"REGOPS_PASSWORD_ADMIN": "a-long-enough-secret"})
    assert s.users[0].password == "a-long-enough-secret" and s.users[0].source == "env"


def _pair(tmp_path: Path, names: list[str], days: int, start_days_ago: int = 1):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=start_days_ago))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{days}.crt", tmp_path / f"{days}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_provided_certificate_checks(base_data, tmp_path):
    cert, key = _pair(tmp_path, ["reg.example.com"], 90)
    good = {**base_data, "registry_tls_cert_file": str(cert), "registry_tls_key_file": str(key)}
    assert load("reg1", good, environ={}).provided_tls

    other_cert, other_key = _pair(tmp_path, ["reg.example.com"], 91)
    error = _error({**good, "registry_tls_key_file": str(other_key)})
    assert error.key == "registry_tls_cert_file" and "does not match" in error.problem

    old_cert, old_key = _pair(tmp_path, ["reg.example.com"], -2, start_days_ago=30)
    error = _error(
        {**good, "registry_tls_cert_file": str(old_cert), "registry_tls_key_file": str(old_key)}
    )
    assert "expired" in error.problem

    error = _error({**good, "registry_extra_names": ["mirror.example.com"]})
    assert "mirror.example.com" in error.problem

    error = _error({**base_data, "registry_tls_cert_file": str(cert)})
    assert error.key == "registry_tls_key_file"


def test_check_data_has_no_side_effects(base_data, secrets_dir):
    check_data("reg1", base_data)
    assert not secrets_dir.exists()


def test_cron_and_image_helpers():
    assert cron_problem("*/15 2-4 1,15 jan-mar mon-fri") is None
    assert cron_problem("@daily") is None
    assert cron_problem("0 0 * * 8") is not None
    assert cron_problem("5-1 * * * *") is not None
    assert image_problem("registry:2.8.3") is None
    assert image_problem("host:5000/team/registry:2.8.3") is None
    assert image_problem("host:5000/team/registry") is not None
