"""The deploy converges: idempotence, changes applied without a failed pull, and
whatever state a host is in (registry killed or removed, nginx stopped, config or
certificate written but not applied), a deploy brings it back and a second one
changes nothing. Bad values change nothing; a replacement that fails anyway
leaves the registry serving.

These run after the client and GC tests, on both hosts at once, and leave the
hosts as the first deploy made them.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from regops.config.settings import load
from regops.hostops.certs import served_certificate
from regops.registry.client import RegistryError
from regops.sandbox.hosts import inventory_hosts
from regops.sandbox.load import pull
from regops.sandbox.load import push as push_image
from regops.secrets import paths, pki
from tests.support.sandbox import (
    changed_ops,
    client,
    demo_password,
    deploy,
    secret_values,
    ssh_host,
)

pytestmark = pytest.mark.sandbox

REPO = "team/project/service"


def _state(hosts: dict) -> dict[str, tuple[str, str]]:
    out = {}
    for name, h in hosts.items():
        c = json.loads(ssh_host(h).check_output("docker inspect registry"))[0]
        out[name] = (c["Id"], c["State"]["StartedAt"])
    return out


def _settled(hosts: dict) -> None:
    """A second deploy finds nothing to do."""
    again = deploy()
    assert again.returncode == 0, again.output[-4000:]
    assert changed_ops(again.output) == 0, again.output[-6000:]


def _catalog_inside(th, h: dict, port: int) -> str:
    """The catalog as a client on the host sees it at `port`: a token from the token
    service behind that port's front door, then the registry through it."""
    name = h["registry_name"]
    curl = (f"curl -sf --cacert /etc/docker/certs.d/{name}:5000/ca.crt "
            f"--resolve {name}:{port}:127.0.0.1")
    token = json.loads(th.check_output(
        f"{curl} -u demo:{demo_password(h)} "
        f"'https://{name}:{port}/auth/token?service={name}&scope=registry:catalog:*'"))["token"]
    return th.check_output(
        f"{curl} -H 'Authorization: Bearer {token}' https://{name}:{port}/v2/_catalog")


@contextmanager
def pulling(hosts: dict) -> Iterator[list[str]]:
    """A pull of REPO:1.0 on every host in a loop while the block runs; yields the
    failures (bounded: one pull at a time per host)."""
    failures: list[str] = []
    stop = threading.Event()

    def loop(h: dict) -> None:
        c = client(h)
        while not stop.is_set():
            try:
                pull(c, REPO, "1.0")
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                failures.append(f"{h['name']} {time.strftime('%T')}: {error}")

    threads = [threading.Thread(target=loop, args=(h,), daemon=True) for h in hosts.values()]
    for thread in threads:
        thread.start()
    try:
        yield failures
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


@pytest.fixture(scope="module")
def settled(hosts):
    """The state after the first deploy and all tests before this module, with REPO:1.0
    there to pull (the client tests push it; pushed here when this module runs alone)."""
    for h in hosts.values():
        c = client(h)
        try:
            c.digest(REPO, "1.0")
        except RegistryError:
            push_image(c, REPO, "1.0", 512 * 1024)
    return _state(hosts)


def test_second_deploy_changes_nothing_and_restarts_nothing(hosts, settled):
    result = deploy("-v")
    assert result.returncode == 0, result.output[-4000:]
    assert changed_ops(result.output) == 0, result.output[-6000:]
    assert _state(hosts) == settled
    for value in secret_values(hosts):
        assert value not in result.output


def test_bad_data_stops_before_any_host_changes(hosts, settled):
    result = deploy("--data", "registry_gc_schedule=61 * * * *")
    assert result.returncode != 0
    errors = [line for line in result.output.splitlines() if line.startswith("regops: error:")]
    # One line per host with bad data (here: both), naming host, key and problem.
    assert sorted(e.split()[2] for e in errors) == [f"{name}:" for name in sorted(hosts)]
    assert all("registry_gc_schedule: '61 * * * *': minute field" in e for e in errors)
    assert "Starting operation" not in result.output
    assert _state(hosts) == settled


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("registry_memory_limit", "1k", "below the minimum of 6m"),
        ("registry_tls_ciphers", '["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-BOGUS"]',
         "unknown cipher 'ECDHE-BOGUS'"),
        ("registry_data_dir", "/var/lib/../../etc", "not a plain path"),
    ],
)
def test_values_docker_nginx_or_the_registry_would_refuse_are_refused_first(
    hosts, settled, key, value, problem
):
    result = deploy("--data", f"{key}={value}")
    assert result.returncode != 0
    errors = [line for line in result.output.splitlines() if line.startswith("regops: error:")]
    assert errors and all(f"{key}: " in e and problem in e for e in errors), errors
    assert "Starting operation" not in result.output
    assert _state(hosts) == settled


def test_a_replacement_that_fails_anyway_leaves_the_registry_serving(hosts, settled):
    """6m passes the checks (Docker's minimum) but the registry runs out of memory: the
    candidate never serves, so the old registry is never touched."""
    with pulling(hosts) as failures:
        result = deploy("--data", "registry_memory_limit=6m")
    assert result.returncode != 0
    assert "the old one serves on" in result.output and "out of memory" in result.output
    assert failures == []
    assert _state(hosts) == settled
    for h in hosts.values():
        th = ssh_host(h)
        assert "--memory 512m" in th.file("/etc/docker/registry/registry.spec").content_string
        assert not th.file("/etc/docker/registry/registry.spec.new").exists
        assert REPO in client(h).catalog()
    _settled(hosts)


def test_config_change_replaces_the_registry_without_a_failed_pull(hosts, settled):
    with pulling(hosts) as failures:
        result = deploy("--data", "registry_log_level=debug")
    assert result.returncode == 0, result.output[-4000:]
    assert failures == []
    now = _state(hosts)
    for name, h in hosts.items():
        assert now[name][0] != settled[name][0]  # a new container, with the new config
        th = ssh_host(h)
        assert "level: debug" in th.file("/etc/docker/registry/config.yml").content_string
        assert th.run("docker container inspect registry-standby").rc != 0
        assert th.file("/etc/nginx/regops/registry-mode.conf").linked_to.endswith("-normal.conf")


def test_port_change_moves_only_the_front_door_and_data_survives(hosts, settled):
    before = _state(hosts)
    result = deploy("--data", "registry_log_level=debug", "--data", "registry_port=5001")
    assert result.returncode == 0, result.output[-4000:]
    assert _state(hosts) == before  # the registry itself did not change
    for h in hosts.values():
        th = ssh_host(h)
        assert REPO in _catalog_inside(th, h, 5001)
        assert th.socket("tcp://0.0.0.0:5001").is_listening
        assert not th.socket("tcp://0.0.0.0:5000").is_listening


def test_back_to_the_defaults_keeps_the_data(hosts, settled):
    result = deploy()
    assert result.returncode == 0, result.output[-4000:]
    for h in hosts.values():
        c = client(h)
        assert REPO in c.catalog() and "1.0" in c.tags(REPO)
        assert "level: info" in ssh_host(h).file("/etc/docker/registry/config.yml").content_string
    _settled(hosts)


# --- whatever state the host is in, the deploy brings it back ------------------------------


@pytest.mark.parametrize(
    ("breakage", "what"),
    [
        ("docker kill registry", "a killed registry"),
        ("docker rm -f registry", "a removed registry container"),
        ("systemctl stop nginx", "a stopped front door"),
        ("ln -sfn registry-gc.conf /etc/nginx/regops/registry-mode.conf && "
         "systemctl reload nginx", "a front door left read-only by an interrupted GC"),
        ("sed -i 's/level: info/level: debug/' /etc/docker/registry/config.yml",
         "a config written but not applied"),
    ],
)
def test_the_deploy_brings_back(hosts, breakage, what):
    for h in hosts.values():
        ssh_host(h).check_output(breakage)
    result = deploy()
    assert result.returncode == 0, f"{what}: {result.output[-4000:]}"
    for h in hosts.values():
        th = ssh_host(h)
        c = client(h)
        assert REPO in c.catalog(), what
        pull(c, REPO, "1.0")
        running = th.check_output("docker inspect -f '{{.State.Running}}' registry")
        assert running == "true", what
        assert "level: info" in th.file("/etc/docker/registry/config.yml").content_string
        assert th.file("/etc/nginx/regops/registry-mode.conf").linked_to.endswith("-normal.conf")
        # The registry runs what the deploy declares, recorded when it started.
        label = th.check_output(
            "docker inspect -f '{{index .Config.Labels \"regops.applied\"}}' registry")
        assert label == dict(
            line.split("=", 1)
            for line in th.check_output("/usr/local/sbin/regops-registry state").splitlines()
        )["applied"]
    _settled(hosts)


def test_a_certificate_written_but_not_loaded_is_loaded(hosts, sandbox):
    """A renewed certificate reached the disk but nginx never reloaded (a deploy killed
    between the two): the next deploy makes nginx serve it."""
    for name, data in inventory_hosts(sandbox):
        h = hosts[name]
        s = load(name, data)
        old = served_certificate(h["registry_url"], h["registry_name"])
        renewed = pki.renew_server_cert(paths.pki_dir(s.secrets_root, s.registry_name),
                                        s.tls_names, days=s["registry_tls_days"])
        th = ssh_host(h)
        for content, path in ((renewed.cert_pem, "server.crt"), (renewed.key_pem, "server.key")):
            encoded = base64.b64encode(content).decode()
            th.check_output(f"echo {encoded} | base64 -d > /etc/nginx/regops/tls/{path}")
        still = served_certificate(h["registry_url"], h["registry_name"])
        assert pki.serial_hex(still) == pki.serial_hex(old)  # written, not loaded
    result = deploy()
    assert result.returncode == 0, result.output[-4000:]
    for name, data in inventory_hosts(sandbox):
        h = hosts[name]
        s = load(name, data)
        served = served_certificate(h["registry_url"], h["registry_name"])
        on_disk = pki.load_leaf((paths.pki_dir(s.secrets_root, s.registry_name)
                                 / pki.SERVER_CERT).read_bytes())
        assert pki.serial_hex(served) == pki.serial_hex(on_disk)
        client(h).catalog()  # verified TLS with the registry's CA
    _settled(hosts)

