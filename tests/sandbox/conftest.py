"""Real hosts: a Debian 12 and a Debian 13 sandbox host, deployed once per session.

Outside CI these tests skip when no Docker engine answers; with CI=true they
fail instead, so a green CI always means the deploy ran on real hosts.
Set REGOPS_KEEP_SANDBOX=1 to keep the hosts after the run for a look, and
REGOPS_REUSE_SANDBOX=1 to run again on them (tests that expect a registry never
pushed to then fail). The helpers the tests share are in `tests/support/sandbox.py`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.sandbox import (
    HOSTS,
    SANDBOX,
    Deploy,
    Pair,
    deploy,
    docker_ready,
    regops,
    require,
    ssh_host,
)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Pair]:
    """The shared pair (tests.support.sandbox.Pair): up on first read, down at the end."""
    require(docker_ready(), "a running Docker engine (scripts/setup starts one)")
    require(bool(shutil.which("skopeo")), "skopeo (scripts/setup installs it)")
    pair = Pair()
    yield pair
    if pair.started and os.environ.get("REGOPS_KEEP_SANDBOX") != "1":
        regops("sandbox", "down", "--name", SANDBOX, check=False)


@pytest.fixture(scope="session")
def first_deploy(sandbox: Pair) -> Deploy:
    sandbox.up()
    result = deploy()
    assert result.returncode == 0, result.output[-6000:]
    return result


@pytest.fixture(scope="session")
def hosts(sandbox: Pair, first_deploy: Deploy) -> dict[str, dict]:
    by_name = {h["name"]: h for h in sandbox["hosts"]}
    assert {n: by_name[n]["distro"] for n in HOSTS} == HOSTS
    return by_name


@pytest.fixture(params=list(HOSTS))
def host_info(request: pytest.FixtureRequest, hosts: dict[str, dict]) -> dict:
    return hosts[request.param]


@pytest.fixture
def th(host_info: dict) -> Any:
    return ssh_host(host_info)

