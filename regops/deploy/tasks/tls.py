"""TLS: a generated private CA and server certificate, or a provided pair.

Generated material is made and kept on the operator's machine (reused, renewed
when under `registry_tls_renew_days` left). The front door serves the
certificate (its key root-only on the host); the host's own Docker trusts the CA.

Its keys: the `tls` concern of `regops.config.keys` (docs/reference/keys.md).
"""

from io import StringIO
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import files

from regops import hostpaths
from regops.config.settings import Settings
from regops.secrets import paths, pki


def material(s: Settings) -> tuple[bytes, bytes, bytes | None]:
    """(certificate, key, CA or None) for this host, from the operator's machine."""
    if s.provided_tls:
        ca_file = s["registry_tls_ca_file"]
        return (
            Path(s["registry_tls_cert_file"]).read_bytes(),
            Path(s["registry_tls_key_file"]).read_bytes(),
            Path(ca_file).read_bytes() if ca_file else None,
        )
    pki_dir = paths.pki_dir(s.secrets_root, s.registry_name)
    pki.ensure_ca(pki_dir)
    cert = pki.ensure_server_cert(
        pki_dir, s.tls_names, days=s["registry_tls_days"], renew_days=s["registry_tls_renew_days"]
    )
    return cert.cert_pem, cert.key_pem, cert.ca_pem


@deploy("TLS certificates")
def apply(s: Settings) -> None:
    """The host's own Docker trusts a generated (or provided) CA; the certificate and key
    themselves go to the front door (`regops.deploy.tasks.frontdoor`)."""
    _, _, ca = material(s)
    if ca is None:
        return
    certs_d = hostpaths.certs_d(s.registry_address)
    files.directory(
        name="Create the host Docker's trust directory for the registry",
        path=certs_d,
        user="root",
        group="root",
        mode="0755",
    )
    files.put(
        name="Make the host's Docker trust the registry's CA",
        src=StringIO(ca.decode()),
        dest=f"{certs_d}/ca.crt",
        user="root",
        group="root",
        mode="0444",
    )
