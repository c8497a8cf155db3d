"""Managed units: a running service (a container, or a systemd service) whose
declared state is its input files, brought to that state safely.

What a unit runs is compared with what the deploy declares, not remembered
from one run: the unit records a digest of its inputs when it (re)starts (the
registry container as a label, systemd services in a state file), and the
deploy applies whenever the unit is not running, runs other inputs, or an input
on disk differs. A deploy killed half-way is completed by the next one.

A changed input is first staged beside the live file (`PATH.new`). The unit's
control script on the host (`CONTROL apply DIGEST`) tests the staged files,
takes them into use and restarts, reloads or replaces the unit; when the new
state does not serve, it restores the previous files (and process) and fails.
A bad value never turns a serving unit into none, and the files on disk stay
the last good ones.

Every control script answers `CONTROL state` with `key=value` lines: `running`
(yes/no), `applied` (the digest it runs), optionally `mode` (anything but
`normal` is left over from an interrupted switch) and `busy` (a garbage
collection or another deploy holds the host's regops lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy.facts import NumericStat
from regops.deploy.operations import Secret, secret_file, upload
from regops.deploy.render import template


@dataclass(frozen=True)
class Input:
    """A file a unit loads: where, what, and who may read it."""

    path: str
    content: bytes = field(repr=False)
    mode: str = "0644"
    uid: int = 0
    gid: int = 0
    secret: bool = False
    # Written in place instead of staged: for files a staged config refers to by
    # their live path (the candidate must find them), and that may change first.
    staged: bool = True


@dataclass(frozen=True)
class Unit:
    name: str  # short, for the digest record: registry, frontdoor
    what: str  # for operation names: "the registry", "the front door"
    control: str  # the host-side control script
    inputs: tuple[Input, ...]

    @property
    def digest(self) -> str:
        """What the unit must run: every input's path and content."""
        h = hashlib.sha256()
        for i in self.inputs:
            h.update(i.path.encode() + b"\0" + hashlib.sha256(i.content).digest())
        return h.hexdigest()[:16]


class UnitState(FactBase):
    """`CONTROL state` as a dict; {"running": "missing"} before the unit is installed."""

    default = dict

    def command(self, control: str) -> str:
        return f"if [ -x {control} ]; then {control} state; else echo running=missing; fi"

    def process(self, output: list[str]) -> dict[str, str]:
        state = {}
        for line in output:
            key, sep, value = line.strip().partition("=")
            if sep:
                state[key] = value
        return state


def reason_to_apply(state: dict[str, str], digest: str) -> str | None:
    """Why the unit must be applied, in words for the operation name; None: it is as declared."""
    running = state.get("running", "missing")
    if running == "missing":
        return "it is not there yet"
    if running != "yes":
        return "it is not running"
    if state.get("applied") != digest:
        return "it runs other inputs than declared"
    if state.get("mode", "normal") != "normal":
        return f"it was left in mode {state['mode']}"
    return None


@operation()
def staged_file(src: Secret, path: str, uid: int = 0, gid: int = 0, mode: str = "0644"):
    """Stage `src` as `PATH.new` when `PATH` differs from it (the unit's control script
    takes it into use); a live file that is right only gets its owner and mode fixed."""
    content = src.reveal()
    wanted = hashlib.sha1(content).hexdigest()
    live = host.get_fact(NumericStat, path=path)
    staged = host.get_fact(NumericStat, path=f"{path}.new")
    if live and live["sha1"] == wanted:
        if staged:  # left from an interrupted change back to what is live now
            yield StringCommand("rm", "-f", f"{path}.new")
        if (live["uid"], live["gid"]) != (str(uid), str(gid)):
            yield StringCommand("chown", f"{uid}:{gid}", path)
        if int(live["mode"], 8) != int(mode, 8):
            yield StringCommand("chmod", mode, path)
        return
    if (
        staged
        and staged["sha1"] == wanted
        and (staged["uid"], staged["gid"]) == (str(uid), str(gid))
        and int(staged["mode"], 8) == int(mode, 8)
    ):
        return
    yield from upload(content, f"{path}.new")
    yield StringCommand("chown", f"{uid}:{gid}", f"{path}.new")
    yield StringCommand("chmod", mode, f"{path}.new")


def install_control(s: Settings, control: str, **context: Any) -> None:
    """The unit's control script (a template at its host path) and the library it uses."""
    for path in (hostpaths.SCRIPT_LIB, control):
        files.put(
            name=f"Install {path}",
            src=StringIO(template(path, s, **context)),
            dest=path,
            user="root",
            group="root",
            mode="0644" if path == hostpaths.SCRIPT_LIB else "0755",
        )


def ensure(unit: Unit, extra_triggers: Sequence[OperationMeta] = ()) -> OperationMeta:
    """Stage the unit's inputs, then apply it when it is not as declared."""
    staged = [
        (staged_file if i.staged else secret_file)(
            name=f"{'Stage' if i.staged else 'Write'} {i.path} for {unit.what}"
            + (" (a secret)" if i.secret else ""),
            src=Secret(i.content),
            path=i.path,
            uid=i.uid,
            gid=i.gid,
            mode=i.mode,
        )
        for i in unit.inputs
    ]
    state = host.get_fact(UnitState, control=unit.control) or {}
    if state.get("busy"):
        raise SystemExit(
            f"regops: error: {host.name}: {state['busy']} holds the regops lock; "
            "run the deploy again when it has finished"
        )
    why = reason_to_apply(state, unit.digest)
    triggers = [*staged, *extra_triggers]
    return server.shell(
        name=f"Apply {unit.what} ({why or 'staged inputs changed'})",
        commands=[f"{unit.control} apply {unit.digest}"],
        _if=lambda: why is not None or any(op.did_change() for op in triggers),
    )
