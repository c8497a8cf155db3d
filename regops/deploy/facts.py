"""pyinfra facts pyinfra lacks: each a class with its docstring, `command()` and
`process()`, as pyinfra's own facts are.

- `DockerImagePresent` tells whether an image must be loaded or pulled,
  `S3BucketPresent` whether a storage host still needs its bucket;
  `NumericStat` compares files by content and numeric owner.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any, cast

from pyinfra.api import FactBase

from regops import hostpaths


class DockerImagePresent(FactBase):
    """Whether the host's Docker has an image; False when Docker is not installed yet."""

    default = bool

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "docker"

    def command(self, image: str) -> str:
        return f"docker image inspect {image} >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return "yes" in output


class S3BucketPresent(FactBase):
    """Whether SeaweedFS (master at `master`) has the bucket; False while it is not up."""

    default = bool

    def command(self, bucket: str, master: str) -> str:
        return (f"printf 's3.bucket.list\\n' | {hostpaths.WEED_BINARY} shell -master={master} "
                f"2>/dev/null | grep -qw -- {bucket} && echo yes || echo no")

    def process(self, output: list[str]) -> bool:
        return "yes" in output


class NumericStat(FactBase):
    """`uid gid mode sha1` of a file, numeric so a gid without a name compares stably."""

    def command(self, path: str) -> str:
        return (
            f"if [ -f {path} ]; then stat -c '%u %g %a' {path} | tr '\\n' ' '; "
            f"sha1sum {path} | cut -d' ' -f1; fi"
        )

    def process(self, output: list[str]) -> dict[str, str] | None:
        fields = " ".join(output).split()
        if len(fields) != 4:
            return None
        return dict(zip(("uid", "gid", "mode", "sha1"), fields, strict=True))


class Account(FactBase):
    """A system account as `getent` sees it: its passwd fields, its primary group's name,
    and whether its group exists; cheap where pyinfra's `Users` fact runs `lastlog` and
    `groups` for every account on the host (about half a second)."""

    default = dict

    def command(self, account: str) -> str:
        return (
            f"getent passwd {account} | sed 's/^/passwd=/'; "
            f"id -gn {account} 2>/dev/null | sed 's/^/group=/'; "
            f"getent group {account} >/dev/null && echo group_present=yes; true"
        )

    def process(self, output: list[str]) -> dict[str, str]:
        account: dict[str, str] = {}
        for line in output:
            key, _, value = line.partition("=")
            if key == "passwd":
                fields = value.split(":")
                if len(fields) == 7:
                    account.update(zip(("uid", "gid", "home", "shell"),
                                       (fields[2], fields[3], fields[5], fields[6]), strict=True))
            elif key in ("group", "group_present"):
                account[key] = value
        return account


# One round trip for many facts
#
# pyinfra runs every fact as its own command, and over SSH each costs a round
# trip (a new channel, a shell on the host): about 70 ms here, so a deploy that
# changes nothing spent 10 of its 11 s reading 154 facts one at a time. A host's
# `Snapshot` reads them all in one command instead, with the same commands,
# run side by side on the host, and serves each fact pyinfra's operations ask for
# from it, until a command that may change the host runs: then it reads again
# (once, the next time a fact is asked for). Which facts a deploy needs comes
# from running the operations' own code up to their first command, as pyinfra
# does without `--yes`. A fact the snapshot could not read (a failed command,
# a missing binary) is read the usual way, so pyinfra reports it as it would.

_PREPARE_READS: list[tuple[Any, dict[str, Any]]] = []


def expect_at_prepare(cls: Any, **kwargs: Any) -> None:
    """Declare a fact the deploy reads while it prepares its operations (to name them, or
    to choose them): the first of those read reads all declared, in one batch."""
    if (cls, kwargs) not in _PREPARE_READS:
        _PREPARE_READS.append((cls, kwargs))


class _Unknown(Exception):
    """Raised into an operation being probed: it needs a fact not read yet."""


class Snapshot:
    """The facts of one host, read together, valid until the host may have changed."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.values: dict[tuple, Any] = {}  # valid since the last change
        self.wanted: dict[tuple, tuple] = {}  # key: (cls, fact_kwargs, connector_kwargs)
        self.live: set[tuple] = set()  # read one at a time: the batch could not
        self.probed = False
        self.probing = False
        self.reading = 0  # > 0 while a fact's own command runs
        self.batches = 0
        self.served: set[tuple] = set()  # asked for while executing
        self._keys: dict[tuple, tuple[tuple, tuple]] = {}
        self._get_fact = host.get_fact
        self._run = host.run_shell_command
        self._put = host.put_file

    # Hooks on the host object
    def get_fact(self, cls: Any, *args: Any, **kwargs: Any) -> Any:
        from pyinfra.api.facts import ShortFactBase
        from pyinfra.api.state import StateStage

        if (not (isinstance(cls, type) and issubclass(cls, FactBase))
                or issubclass(cls, ShortFactBase)
                or cls().shell_executable
                or cls.check_preconditions is not FactBase.check_preconditions):
            return self._read_live(cls, args, kwargs)
        key, request = self._key(cls, args, kwargs)
        if key in self.values:
            if not self.probing and self.host.state.current_stage == StateStage.Execute:
                self.served.add(key)
            return copy.deepcopy(self.values[key])
        if self.probing:
            if key not in self.live:
                self.wanted[key] = request
            raise _Unknown
        if self.host.state.current_stage == StateStage.Execute and key not in self.live:
            if not self.probed:
                self._probe()
            elif key in self.wanted and key not in self.served:
                # The host changed since the last read: read what is still to be asked.
                self._read([k for k in self.wanted if k not in self.served])
            if key in self.values:
                self.served.add(key)
                return copy.deepcopy(self.values[key])
        if self.host.state.current_stage < StateStage.Execute and key not in self.live:
            # Nothing runs on the host while preparing: read every declared fact now.
            self.wanted[key] = request
            for other_cls, other_kwargs in _PREPARE_READS:
                other, other_request = self._key(other_cls, (), other_kwargs)
                if other not in self.values and other not in self.live:
                    self.wanted[other] = other_request
            self._read([k for k in self.wanted if k not in self.values and k not in self.live])
            if key in self.values:
                return copy.deepcopy(self.values[key])
        value = self._read_live(cls, args, kwargs)
        if key not in self.live:
            self.values[key] = copy.deepcopy(value)
        return value

    def run_shell_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self.reading:
            self.values.clear()
        return self._run(*args, **kwargs)

    def put_file(self, *args: Any, **kwargs: Any) -> Any:
        self.values.clear()
        return self._put(*args, **kwargs)

    # Reading
    def _key(self, cls: Any, args: Any, kwargs: Any) -> tuple[tuple, tuple]:
        """The fact's arguments and the connector's (sudo and the like), as pyinfra
        derives them; remembered per operation, as deriving them costs a millisecond."""
        from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
        from pyinfra.api.facts import _handle_fact_kwargs

        op_arguments = self.host.current_op_global_arguments
        memo = None
        if op_arguments is not None:
            memo = (id(op_arguments), cls, repr(args), repr(sorted(kwargs.items())))
            if memo in self._keys:
                return self._keys[memo]
        fact_kwargs, global_kwargs = _handle_fact_kwargs(self.host.state, self.host, cls,
                                                         list(args), dict(kwargs))
        fact_kwargs.pop("self", None)  # getcallargs names it, as in pyinfra's _make_command
        connector = {k: v for k, v in global_kwargs.items() if k in CONNECTOR_ARGUMENT_KEYS}
        key = (cls, repr(sorted(fact_kwargs.items())), repr(sorted(connector.items())))
        if memo is not None:
            self._keys[memo] = (key, (cls, fact_kwargs, connector))
        return key, (cls, fact_kwargs, connector)

    def _read_live(self, cls: Any, args: Any, kwargs: Any) -> Any:
        self.reading += 1
        try:
            return self._get_fact(cls, *args, **kwargs)
        finally:
            self.reading -= 1

    def _probe(self) -> None:
        """Run every operation not run yet up to its first command (or first fact not
        read yet), read what they asked for in one batch, and again for the facts
        those answers lead to (a file's hash once it exists), a few rounds at most."""
        host, state = self.host, self.host.state
        saved = (host.in_op, host.current_op_hash, host.current_op_global_arguments,
                 host.current_op_deploy_data)
        self.probed = self.probing = True
        pending = [
            data for op_hash in state.get_op_order()
            if (data := state.ops[host].get(op_hash)) and not data.operation_meta.is_complete()
        ]
        try:
            for _ in range(4):
                self.wanted = {k: v for k, v in self.wanted.items() if k not in self.values}
                waiting = []
                for data in pending:
                    try:
                        next(iter(data.command_generator()), None)
                    except _Unknown:
                        waiting.append(data)
                    except Exception:  # noqa: BLE001, S112  # it fails for real when it runs
                        continue
                pending = waiting
                asked = [k for k in self.wanted if k not in self.values and k not in self.live]
                if not asked:
                    break
                self.probing = False
                try:
                    self._read(asked)
                finally:
                    self.probing = True
        finally:
            self.probing = False
            (host.in_op, host.current_op_hash, host.current_op_global_arguments,
             host.current_op_deploy_data) = saved

    def _read(self, keys: list[tuple]) -> None:
        """Read the facts of `keys` in one command per set of connector arguments."""
        from pyinfra.api.command import StringCommand

        groups: dict[str, list[tuple]] = {}
        for key in keys:
            groups.setdefault(key[2], []).append(key)
        for group in groups.values():
            marker = f"@@regops-fact-{secrets.token_hex(6)}"
            commands, facts = [], []
            for key in group:
                cls, fact_kwargs, _ = self.wanted[key]
                fact = cls()
                command = _command(fact.command, dict(fact_kwargs))
                requires = _command(fact.requires_command, dict(fact_kwargs))
                if requires:
                    command = (f"if command -v {requires} >/dev/null 2>&1; then ( {command} ); "
                               "else exit 127; fi")
                commands.append(command)
                facts.append((key, fact))
            script = _batch_script(marker, commands)
            connector = self.wanted[group[0]][2]
            self.reading += 1
            try:
                status, output = self._run(
                    StringCommand(script), print_output=self.host.state.print_fact_output,
                    print_input=self.host.state.print_fact_input, **connector,
                )
            finally:
                self.reading -= 1
            self.batches += 1
            if not status:
                self.live.update(group)
                continue
            for (key, fact), (rc, lines) in zip(facts, _split(marker, output.stdout_lines),
                                                strict=False):
                if rc != 0:
                    self.live.add(key)
                    continue
                try:
                    self.values[key] = fact.process(lines) if lines else fact.default()
                except Exception:  # noqa: BLE001  # read the usual way, to be reported so
                    self.live.add(key)


def _command(attribute: Any, fact_kwargs: dict[str, Any]) -> str:
    value = attribute(**fact_kwargs) if callable(attribute) else attribute
    if value is None:
        return ""
    return value.get_raw_value() if hasattr(value, "get_raw_value") else str(value)


def _batch_script(marker: str, commands: list[str]) -> str:
    """Every command in the background into its own file, then each file after a line
    `MARKER RC`; `echo` ends an unterminated last line (and adds one when there is none)."""
    lines = ['d=$(mktemp -d) || exit 1']
    for i, command in enumerate(commands):
        lines.append(f'( ( {command}\n) >"$d/{i}" 2>/dev/null; echo $? >"$d/{i}.rc" ) &')
    lines.append("wait")
    lines.append(f'i=0; while [ $i -lt {len(commands)} ]; do '
                 f'echo "{marker} $(cat "$d/$i.rc")"; cat "$d/$i"; echo; i=$((i+1)); done')
    lines.append('rm -rf "$d"')
    return "\n".join(lines)


def _split(marker: str, lines: list[str]) -> list[tuple[int, list[str]]]:
    parts: list[tuple[int, list[str]]] = []
    for line in lines:
        if line.startswith(marker + " "):
            rc = line[len(marker) + 1:].strip()
            parts.append((int(rc) if rc.isdigit() else -1, []))
        elif parts:
            parts[-1][1].append(line)
    for _, part in parts:
        if part and part[-1] == "":  # the `echo` after each output
            part.pop()
    return parts


def serve_from_snapshot() -> None:
    """Read this host's facts in batches (see `Snapshot`) from here on; over SSH only,
    where a round trip costs (the @fake connector answers commands one by one)."""
    from pyinfra import host
    from pyinfra.connectors.ssh import SSHConnector

    target: Any = cast(Any, host)._get_module()  # the Host object, not the proxy
    if getattr(target, "regops_snapshot", None) or not isinstance(target.connector,
                                                                    SSHConnector):
        return
    snapshot = Snapshot(target)
    target.regops_snapshot = snapshot
    target.get_fact = snapshot.get_fact
    target.run_shell_command = snapshot.run_shell_command
    target.put_file = snapshot.put_file
