"""Settings for every test run, whatever the layer, and how a parallel run splits."""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any

import pytest

# pyinfra's @fake connector sleeps 0.5-0.9 s per command to look like a real host;
# the plan tests (tests/unit) run hundreds of commands on it and want none of that.
os.environ.setdefault("PYINFRA_FAKE_DELAY", "0")
os.environ.setdefault("PYINFRA_FAKE_DELAY_JITTER", "0")

# With pytest-xdist's `--dist loadfile` (scripts/test), each test file goes whole to one
# worker, except that the sandbox files sharing the sb1/sb2 pair go together, in file
# order, to one worker: they are one unit of work. Each sandbox file that makes hosts of
# its own is a unit run beside the others in whichever worker is free.
OWN_SANDBOX = {
    "test_56_ha.py": "ha",
    "test_58_identity.py": "identity",
    "test_95_fresh_machine.py": "fresh-machine",
    "test_45_migration.py": "migration",
    "test_80_sudo.py": "sudo",
    "test_90_vagrant.py": "vagrant",
    "test_sandbox_hosts.py": "sandbox-cli",
}
PAIR = "pair"
# Longest first, measured (CONTRIBUTING.md, "Where the time goes"). The no-host files
# (None) come right after the two longest units: a worker takes two units at its start,
# and the second one waits for the first, so behind the pair and the HA hosts go short
# no-host files, not a unit that would then wait for the pair to end.
ORDER = [PAIR, "ha", None, "fresh-machine", "identity", "migration", "sudo", "vagrant",
         "sandbox-cli"]


def unit_of_work(nodeid: str) -> str:
    """The scope xdist hands to one worker: a group name, or the test's file."""
    path = PurePosixPath(nodeid.split("::", 1)[0])
    if path.parent.name != "sandbox":
        return str(path)
    return OWN_SANDBOX.get(path.name, PAIR)


def _rank(item: pytest.Item) -> int:
    unit = unit_of_work(item.nodeid)
    return ORDER.index(unit if unit in ORDER else None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Units(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    return Units(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the order its units are handed out
        items.sort(key=_rank)  # stable: file order within a unit and among the no-host files
