"""What the host's control scripts and jobs share: the host's regops lock, whether a
container runs, and the switch of clients to the read-only standby and back.

Every command goes through a `Runner`, so the order of what is run can be tested
without a host (the tests inject one that records the calls).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import syslog
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Result:
    """A finished command: its exit status and its output (stderr merged in)."""

    returncode: int
    stdout: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


Runner = Callable[[Sequence[str]], Result]


def run(argv: Sequence[str]) -> Result:
    """The real runner. A missing program is exit 127, as a shell says."""
    try:
        done = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", check=False)
    except OSError as error:
        return Result(127, f"{argv[0]}: {error}")
    return Result(done.returncode, done.stdout)


def emit(line: str, out: TextIO | None = None) -> None:
    """A line on stdout (or `out`); nothing when it is closed. A `regops gc` whose ssh
    session died leaves the job's stdout a broken pipe, and the job must still switch
    the registry back to writable, not die of its own log line."""
    # ValueError: stdout already closed
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        print(line, file=out or sys.stdout, flush=True)


def utc_now(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


class Log:
    """One line per event, on stdout (the job's log file) and in syslog under `tag`,
    in the format of common.sh's `log`."""

    def __init__(self, tag: str, out: TextIO | None = None, to_syslog: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.tag = tag
        self.out = out
        self.to_syslog = to_syslog
        self.clock = clock

    def __call__(self, message: str) -> None:
        emit(f"{utc_now(self.clock)} {self.tag}: {message}", self.out)
        if self.to_syslog:
            try:
                syslog.openlog(self.tag)
                syslog.syslog(syslog.LOG_INFO, message)
            except OSError:
                pass


class Lock:
    """The host's regops lock (flock(2) on one file, as common.sh's `take_lock` takes
    it with flock(1)), so GC and changes to the registry or the front door never
    overlap. The owner file says who holds it, for the deploy's messages."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = path
        self.clock = clock
        self.sleep = sleep
        self.fd: int | None = None

    def take(self, wait: float, who: str) -> bool:
        """Hold it until `release` or this process ends; False after `wait` seconds."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        deadline = self.clock() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self.clock() >= deadline:
                    os.close(fd)
                    return False
                self.sleep(0.5)
        self.fd = fd
        with open(f"{self.path}.owner", "w") as owner:
            owner.write(f"{who} (since {utc_now()}, pid {os.getpid()})\n")
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None


def lock_holder(path: str) -> str | None:
    """Who holds the lock (for messages), or None when it is free. Asked with a shared
    lock, as common.sh asks, so probes side by side never see each other as a holder."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        try:
            with open(f"{path}.owner") as owner:
                return owner.read().strip() or "another regops job"
        except OSError:
            return "another regops job"
    finally:
        os.close(fd)


def running(run: Runner, container: str) -> bool:
    """The container exists and runs (what regops-registry's `running` asks)."""
    answer = run(["docker", "inspect", "--type", "container", "-f", "{{.State.Running}}",
                  container])
    return answer.ok and answer.stdout.strip() == "true"


@dataclass
class Switch:
    """Clients moved between the registry and its read-only standby, in the order that
    costs no failed pull: the standby serves before the front door sends pulls to it
    (and answers writes with 503), and the registry stops only then; back, the
    registry serves before clients return, and the standby stops last."""

    run: Runner
    log: Callable[[str], None]
    registry: str  # the registry's control script
    frontdoor: str  # the front door's
    primary: str  # the registry's container

    def _call(self, *argv: str) -> bool:
        answer = self.run(argv)
        for line in answer.stdout.splitlines():  # the control scripts' own log lines
            if line.strip():
                emit(line)
        return answer.ok

    def to_readonly(self) -> str | None:
        """Read-only with the registry stopped; None, or what failed."""
        if not self._call(self.registry, "standby-start", "config-readonly.yml"):
            return "the read-only standby did not start"
        if not self._call(self.frontdoor, "mode", "gc"):
            return "the front door did not switch to read-only"
        if not self._call(self.registry, "stop"):
            return f"could not stop {self.primary}"
        return None

    def to_writable(self) -> bool:
        """The registry serving and clients back on it; False if a step failed."""
        ok = True
        if not running(self.run, self.primary):
            ok = self._call(self.registry, "start") and ok
        ok = self._call(self.frontdoor, "mode", "normal") and ok
        self._call(self.registry, "standby-stop")
        return ok
