"""systemd units that run `regops check` periodically on an ops host.

`regops check ... --write-units DIR` renders templates/etc/systemd/system/
regops-check.{service,timer}.j2 with the very command line it was given
(minus the unit options), so what the timer runs is what the operator tried.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import jinja2

from regops.deploy.render import TEMPLATES

UNIT_DIR = "etc/systemd/system"
NAMES = ("regops-check.service", "regops-check.timer")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def exec_quote(args: Sequence[str]) -> str:
    """A command line systemd parses back into `args` (% and $ are special to it)."""
    return " ".join(shlex.quote(a).replace("%", "%%").replace("$", "$$") for a in args)


def render(check_args: Sequence[str], inventory: str, workdir: str, user: str,
           calendar: str = "hourly", prometheus: str | None = None,
           python: str | None = None, timeout: str = "15min") -> dict[str, str]:
    """Unit name -> text, for running `regops check <check_args>` from `workdir`."""
    command = [python or sys.executable, "-m", "regops.cli", "check", *check_args]
    context = {
        "inventory": inventory, "workdir": workdir, "user": user, "calendar": calendar,
        "prometheus": prometheus, "exec_start": exec_quote(command), "timeout": timeout,
    }
    return {name: _env.get_template(f"{UNIT_DIR}/{name}.j2").render(context) for name in NAMES}


def write(units: dict[str, str], directory: str | os.PathLike[str]) -> list[Path]:
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = target / name
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)
    return written
