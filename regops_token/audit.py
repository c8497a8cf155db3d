"""The audit log: one JSON line per decision and per push or delete, kept bounded.

The service appends to `audit.log` and rotates it itself (`audit.log.1` is the
newest old file, `audit.log.KEEP` the oldest), so a host needs no logrotate and a
busy registry cannot fill its disk with audit lines.

Read on the host by `regops audit` (run as `python3 -m regops_token.audit`):
the filtering happens where the log is, so only the matching lines cross SSH.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regops_token.guard import clip, clip_list
from regops_token.rules import compile_pattern

MAX_BYTES = 16 * 1024 * 1024
KEEP = 4


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bounded(value: Any) -> Any:
    """A field as the log keeps it: strings and lists cut to the limits (`guard`), so no
    request writes more than a few KiB, however long the names it sent."""
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, (list, tuple)):
        return clip_list([str(item) for item in value])
    return value


class Audit:
    """Appends one JSON line per event (flushed at once); rotates past `max_bytes`.
    Every field is bounded first: flooding the log takes many requests, not a few."""

    def __init__(self, path: str, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._lock = threading.Lock()
        # Called with every record written (the web pages' push history listens).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"time": _now(), "event": event,
                  **{key: bounded(value) for key, value in fields.items()}}
        line = json.dumps(record, sort_keys=True)
        for listener in self.listeners:
            listener(record)
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
                size = out.tell()
            if size > self.max_bytes:
                rotate(self.path, self.keep)


def rotate(path: str, keep: int) -> None:
    """audit.log -> audit.log.1 -> ... -> audit.log.KEEP (the oldest goes)."""
    for n in range(keep - 1, 0, -1):
        older = f"{path}.{n}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{n + 1}")
    os.replace(path, f"{path}.1")


def files(path: str, keep: int = KEEP) -> list[Path]:
    """The log's files that exist, oldest first."""
    names = [Path(f"{path}.{n}") for n in range(keep, 0, -1)] + [Path(path)]
    return [p for p in names if p.exists()]


def records(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a full disk says nothing reliable
                if isinstance(record, dict):
                    yield record


def names_in(record: dict[str, Any]) -> set[str]:
    """`user:alice` is alice; the registry's push events name the actor bare."""
    subject = str(record.get("subject") or "")
    return {subject, subject.partition(":")[2] or subject}


def repositories_in(record: dict[str, Any]) -> list[str]:
    if record.get("repository"):
        return [str(record["repository"])]
    scopes = [*record.get("requested", []), *record.get("granted", [])]
    return [s.split(":")[1] for s in scopes if s.startswith("repository:") and s.count(":") >= 2]


def matches(record: dict[str, Any], who: str | None = None, repository: str | None = None,
            events: Sequence[str] = (), since: str | None = None) -> bool:
    """`repository` is a glob of the access rules (`*` within a segment, `**` across)."""
    if events and record.get("event") not in events:
        return False
    if since and str(record.get("time", "")) < since:  # ISO UTC times sort as text
        return False
    if who and who not in names_in(record):
        return False
    if repository:
        pattern = compile_pattern(repository)
        if pattern is None or not any(pattern.match(r) for r in repositories_in(record)):
            return False
    return True


def select(path: str, last: int, **criteria: Any) -> list[dict[str, Any]]:
    """The last `last` matching records, oldest first."""
    kept: deque[dict[str, Any]] = deque(maxlen=last)
    for record in records(files(path)):
        if matches(record, **criteria):
            kept.append(record)
    return list(kept)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m regops_token.audit",
                                     description="Matching audit lines, oldest first.")
    parser.add_argument("--log", default="/var/log/regops-token/audit.log")
    parser.add_argument("--who")
    parser.add_argument("--repository")
    parser.add_argument("--event", action="append", default=[])
    parser.add_argument("--since", help="ISO UTC time, e.g. 2026-11-27T10:00:00Z")
    parser.add_argument("--last", type=int, default=100)
    args = parser.parse_args(argv)
    if not os.path.exists(args.log):
        print(f"no audit log at {args.log} (is registry_auth token?)", file=sys.stderr)
        return 3
    found = select(args.log, args.last, who=args.who, repository=args.repository,
                   events=args.event, since=args.since)
    for record in found:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
