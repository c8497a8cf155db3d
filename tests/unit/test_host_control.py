"""The control scripts' shared pieces in regops_host.control: the lock (shared with
flock(1), which common.sh takes), running, and the order of the read-only switch."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from regops import hostpaths
from regops.config.settings import load
from regops.deploy import render
from regops_host.control import Lock, Result, Switch, lock_holder, running
from tests.support.require import require_command


class Calls:
    """A fake runner: records every command, answers from `answers` (first word match)."""

    def __init__(self, running: dict[str, bool] | None = None, fail: set[str] = frozenset()):
        self.calls: list[tuple[str, ...]] = []
        self.running = running or {}
        self.fail = fail

    def __call__(self, argv: Sequence[str]) -> Result:
        call = tuple(argv)
        self.calls.append(call)
        if call[:2] == ("docker", "inspect"):
            return Result(0, "true\n" if self.running.get(call[-1]) else "false\n")
        return Result(1 if " ".join(call[1:]) in self.fail else 0)


def test_the_lock_is_the_one_flock_takes(tmp_path):
    require_command("flock", "util-linux")
    path = str(tmp_path / "regops.lock")
    assert lock_holder(path) is None
    lock = Lock(path)
    assert lock.take(0, "garbage collection")
    assert "garbage collection (since " in (lock_holder(path) or "")
    assert subprocess.run(["flock", "-n", path, "true"]).returncode == 1
    assert not Lock(path).take(0, "a change of the registry")
    lock.release()
    assert lock_holder(path) is None
    assert subprocess.run(["flock", "-n", path, "true"]).returncode == 0


def test_the_lock_waits_then_gives_up(tmp_path):
    path = str(tmp_path / "regops.lock")
    held = subprocess.Popen(["flock", path, "sleep", "30"], start_new_session=True)
    try:
        now = [0.0]
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            now[0] += seconds

        # flock(1) has it; ours waits (in steps) for the time allowed, then says no.
        for _ in range(50):
            if lock_holder(path) is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert not Lock(path, clock=lambda: now[0], sleep=sleep).take(3, "gc")
        assert sum(waits) >= 3
    finally:
        os.killpg(held.pid, signal.SIGKILL)  # flock and the sleep that holds the lock
        held.wait()


def test_running_asks_docker_for_the_container_state():
    calls = Calls(running={"registry": True})
    assert running(calls, "registry") and not running(calls, "registry-standby")
    assert calls.calls[0] == ("docker", "inspect", "--type", "container", "-f",
                              "{{.State.Running}}", "registry")


def _switch(calls: Calls) -> Switch:
    return Switch(calls, lambda _: None, "regops-registry", "regops-frontdoor", "registry")


def test_read_only_standby_serves_before_clients_move_and_the_registry_stops_last():
    calls = Calls(running={"registry": True})
    assert _switch(calls).to_readonly() is None
    assert calls.calls == [("regops-registry", "standby-start", "config-readonly.yml"),
                           ("regops-frontdoor", "mode", "gc"),
                           ("regops-registry", "stop")]


def test_back_to_writable_the_registry_first_the_standby_last():
    calls = Calls(running={"registry": False})
    assert _switch(calls).to_writable()
    assert [c for c in calls.calls if c[0] != "docker"] == [
        ("regops-registry", "start"), ("regops-frontdoor", "mode", "normal"),
        ("regops-registry", "standby-stop")]


def test_a_failed_step_stops_the_switch_and_says_which():
    calls = Calls(running={"registry": True}, fail={"mode gc"})
    assert _switch(calls).to_readonly() == "the front door did not switch to read-only"
    assert ("regops-registry", "stop") not in calls.calls
    calls = Calls(running={"registry": True}, fail={"mode normal"})
    assert not _switch(calls).to_writable()
    assert calls.calls[-1] == ("regops-registry", "standby-stop")  # the standby goes anyway


def _shell_lock_holder(lib: Path, lock: str) -> str:
    """common.sh's lock_holder, rendered and run in bash against `lock`."""
    done = subprocess.run(["bash", "-c", f'. "{lib}"; REGOPS_LOCK="{lock}"; lock_holder'],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_probes_side_by_side_never_see_each_other_as_the_holder(base_data, tmp_path):
    """The deploy reads every control script's `state` at once: one `lock_holder` must not
    take another's probe for a job holding the lock (the deploy would stop as busy)."""
    require_command("flock", "util-linux")
    lib = tmp_path / "common.sh"
    lib.write_text(render.template(hostpaths.SCRIPT_LIB, load("reg1", base_data, environ={})))
    path = str(tmp_path / "regops.lock")
    (tmp_path / "regops.lock.owner").write_text("a change of the registry (since then)\n")
    probe = subprocess.Popen(["flock", "-s", path, "sleep", "5"],  # a probe, held long
                             start_new_session=True)
    try:
        for _ in range(50):
            if subprocess.run(["flock", "-n", path, "true"]).returncode == 1:
                break
            subprocess.run(["sleep", "0.1"])
        assert lock_holder(path) is None
        assert _shell_lock_holder(lib, path) == ""
    finally:
        os.killpg(probe.pid, signal.SIGKILL)
        probe.wait()
    # flock's child (the sleep) holds the lock too, and dies a moment after flock is reaped.
    for _ in range(100):
        if subprocess.run(["flock", "-n", path, "true"]).returncode == 0:
            break
        subprocess.run(["sleep", "0.05"])
    held = Lock(path)
    assert held.take(0, "garbage collection")
    assert _shell_lock_holder(lib, path).startswith("garbage collection (since ")
    held.release()
