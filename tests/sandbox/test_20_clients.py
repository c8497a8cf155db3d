"""Real clients against the deployed registries: skopeo from the operator's
machine, the docker CLI on the host itself, and plain HTTPS."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import ssl
import threading

import pytest

from regops.registry.client import RegistryError
from regops.sandbox import oci
from regops.secrets import pki
from tests.support.sandbox import (
    assert_blobs_hash_to_their_digests,
    client,
    demo_password,
    docker_push_pull,
    pull,
    push,
)

pytestmark = pytest.mark.sandbox

REPO = "team/project/service"


def test_skopeo_push_and_pull_three_level_namespace_with_login(host_info, tmp_path):
    layout = tmp_path / "src"
    payload = os.urandom(64 * 1024)
    pushed = oci.image(layout, "1.0", [{"app/bin": payload}])
    result = push(host_info, layout, "1.0", REPO)
    assert result.returncode == 0, result.stderr
    assert REPO in client(host_info).catalog()
    assert client(host_info).digest(REPO, "1.0") == pushed.digest
    result = pull(host_info, REPO, "1.0", tmp_path / "pulled")
    assert result.returncode == 0, result.stderr
    # Every blob that came back hashes to its digest.
    assert_blobs_hash_to_their_digests(tmp_path / "pulled")


def test_docker_cli_on_the_host_logs_in_pushes_and_pulls(th, host_info):
    ref = f"{host_info['registry_name']}:5000/{REPO}:docker-cli"
    password = shlex.quote(demo_password(host_info))
    th.check_output(
        f"printf %s {password} | docker login -u demo --password-stdin "
        f"{host_info['registry_name']}:5000"
    )
    try:
        th.check_output(f"tar -C /etc -c hostname os-release | docker import - {ref}")
        docker_push_pull(th, ref)
    finally:
        th.run(f"docker logout {host_info['registry_name']}:5000")
    assert "docker-cli" in client(host_info).tags(REPO)


def test_anonymous_and_wrong_password_get_401(host_info):
    anonymous = client(host_info)
    anonymous.username = None
    assert anonymous.ping() == 401
    assert client(host_info, password="not-the-password-at-all").ping() == 401
    assert client(host_info, username="nobody", password="whatever-it-is").ping() == 401
    assert client(host_info).ping() == 200


def test_client_without_the_ca_fails_tls(host_info, tmp_path):
    with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
        client(host_info, ca=False).ping()
    result = pull(host_info, REPO, "1.0", tmp_path / "no-ca", ca=False)
    assert result.returncode != 0
    assert "certificate" in result.stderr.lower()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def _legacy_client(ca: str) -> ssl.SSLContext:
    """A client that offers only TLS 1.0 and 1.1, with every cipher allowed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def _handshake(context: ssl.SSLContext, port: int, name: str) -> str | None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=name) as tls:
        return tls.version()


def test_tls_below_1_2_is_refused(host_info, tmp_path):
    # Control: this machine's OpenSSL can speak TLS 1.0/1.1 when a server allows it,
    # so the registry's refusal below is the registry's doing, not the client's.
    material = pki.ensure_server_cert(tmp_path / "pki", ["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(material.cert_pem)
    (tmp_path / "key.pem").write_bytes(material.key_pem)
    (tmp_path / "ca.pem").write_bytes(material.ca_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1
    server.maximum_version = ssl.TLSVersion.TLSv1_1
    server.set_ciphers("ALL:@SECLEVEL=0")
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve_one() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        assert _handshake(_legacy_client(str(tmp_path / "ca.pem")), port, "127.0.0.1") in (
            "TLSv1", "TLSv1.1")
        thread.join(10)

    with pytest.raises(ssl.SSLError):
        _handshake(_legacy_client(host_info["ca_path"]), host_info["registry_published_port"],
                   "127.0.0.1")


def test_manifest_delete_by_digest(host_info, tmp_path):
    layout = tmp_path / "doomed"
    pushed = oci.image(layout, "gone", [{"f": os.urandom(1024)}])
    assert push(host_info, layout, "gone", "team/doomed/app").returncode == 0
    c = client(host_info)
    digest = c.digest("team/doomed/app", "gone")
    assert digest == pushed.digest
    response = c.request("DELETE", f"/v2/team/doomed/app/manifests/{digest}")
    assert response.status == 202
    assert c.request("GET", f"/v2/team/doomed/app/manifests/{digest}").status == 404
    assert c.request("GET", "/v2/team/doomed/app/manifests/gone").status == 404
