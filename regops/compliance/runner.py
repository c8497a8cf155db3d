"""Run the selected checks on every host of an inventory, read-only.

Per host: its data is checked without touching secrets (no password is
resolved or generated), one SSH command reads the host, and the operator's
machine probes the API URL. Whatever fails on the way becomes results of
that host (error or fail), never an exception out of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from regops.compliance import facts as facts_mod
from regops.compliance.checks import Context, Options
from regops.compliance.model import Check, HostReport, Result, Run, Status, Unavailable
from regops.compliance.probes import Probes, Target
from regops.config.settings import ConfigError, Settings, check_replicas
from regops.inventory import InventoryHost

INVENTORY_CHECK = "inventory"


def settings_without_secrets(h: InventoryHost) -> Settings:
    """The host's settings, and for a load balancer or storage host the other hosts of
    its name (which parts a storage host runs depends on them)."""
    s = h.settings_without_secrets()
    if s.role != "registry" and h.peers is not None:
        s = replace(s, peers=check_replicas(h.name, h.data, h.peers))
    return s


def run_check(check: Check, context: Context) -> Result:
    try:
        verdict = check.run(context)
        status, detail, remedy = verdict.status, verdict.detail, verdict.remedy
    except Unavailable as why:
        status, detail, remedy = Status.ERROR, f"cannot check: {why}", ""
    except Exception as error:  # noqa: BLE001 - one broken check must not hide the others
        status, detail, remedy = Status.ERROR, f"check crashed: {type(error).__name__}: {error}", ""
    return Result(context.s.host, check.id, check.title, check.reference, status,
                  " ".join(detail.split()), remedy)


def check_host(h: InventoryHost, checks: Sequence[Check], options: Options,
               connect: Callable[[InventoryHost], Any] | None = None) -> HostReport:
    try:
        s = settings_without_secrets(h)
        target = (f"via {Target.of(s)}" if s.role == "registry"
                  else f"its {s.role.replace('_', ' ')}")
    except (ConfigError, ValueError) as error:
        report = HostReport(h.name, "-")
        report.results.append(Result(h.name, INVENTORY_CHECK, "The host's inventory data is valid",
                                     "regops", Status.ERROR, f"cannot check: {error}"))
        return report
    checks = [c for c in checks if s.role in c.roles]
    needs_host = any(c.side == "host" for c in checks)
    if needs_host:
        try:
            host = (connect or InventoryHost.testinfra)(h)
            snapshot = facts_mod.collect(host.run, s)
        except Exception as error:  # noqa: BLE001 - e.g. testinfra missing or a bad ssh spec
            snapshot = facts_mod.HostFacts(unreachable=f"cannot reach the host over SSH: {error}")
    else:
        snapshot = facts_mod.HostFacts(unreachable="not read (only operator-side checks chosen)")
    context = Context(s, snapshot, Probes(s), options)
    report = HostReport(h.name, f"{s.registry_name} {target}")
    report.results.extend(run_check(check, context) for check in checks)
    return report


def run(hosts: Sequence[InventoryHost], checks: Sequence[Check], options: Options,
        accept_limitations: bool = False,
        connect: Callable[[InventoryHost], Any] | None = None) -> Run:
    started = time.time()
    reports = [check_host(h, checks, options, connect) for h in hosts]
    return Run(reports, accept_limitations=accept_limitations, started=started)
