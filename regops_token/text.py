"""How numbers and names read: shared by the web pages and the `regops` commands, so
both print a size and order tags the same way."""

from __future__ import annotations

import re


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


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that orders `v1.10` after `v1.9`."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text))
