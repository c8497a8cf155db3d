"""Small helpers every part of regops shares: sizes, tables, times, parallel work."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_FRACTION = re.compile(r"\.(\d+)")


def human_bytes(n: int | None) -> str:
    """Decimal units, as `du -h --si` and registries' UIs print them; None is '-'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def table(rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, the first row a header; None prints as '-'."""
    text = [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(text[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in text
    )


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that orders `v1.10` after `v1.9`."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text))


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 / ISO 8601 (`...Z`, nanoseconds as Go writes them); None if absent or bad."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = _FRACTION.sub(lambda m: "." + m[1][:6].ljust(6, "0"), value.strip(), count=1)
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def parallel(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int = 8,
    tick: Callable[[], None] | None = None,
) -> list[R | Exception]:
    """`fn` over `items` on up to `workers` threads (hosts and registries are slow, not
    busy); results in item order, an exception in place of a result that raised."""
    results: list[R | Exception] = [Exception("not run")] * len(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = {pool.submit(fn, item): n for n, item in enumerate(items)}
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except Exception as error:  # each caller reports per item
                results[futures[future]] = error
            if tick is not None:
                tick()
    return results


def parallel_all(fn: Callable[[T], R], items: Sequence[T], workers: int = 8) -> list[R]:
    """`parallel` for work that handles its own failures: the first exception propagates."""
    results = parallel(fn, items, workers)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results  # type: ignore[return-value]
