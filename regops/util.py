"""Small helpers every part of regops shares: sizes, tables, times, parallel work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import Any, TypeVar

from regops_token.manifests import parse_time  # noqa: F401 - shared with the token service
from regops_token.text import human_bytes, natural_key  # noqa: F401 - shared likewise

T = TypeVar("T")
R = TypeVar("R")



def table(rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, the first row a header; None prints as '-'."""
    text = [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(text[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in text
    )


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


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
