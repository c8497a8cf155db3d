"""TLS: a generated private CA and server certificate, or a provided pair.

Generated material is made and kept on the operator's machine (reused, renewed
when under `registry_tls_renew_days` left). The key on the host is root-owned,
readable by the registry's group only. The host's own Docker trusts the CA.

Its keys: the `tls` concern of `regops.config.keys` (README: Data keys).
"""

from io import StringIO
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from regops import paths
from regops.config.settings import Settings
from regops.deploy.ops import Secret, secret_file
from regops.secrets import pki


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
def apply(s: Settings) -> list[OperationMeta]:
    """Returns the operations whose change needs a registry restart."""
    cert, key, ca = material(s)
    gid = s["registry_gid"]
    config_dir = s["registry_config_dir"]
    files.directory(
        name=f"Create {config_dir}, readable by the registry's group only",
        path=config_dir,
        user="root",
        group=s["registry_user"],
        mode="0750",
    )
    files.directory(
        name=f"Create {config_dir}/tls",
        path=f"{config_dir}/tls",
        user="root",
        group=s["registry_user"],
        mode="0750",
    )
    changed = [
        secret_file(
            name="Upload the registry's TLS certificate",
            src=Secret(cert),
            path=f"{config_dir}/tls/server.crt",
            uid=0,
            gid=gid,
            mode="0644",
        ),
        secret_file(
            name="Upload the registry's TLS key (root-owned, group-readable only)",
            src=Secret(key),
            path=f"{config_dir}/tls/server.key",
            uid=0,
            gid=gid,
            mode="0640",
        ),
    ]
    if ca is not None:
        secret_file(
            name="Upload the CA certificate beside the registry's certificate",
            src=Secret(ca),
            path=f"{config_dir}/tls/ca.crt",
            uid=0,
            gid=gid,
            mode="0644",
        )
        certs_d = f"/etc/docker/certs.d/{s.registry_address}"
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
    return changed
