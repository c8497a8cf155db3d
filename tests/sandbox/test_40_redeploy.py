"""Idempotence, restart on config change, recreate on spec change, data kept.

These run after the client and GC tests, on both hosts at once, and leave the
hosts as the first deploy made them.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.sandbox.conftest import client, demo_password, deploy, secret_values, ssh_host

pytestmark = pytest.mark.sandbox

REPO = "team/project/service"


def _state(hosts: dict) -> dict[str, tuple[str, str]]:
    out = {}
    for name, h in hosts.items():
        c = json.loads(ssh_host(h).check_output("docker inspect registry"))[0]
        out[name] = (c["Id"], c["State"]["StartedAt"])
    return out


def _changed_ops(output: str) -> int:
    match = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert match, output[-3000:]
    return 0 if match[2] == "-" else int(match[2])


def _catalog_inside(th, h: dict, port: int) -> str:
    name = h["registry_name"]
    return th.check_output(
        f"curl -sf --cacert /etc/docker/registry/tls/ca.crt --resolve {name}:{port}:127.0.0.1 "
        f"-u demo:{demo_password(h)} https://{name}:{port}/v2/_catalog"
    )


@pytest.fixture(scope="module")
def settled(hosts):
    """The state after the first deploy and all tests before this module."""
    return _state(hosts)


def test_second_deploy_changes_nothing_and_restarts_nothing(hosts, settled):
    result = deploy("-v")
    assert result.returncode == 0, result.output[-4000:]
    assert _changed_ops(result.output) == 0, result.output[-6000:]
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


def test_config_change_restarts_without_recreating(hosts, settled):
    result = deploy("--data", "registry_log_level=debug")
    assert result.returncode == 0, result.output[-4000:]
    now = _state(hosts)
    for name in hosts:
        assert now[name][0] == settled[name][0]  # same container
        assert now[name][1] != settled[name][1]  # started again
        th = ssh_host(hosts[name])
        assert "level: debug" in th.file("/etc/docker/registry/config.yml").content_string


def test_port_change_recreates_and_data_survives(hosts, settled):
    result = deploy("--data", "registry_port=5001")
    assert result.returncode == 0, result.output[-4000:]
    now = _state(hosts)
    for name, h in hosts.items():
        assert now[name][0] != settled[name][0]
        th = ssh_host(h)
        assert REPO in _catalog_inside(th, h, 5001)
        ports = json.loads(th.check_output("docker inspect registry"))[0]["HostConfig"][
            "PortBindings"
        ]
        assert ports == {"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "5001"}]}


def test_back_to_the_defaults_keeps_the_data(hosts, settled):
    result = deploy()
    assert result.returncode == 0, result.output[-4000:]
    for h in hosts.values():
        c = client(h)
        assert REPO in c.catalog() and "1.0" in c.tags(REPO)
        assert "level: info" in ssh_host(h).file("/etc/docker/registry/config.yml").content_string
    again = deploy()
    assert _changed_ops(again.output) == 0, again.output[-6000:]
