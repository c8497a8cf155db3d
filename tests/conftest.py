"""Settings for every test run, whatever the layer, and how a parallel run splits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# pyinfra's @fake connector sleeps 0.5-0.9 s per command to look like a real host;
# the plan tests (tests/unit) run hundreds of commands on it and want none of that.
os.environ.setdefault("PYINFRA_FAKE_DELAY", "0")
os.environ.setdefault("PYINFRA_FAKE_DELAY_JITTER", "0")

# With pytest-xdist's `--dist loadgroup` (scripts/test), each sandbox test module that
# makes hosts of its own is one group, run beside the others in whichever worker is
# free; every other sandbox module shares the sb1/sb2 pair, so together they are one
# group, run in one worker in file order. The no-host tests go one by one to any worker.
OWN_SANDBOX = {
    "test_56_ha.py": "ha",
    "test_95_fresh_machine.py": "fresh-machine",
    "test_45_migration.py": "migration",
    "test_80_sudo.py": "sudo",
    "test_58_ldap.py": "ldap",
    "test_90_vagrant.py": "vagrant",
    "test_sandbox_hosts.py": "sandbox-cli",
}
PAIR = "pair"
# Longest first, measured (CONTRIBUTING.md, "Where the time goes"); the no-host tests
# come right after the two longest groups, so that what a worker takes beside the pair
# while it starts is a short test, not a group that would wait for the pair to end.
ORDER = [PAIR, "ha", None, "fresh-machine", "migration", "ldap", "sudo", "vagrant",
         "sandbox-cli"]


def group(item: pytest.Item) -> str | None:
    path = Path(str(item.path))
    if path.parent.name != "sandbox":
        return None
    return OWN_SANDBOX.get(path.name, PAIR)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Set in xdist's workers (which collect; its controller does not) under loadgroup.
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        name = group(item)
        if name is not None:
            item.add_marker(pytest.mark.xdist_group(name))
    items.sort(key=lambda item: ORDER.index(group(item)))  # stable: file order within
