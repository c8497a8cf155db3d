"""What every `regops` command shares: its options, JSON output, progress bars and
the one way it fails (`regops: error: ...` and the documented exit status)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click

from regops.registry.prune import Progress, Tick

F = Callable[..., Any]


def fail(message: str, code: int = 1) -> NoReturn:
    """One `regops: error:` line on stderr (further lines indented), then exit `code`."""
    first, _, rest = message.partition("\n")
    click.echo(f"regops: error: {first}", err=True)
    for line in rest.splitlines():
        click.echo(f"  {line}", err=True)
    sys.exit(code)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def inventory_option(fn: F) -> F:
    return click.option(
        "-i",
        "--inventory",
        envvar="REGOPS_INVENTORY",
        required=True,
        metavar="PATH",
        help="pyinfra inventory of the registry hosts [env REGOPS_INVENTORY].",
    )(fn)


def limit_option(fn: F) -> F:
    return click.option(
        "--limit", multiple=True, metavar="NAME", help="Only this inventory host (repeatable)."
    )(fn)


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts)."
    )(fn)


def workers_option(fn: F) -> F:
    return click.option(
        "--workers",
        type=click.IntRange(1, 64),
        default=8,
        show_default=True,
        help="Concurrent API requests.",
    )(fn)


def progress_bars(show: bool) -> Progress:
    """Progress bars on stderr (so JSON on stdout stays clean), or none."""

    @contextlib.contextmanager
    def bar(label: str, length: int) -> Iterator[Tick]:
        if not show or length == 0:
            yield lambda: None
            return
        with click.progressbar(length=length, label=label, file=sys.stderr) as shown:
            yield lambda: shown.update(1)

    return bar
