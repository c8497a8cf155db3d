"""What every check module uses: what a check may look at (`Context`, `Options`) and the
registry that `@check` adds a check function and its metadata to, in the order the
modules are imported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from regops.compliance.facts import HostFacts
from regops.compliance.model import Check, Verdict
from regops.compliance.probes import Probes
from regops.config.settings import Settings

CIS = "CIS Docker 1.6.0"
SIDES = ("host", "operator")
ROLES = ("registry", "load_balancer", "storage")  # the values of `registry_role`


@dataclass(frozen=True)
class Options:
    cert_days: int = 30
    disk_free_percent: float = 10.0
    gc_max_age_days: float | None = None  # None: from the GC job's cron schedule


@dataclass
class Context:
    """Everything a check may look at for one host."""

    s: Settings
    facts: HostFacts
    probes: Probes
    options: Options


CheckFunction = Callable[[Context], Verdict]


class Registry:
    """Checks in the order they were registered. An id registered twice, or metadata left
    incomplete, is refused when the module that registers it is imported."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def check(self, *, id: str, title: str, rationale: str, reference: str,
              side: str = "host", roles: tuple[str, ...] = ("registry",),
              ) -> Callable[[CheckFunction], CheckFunction]:
        """Register the decorated function as check `id`; the function is returned as it is."""

        def register(run: CheckFunction) -> CheckFunction:
            if any(c.id == id for c in self.checks):
                raise ValueError(f"check {id!r} is registered twice")
            missing = [name for name, value in (("id", id), ("title", title),
                                                ("rationale", rationale),
                                                ("reference", reference)) if not value.strip()]
            if missing:
                raise ValueError(f"check {id!r} has no {', '.join(missing)}")
            if side not in SIDES:
                raise ValueError(f"check {id!r}: side {side!r} is not one of {SIDES}")
            if not roles or set(roles) - set(ROLES):
                raise ValueError(f"check {id!r}: roles {roles!r} are not among {ROLES}")
            self.checks.append(Check(id, title, rationale, reference, run, side=side,
                                     roles=roles))
            return run

        return register


REGISTRY = Registry()
CHECKS = REGISTRY.checks
check = REGISTRY.check
