"""Reaching inventory hosts from the operator's machine: their settings, commands
over SSH (read-only, through testinfra) and deploy files run with pyinfra.

Several reads of one host go out as one command of named sections (`script`),
so each host costs one SSH round trip and every reader sees the same moment.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from regops.config.settings import ConfigError, Settings
from regops.errors import RegopsError, UsageError
from regops.inventory import InventoryHost, load_inventory

PYINFRA_TIMEOUT = 1800
SCRIPT_TIMEOUT = 180  # seconds for one sectioned command: a hung host must not hang us
SECTION_MARK = "@@regops-section"
RC_MARK = "@@regops-rc"


def q(value: str) -> str:
    return shlex.quote(value)


# --------------------------------------------------------------------------- settings


def load_hosts(inventory: str, limit: Sequence[str] = (),
               roles: tuple[str, ...] | None = ("registry",)) -> list[InventoryHost]:
    """The inventory's hosts (of `roles`), narrowed by --limit; unknown names are a
    usage error."""
    try:
        hosts = load_inventory(inventory, roles=roles)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    except Exception as error:  # an inventory is code; say which file broke and how
        raise UsageError(f"{inventory}: cannot load the inventory: {error}") from None
    if not hosts:
        what = "registry hosts" if roles == ("registry",) else "hosts"
        raise UsageError(f"{inventory}: no {what} in the inventory")
    if limit:
        unknown = sorted(set(limit) - {h.name for h in hosts})
        if unknown:
            raise UsageError(f"{inventory}: no host named {', '.join(unknown)}")
        hosts = [h for h in hosts if h.name in limit]
    return hosts


def load_settings(hosts: Sequence[InventoryHost]) -> list[tuple[InventoryHost, Settings]]:
    """Checked settings of every host before anything runs (bad data: exit 2)."""
    return [(h, h.settings()) for h in hosts]


def checked(hosts: Sequence[InventoryHost]) -> list[tuple[InventoryHost, dict[str, Any]]]:
    """Checked data without touching secrets (for commands that only read them)."""
    return [(h, h.checked_data()) for h in hosts]


def summarize(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The result document of a per-host command: ok only when every host is."""
    return {"ok": all(e.get("ok") for e in entries), "hosts": list(entries)}


# --------------------------------------------------------------------------- ssh


def ssh_problem(error: Exception) -> str:
    """testinfra raises RuntimeError(CommandResult) when ssh itself fails (exit 255):
    the last line ssh printed says why."""
    arg = error.args[0] if error.args else error
    detail = getattr(arg, "stderr", None) or str(arg)
    lines = [line.strip() for line in str(detail).strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "exit 255"


def run_remote(h: InventoryHost, command: str) -> tuple[int, str, str]:
    """(rc, stdout, stderr) of a shell command on the host as root (sudo if configured)."""
    try:
        result = h.testinfra().run(command)
    except RuntimeError as error:
        raise RegopsError(f"ssh failed: {ssh_problem(error)}") from None
    return result.rc, result.stdout, result.stderr


def script(sections: Mapping[str, str], timeout: int = SCRIPT_TIMEOUT) -> str:
    """One shell command running each section, each followed by its exit status; the
    whole is bounded, so a host where something hangs still gives its other sections."""
    parts = [
        f"echo '{SECTION_MARK} {name}'; ( {command} ) 2>&1; rc=$?; echo; "
        f'echo "{RC_MARK} {name} $rc"'
        for name, command in sections.items()
    ]
    return f"timeout {timeout} sh -c {q('; '.join(parts))}"


def parse(output: str) -> dict[str, tuple[int, str]]:
    """Section name -> (exit status, output) from what `script` printed."""
    found: dict[str, tuple[int, str]] = {}
    name: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(f"{SECTION_MARK} "):
            name, lines = line.split(" ", 1)[1].strip(), []
        elif line.startswith(f"{RC_MARK} ") and name is not None:
            fields = line.split()
            rc = int(fields[-1]) if fields[-1].lstrip("-").isdigit() else 1
            text = "\n".join(lines)
            found[name] = (rc, text[:-1] if text.endswith("\n") else text)
            name = None
        elif name is not None:
            lines.append(line)
    return found


def texts(output: str) -> dict[str, str]:
    """Section name -> its output (stripped), whatever its exit status."""
    return {name: text.strip() for name, (_, text) in parse(output).items()}


# --------------------------------------------------------------------------- pyinfra


def run_pyinfra(
    inventory: str,
    deploy_file: Path,
    hosts: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run a deploy file on `hosts`, from this directory (so relative secrets and
    group_data paths mean what they meant to this command); returns (rc, output)."""
    argv = [sys.executable, "-m", "pyinfra", "-y", str(Path(inventory).resolve()), str(deploy_file)]
    for name in hosts:
        argv += ["--limit", name]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=PYINFRA_TIMEOUT,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return 124, f"pyinfra did not finish within {PYINFRA_TIMEOUT}s"
    return result.returncode, result.stdout + result.stderr


def pyinfra_tail(output: str, lines: int = 15) -> str:
    """The end of pyinfra's output, for a failure message (it carries no secrets)."""
    kept = [line for line in output.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
