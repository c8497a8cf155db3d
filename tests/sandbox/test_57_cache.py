"""A pull-through cache on a sandbox host: the bookworm host deployed as a cache of
the trixie host's registry (its CA, a login there), with real clients.

The cache keeps its own data directory, so deploying the host back to a plain
registry afterwards finds its images as they were.
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from regops.sandbox import oci
from regops.sandbox.model import secrets_dir
from regops.secrets import paths
from tests.support.sandbox import (
    SANDBOX,
    Deploy,
    assert_blobs_hash_to_their_digests,
    changed_ops,
    client,
    demo_password,
    deploy,
    pull,
    push,
    regops,
    ssh_host,
)

pytestmark = pytest.mark.sandbox

REPO = "team/cached/service"
CACHE_DIR = "/var/lib/registry-cache"


def _cache_message(upstream: dict) -> str:
    return (f"this registry is a pull-through cache of https://{upstream['ip']}:5000: "
            "it refuses pushes and deletes")


def _cache_deploy(upstream: dict) -> Deploy:
    ca = paths.ca_cert_path(secrets_dir(), upstream["registry_name"])
    data = [f"registry_proxy_remote_url=https://{upstream['ip']}:5000",
            "registry_proxy_username=demo", f"registry_proxy_ca_file={ca}",
            f"registry_data_dir={CACHE_DIR}"]
    return deploy(*(arg for item in data for arg in ("--data", item)), limit="sb1",
                  env={"REGOPS_PROXY_PASSWORD": demo_password(upstream)})


def test_a_cache_serves_what_it_pulled_after_the_upstream_stops(hosts, tmp_path):
    cache, upstream = hosts["sb1"], hosts["sb2"]
    layout = tmp_path / "src"
    pushed = oci.image(layout, "1.0", [{"app/bin": os.urandom(300 * 1024)}])
    assert push(upstream, layout, "1.0", REPO).returncode == 0
    own = set(client(cache).catalog())

    result = _cache_deploy(upstream)
    assert result.returncode == 0, result.output[-6000:]
    assert demo_password(upstream) not in result.output
    th = ssh_host(cache)
    assert "remoteurl" in th.file("/etc/docker/registry/config.yml").content_string
    assert th.file("/etc/docker/registry/upstream-ca/ca.crt").exists

    first = pull(cache, REPO, "1.0", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    assert client(cache).digest(REPO, "1.0") == pushed.digest
    upstream_host = ssh_host(upstream)
    upstream_host.check_output("systemctl stop nginx")  # the upstream is gone
    try:
        again = pull(cache, REPO, "1.0", tmp_path / "again")
        assert again.returncode == 0, again.stderr
        assert_blobs_hash_to_their_digests(tmp_path / "again")
        assert client(cache).digest(REPO, "1.0") == pushed.digest
    finally:
        upstream_host.check_output("systemctl start nginx")

    other = tmp_path / "other"
    oci.image(other, "2.0", [{"f": os.urandom(1024)}])
    refused = push(cache, other, "2.0", REPO)
    assert refused.returncode != 0
    # The token service grants a cache's users pull only: a clear "denied".
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower(), (
        refused.stderr)

    _writes_are_refused_by_the_front_door(cache, upstream, other, pushed.digest)

    _a_client_docker_uses_the_cache_as_its_mirror(cache, upstream, layout, tmp_path)

    second = _cache_deploy(upstream)
    assert second.returncode == 0 and changed_ops(second.output) == 0, second.output[-6000:]
    back = deploy(limit="sb1")
    assert back.returncode == 0, back.output[-6000:]
    assert set(client(cache).catalog()) == own  # its own images, as they were


def _writes_are_refused_by_the_front_door(cache: dict, upstream: dict, layout: Path,
                                          digest: str) -> None:
    """A push to a name the upstream never had (where the registry itself answered
    skopeo with a 500) and raw writes: the front door's 403 with the OCI DENIED error,
    before the registry sees them."""
    refused = push(cache, layout, "2.0", "scx/cached/app")
    assert refused.returncode != 0
    assert "denied" in refused.stderr and _cache_message(upstream) in refused.stderr, (
        refused.stderr)
    assert "Internal Server Error" not in refused.stderr, refused.stderr
    context = ssl.create_default_context(cafile=cache["ca_path"])
    for method, path in (("PUT", f"{REPO}/manifests/2.0"),
                         ("DELETE", f"{REPO}/manifests/{digest}")):
        request = urllib.request.Request(f"{cache['registry_url']}/v2/{path}", method=method,
                                         data=b"{}" if method == "PUT" else None)
        try:
            urllib.request.urlopen(request, context=context, timeout=30)
            raise AssertionError(f"{method} {path} was not refused")
        except urllib.error.HTTPError as answer:
            assert answer.code == 403, (method, answer.code)
            assert answer.headers["Content-Type"] == "application/json", answer.headers
            assert json.loads(answer.read()) == {"errors": [{
                "code": "DENIED", "message": _cache_message(upstream),
                "detail": {"upstream": f"https://{upstream['ip']}:5000"}}]}
    assert client(cache).digest(REPO, "1.0") == digest  # the delete did nothing


HUB_NAMES = "registry-1.docker.io index.docker.io docker.io auth.docker.io"


def _a_client_docker_uses_the_cache_as_its_mirror(cache: dict, client_host: dict,
                                                  layout: Path, tmp_path: Path) -> None:
    """`regops trust --mirror` (this cache's upstream is a sandbox registry, not Docker
    Hub, so the flag says it): Docker on the trixie host pulls `public/mirrored`, a
    Docker Hub name, through the cache. Docker Hub's names resolve to loopback there
    for the test, so nothing can come from, or go to, Docker Hub itself."""
    repo = "public/mirrored"
    assert push(client_host, layout, "1.0", repo).returncode == 0  # on the upstream
    th = ssh_host(client_host)
    address = f"{cache['registry_name']}:{cache['registry_port']}"
    marker = "# regops-test-57"
    before = th.run("cat /etc/docker/daemon.json").stdout
    th.check_output(
        f"printf '%s\\n' {shlex.quote(cache['ip'] + ' ' + cache['registry_name'] + ' ' + marker)}"
        f" {shlex.quote('127.0.0.1 ' + HUB_NAMES + ' ' + marker)} >> /etc/hosts")
    try:
        inventory = tmp_path / "clients.py"
        data = {"ssh_hostname": client_host["ssh_host"], "ssh_port": client_host["ssh_port"],
                "ssh_user": client_host["ssh_user"], "ssh_key": client_host["ssh_key"],
                "ssh_known_hosts_file": "/dev/null", "ssh_strict_host_key_checking": "no"}
        inventory.write_text(f"clients = [({client_host['name']!r}, {data!r})]\n")
        result = regops("trust", "-i", "inventories/sandbox.py", "--registry", "sb1",
                        "--clients", str(inventory), "--mirror", "--json", check=False,
                        env={"REGOPS_SANDBOX": SANDBOX})
        doc = json.loads(result.stdout)
        assert doc["ok"] and doc["mirror"] == f"https://{address}", result.stdout + result.stderr
        after = json.loads(th.file("/etc/docker/daemon.json").content_string)
        assert after["registry-mirrors"] == [f"https://{address}"]
        assert {k: v for k, v in after.items() if k != "registry-mirrors"} == json.loads(before)
        assert repo not in client(cache).catalog()
        pulled = th.run(f"docker pull {repo}:1.0")
        assert pulled.rc == 0, pulled.stderr
        assert repo in client(cache).catalog()  # it came through the cache
        again = regops("trust", "-i", "inventories/sandbox.py", "--registry", "sb1",
                       "--clients", str(inventory), "--mirror", "--json", check=False,
                       env={"REGOPS_SANDBOX": SANDBOX})
        assert json.loads(again.stdout)["ok"]  # and the mirror is listed once
        assert json.loads(th.file("/etc/docker/daemon.json").content_string) == after
    finally:
        th.run(f"docker rmi {repo}:1.0; docker logout {address}")
        th.run(f"printf '%s' {shlex.quote(before)} > /etc/docker/daemon.json && "
               "systemctl reload docker")
        th.run(f"grep -vF {shlex.quote(marker)} /etc/hosts > /tmp/hosts.t57 && "
               "cat /tmp/hosts.t57 > /etc/hosts && rm -f /tmp/hosts.t57")
