"""Real hosts: a Debian 12 and a Debian 13 sandbox host, deployed once per session.

Outside CI these tests skip when no Docker engine answers; with CI=true they
fail instead, so a green CI always means the deploy ran on real hosts.
Set REGOPS_KEEP_SANDBOX=1 to keep the hosts after the run for a look, and
REGOPS_REUSE_SANDBOX=1 to run again on them (tests that expect a registry never
pushed to then fail). The helpers the tests share are in `tests/support/sandbox.py`.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest

from tests.support.sandbox import (
    HOSTS,
    SANDBOX,
    Deploy,
    deploy,
    docker_ready,
    regops,
    require,
    ssh_host,
)


@pytest.fixture(scope="session")
def sandbox() -> Any:
    require(docker_ready(), "a running Docker engine (scripts/setup starts one)")
    require(bool(shutil.which("skopeo")), "skopeo (scripts/setup installs it)")
    distros = [arg for distro in HOSTS.values() for arg in ("--distro", distro)]
    if os.environ.get("REGOPS_REUSE_SANDBOX") != "1":
        # Fresh hosts: the tests start from a registry that was never pushed to.
        regops("sandbox", "down", "--name", SANDBOX, check=False)
    regops("sandbox", "up", "--name", SANDBOX, "--hosts", str(len(HOSTS)), *distros)
    status = json.loads(regops("sandbox", "status", "--name", SANDBOX, "--json").stdout)
    yield status
    if os.environ.get("REGOPS_KEEP_SANDBOX") != "1":
        regops("sandbox", "down", "--name", SANDBOX, check=False)


@pytest.fixture(scope="session")
def first_deploy(sandbox: Any) -> Deploy:
    result = deploy()
    assert result.returncode == 0, result.output[-6000:]
    return result


@pytest.fixture(scope="session")
def hosts(sandbox: Any, first_deploy: Deploy) -> dict[str, dict]:
    by_name = {h["name"]: h for h in sandbox["hosts"]}
    assert {n: by_name[n]["distro"] for n in HOSTS} == HOSTS
    return by_name


@pytest.fixture(params=list(HOSTS))
def host_info(request: pytest.FixtureRequest, hosts: dict[str, dict]) -> dict:
    return hosts[request.param]


@pytest.fixture
def th(host_info: dict) -> Any:
    return ssh_host(host_info)

