"""Debian's chromium driven by Playwright, as the web pages' tests use it: the flags for
a container without a desktop, and certificates trusted the way a person who ran
`regops trust` would (their key pinned, after verifying them against their CA)."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def spki_pin(address: str, port: int, ca_file: str) -> str:
    """The base64 SHA-256 of the key of the certificate served at address:port, once
    the certificate is verified against `ca_file`: chromium's
    --ignore-certificate-errors-spki-list accepts exactly that key."""
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False
    with socket.create_connection((address, port), 10) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    key = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(key).digest()).decode()
