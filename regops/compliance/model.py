"""Result states, check metadata and how results add up to an exit code.

Four states, so a report never blurs "not compliant" with "could not look":

- pass: the host meets the rule.
- fail: it does not.
- limitation: it does not, for a reason regops documents and cannot fix in
  the registry itself (shown as "FAIL (known limitation)" with its remedy).
- error: the check could not run (host unreachable, nothing deployed, ...).

Exit code: 0 when every selected check passes, 1 otherwise. A known
limitation counts as a failure unless the run accepts limitations
(`--accept-limitations`): the check still runs and is still shown, and any
problem beyond the documented one is still a plain failure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    LIMITATION = "limitation"
    ERROR = "error"

    @property
    def label(self) -> str:
        return {"pass": "PASS", "fail": "FAIL", "limitation": "FAIL (known limitation)",
                "error": "ERROR"}[self.value]


class Unavailable(Exception):
    """Raised inside a check when what it needs cannot be read: the result is `error`."""


@dataclass(frozen=True)
class Verdict:
    """What a check function returns: a state and one line saying why."""

    status: Status
    detail: str
    remedy: str = ""


def ok(detail: str) -> Verdict:
    return Verdict(Status.PASS, detail)


def fail(detail: str, remedy: str = "") -> Verdict:
    return Verdict(Status.FAIL, detail, remedy)


def limitation(detail: str, remedy: str) -> Verdict:
    return Verdict(Status.LIMITATION, detail, remedy)


@dataclass(frozen=True)
class Check:
    """One row of the check table: stable id, what it checks, why, and where the rule is from."""

    id: str
    title: str
    rationale: str
    reference: str
    run: Callable[[Any], Verdict] = field(repr=False, compare=False)
    side: str = "host"  # host: read over SSH; operator: probed from this machine
    roles: tuple[str, ...] = ("registry",)  # the `registry_role`s it applies to


@dataclass(frozen=True)
class Result:
    host: str
    check_id: str
    title: str
    reference: str
    status: Status
    detail: str
    remedy: str = ""

    def counts_as_failure(self, accept_limitations: bool) -> bool:
        if self.status is Status.PASS:
            return False
        return not (self.status is Status.LIMITATION and accept_limitations)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.check_id, "title": self.title, "reference": self.reference,
                "status": self.status.value, "detail": self.detail, "remedy": self.remedy}


@dataclass
class HostReport:
    host: str
    target: str  # how the registry was reached, for the table's heading
    results: list[Result] = field(default_factory=list)


@dataclass
class Run:
    """All hosts' results and the policy that turns them into an exit code."""

    hosts: list[HostReport]
    accept_limitations: bool = False
    started: float = 0.0

    def results(self) -> Iterable[Result]:
        for report in self.hosts:
            yield from report.results

    def failures(self) -> list[Result]:
        return [r for r in self.results() if r.counts_as_failure(self.accept_limitations)]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures() else 0

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for r in self.results():
            counts[r.status.value] += 1
        return counts


def split_ids(values: Sequence[str]) -> list[str]:
    """`--only a,b --only c` -> [a, b, c]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def select(checks: Sequence[Check], only: Sequence[str], skip: Sequence[str]) -> list[Check]:
    """The checks to run, in table order. Patterns are ids or globs (`container.*`);
    one that matches nothing is an error, so a typo never silently checks less."""
    ids = [c.id for c in checks]
    for pattern in [*only, *skip]:
        if not fnmatch.filter(ids, pattern):
            raise ValueError(f"no check matches {pattern!r} (see `regops check --list`)")

    def matches(check: Check, patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(check.id, p) for p in patterns)

    chosen = [c for c in checks if not only or matches(c, only)]
    return [c for c in chosen if not matches(c, skip)]
