"""`regops-gc`: garbage collection of the registry's storage that costs no failed pull.

GC while the registry accepts pushes deletes layers of images being pushed, and the
registry's blob cache still claims collected blobs afterwards. So, holding the
host's regops lock:

1. a dry run: with nothing to collect, nothing else happens;
2. a read-only standby registry starts on the same storage, and the front door sends
   pulls to it and answers pushes and deletes with 503 + Retry-After (docker push
   retries); it returns once every download in flight is done;
3. the registry stops, so nothing can write; a dry run sizes each blob, the
   collection runs, then the unfinished uploads untouched for the allowed age go;
4. the registry starts again (an empty blob cache), the front door sends everything
   back to it, and the standby stops.

The record (`state_file`, JSON) counts what was deleted, blob by blob. Interrupted
(SIGTERM, SIGINT), the job switches back to writable before it exits. On storage
other replicas share, one host alone never collects: `hold` and `collect` are the
halves of the cluster GC `regops gc` runs.

    python3 -m regops_host.gc --config /etc/regops/gc.json [hold|collect]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from regops_host.control import (
    Lock,
    Log,
    Result,
    Runner,
    Switch,
    emit,
    run,
    running,
    utc_now,
)

ELIGIBLE = re.compile(r"\b(blob|manifest) eligible for deletion: sha256:([0-9a-f]{64})")
DELETING = re.compile(r"Deleting blob: \S*?/sha256/[0-9a-f]{2}/([0-9a-f]{64})")
HOLD_LIMIT = 3600  # a held replica is writable again after an hour, whatever happens


@dataclass(frozen=True)
class Config:
    """The host's constants, rendered by the deploy into a JSON file."""

    primary: str  # the registry's container; the standby is PRIMARY-standby
    config_in_container: str  # the registry's config.yml, as the container sees it
    storage: str  # the filesystem driver's v2 directory on the host
    state_file: str
    registry_control: str
    frontdoor_control: str
    lock: str
    delete_untagged: bool = False
    upload_max_age_minutes: int = 60
    lock_wait: int = 3600
    shared: bool = False  # storage other replicas share (registry_storage: s3)

    @property
    def standby(self) -> str:
        return f"{self.primary}-standby"

    @classmethod
    def load(cls, path: str) -> Config:
        with open(path) as f:
            return cls(**json.load(f))


def eligible(output: str) -> list[tuple[str, str]]:
    """(kind, hex digest) of what a dry run would delete: blobs and manifests."""
    return ELIGIBLE.findall(output)


def eligible_blobs(output: str) -> list[str]:
    return [digest for kind, digest in eligible(output) if kind == "blob"]


def deleted_blobs(output: str) -> list[str]:
    """Hex digests of the blobs a collection deleted (its info log, text or JSON)."""
    return DELETING.findall(output)


def blob_size(storage: str, digest: str) -> int:
    try:
        return os.stat(f"{storage}/blobs/sha256/{digest[:2]}/{digest}/data").st_size
    except OSError:
        return 0


def _stats(path: Path) -> list[os.stat_result]:
    """lstat of a tree's every entry, itself included (entries that vanish skipped)."""
    stats: list[os.stat_result] = []
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                stats.append(os.lstat(os.path.join(root, name)))
    with contextlib.suppress(OSError):
        stats.append(os.lstat(path))
    return stats


def tree_bytes(path: Path) -> int:
    """Apparent size of a directory tree (what `du -sb` counts)."""
    return sum(st.st_size for st in _stats(path))


def _newest_change(path: Path) -> float:
    return max((st.st_mtime for st in _stats(path)), default=0.0)


def abandoned_uploads(storage: str, max_age_minutes: int, now: float) -> list[Path]:
    """Unfinished uploads nothing in which changed for the allowed age."""
    repositories = Path(storage) / "repositories"
    found: list[Path] = []
    for root, dirs, _ in os.walk(repositories):
        if "_uploads" in dirs:
            dirs.remove("_uploads")  # its uploads are looked at here, not walked into
            for upload in sorted((Path(root) / "_uploads").iterdir()):
                try:
                    if upload.is_dir() and not upload.is_symlink() \
                            and now - _newest_change(upload) >= max_age_minutes * 60:
                        found.append(upload)
                except OSError:
                    pass
    return found


@dataclass
class Record:
    """What one run deleted; `document` is gc-last.json (`regops gc`, `regops status`
    and `regops check` read these fields)."""

    started: float
    blobs_deleted: int = 0
    blob_bytes: int = 0
    uploads_deleted: int = 0
    upload_bytes: int = 0
    readonly_seconds: int = 0

    def document(self, result: str, exit_code: int, message: str, now: float) -> dict[str, Any]:
        return {
            "time": utc_now(lambda: now),
            "result": result,
            "exit_code": exit_code,
            "bytes_freed": self.blob_bytes + self.upload_bytes,
            "blobs_deleted": self.blobs_deleted,
            "blob_bytes_freed": self.blob_bytes,
            "uploads_deleted": self.uploads_deleted,
            "upload_bytes_freed": self.upload_bytes,
            "readonly_seconds": self.readonly_seconds,
            "duration_seconds": int(now - self.started),
            "message": message,
        }


def write_record(path: str, document: dict[str, Any]) -> None:
    """Replace the record whole (a reader never sees half of one)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.tmp", "w") as f:
        f.write(json.dumps(document) + "\n")
    os.replace(f"{path}.tmp", path)


class Interrupted(BaseException):
    """SIGTERM or SIGINT: the job switches back to writable and ends."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Failed(Exception):
    """The run failed after its record was written; `code` is the exit status."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Job:
    """One run of the GC job, every command through `run` (injected in tests)."""

    config: Config
    run: Runner = run
    log: Callable[[str], None] = field(default_factory=lambda: Log("regops-gc"))
    clock: Callable[[], float] = time.time
    say: Callable[[str], None] = field(default=emit)
    phase: str = "writable"
    readonly_since: float = 0.0
    record: Record = field(init=False)

    def __post_init__(self) -> None:
        self.record = Record(started=self.clock())
        self.switch = Switch(self.run, self.log, self.config.registry_control,
                             self.config.frontdoor_control, self.config.primary)

    # -- pieces

    def garbage_collect(self, container: str, dry_run: bool = False) -> Result:
        argv = ["docker", "exec", container, "registry", "garbage-collect"]
        if self.config.delete_untagged:
            argv.append("--delete-untagged")
        if dry_run:
            argv.append("--dry-run")
        return self.run([*argv, self.config.config_in_container])

    def write(self, result: str, exit_code: int, message: str) -> None:
        write_record(self.config.state_file,
                     self.record.document(result, exit_code, message, self.clock()))

    def to_readonly(self) -> None:
        self.phase = "readonly"
        self.readonly_since = self.clock()
        problem = self.switch.to_readonly()
        if problem:
            self.fail(problem)

    def back_to_writable(self) -> bool:
        if self.phase == "writable":
            return True
        ok = self.switch.to_writable()
        self.record.readonly_seconds = int(self.clock() - self.readonly_since)
        self.phase = "writable"
        return ok

    def fail(self, message: str) -> None:
        self.log(f"FAILED: {message}")
        self.back_to_writable()
        self.write("failed", 1, message)
        raise Failed(1)

    def lock(self, who: str) -> Lock | None:
        lock = Lock(self.config.lock)
        return lock if lock.take(self.config.lock_wait, who) else None

    # -- the three ways to run

    def collect_here(self) -> int:
        """The whole GC of this host's own storage."""
        c = self.config
        lock = self.lock("garbage collection")
        if lock is None:  # not a failed collection: the last run's record stays
            self.log(f"another regops job has held {c.lock} for an hour; not collecting now")
            return 1
        try:
            return self._collect_here()
        finally:
            lock.release()

    def _collect_here(self) -> int:
        c = self.config
        if not running(self.run, c.primary):
            self.write("failed", 1, f"container {c.primary} is not running")
            self.log(f"FAILED: container {c.primary} is not running")
            return 1
        if not os.path.isdir(f"{c.storage}/repositories"):
            self.log("nothing to collect: the registry was never pushed to")
            self.write("ok", 0, "never pushed to")
            return 0

        # 1. Anything to do? A dry run only reads; one that fails says nothing (pushes in
        # progress can trip the registry's walk): the collection itself runs read-only.
        dry = self.garbage_collect(c.primary, dry_run=True)
        stale = abandoned_uploads(c.storage, c.upload_max_age_minutes, self.clock())
        if not dry.ok:
            last = dry.stdout.strip().splitlines()[-1:] or [""]
            self.log(f"the dry run failed while the registry was writable ({last[0]}); "
                     "collecting read-only")
        elif not eligible(dry.stdout) and not stale:
            self.log("ok: nothing to collect")
            self.write("ok", 0, "nothing to collect")
            return 0

        # 2. Read-only: pulls go to the standby, pushes wait. 3. Nothing writes: collect.
        self.to_readonly()
        sizes = {digest: blob_size(c.storage, digest)
                 for digest in eligible_blobs(self.garbage_collect(c.standby, True).stdout)}
        output = self.garbage_collect(c.standby)
        r = self.record
        for digest in deleted_blobs(output.stdout):
            r.blobs_deleted += 1
            r.blob_bytes += sizes.get(digest, 0)
        if output.ok:
            for upload in abandoned_uploads(c.storage, c.upload_max_age_minutes, self.clock()):
                size = tree_bytes(upload)
                if _remove_tree(upload):
                    r.uploads_deleted += 1
                    r.upload_bytes += size

        # 4. Writable again.
        if not self.back_to_writable():
            self.fail("the registry did not come back to normal")
        if not output.ok:
            self.log(" ".join(output.stdout.strip().splitlines()[-5:]))
            self.fail(f"garbage-collect exited {output.returncode}")
        message = (f"{r.blobs_deleted} blobs ({r.blob_bytes} bytes) and {r.uploads_deleted} "
                   f"unfinished uploads ({r.upload_bytes} bytes) deleted")
        self.log(f"ok: {message}, read-only for {r.readonly_seconds}s")
        self.write("ok", 0, message)
        return 0

    def hold(self, wait_for_release: Callable[[float], bool]) -> int:
        """Cluster GC, on every replica: read-only, READY, then writable again when the
        operator says so, their session ends, or after an hour."""
        lock = self.lock("cluster garbage collection")
        if lock is None:
            self.say("FAILED lock")
            return 1
        try:
            if not running(self.run, self.config.primary):
                self.say(f"FAILED container {self.config.primary} is not running")
                return 1
            self.to_readonly()
            self.log("read-only for a cluster GC")
            self.say("READY")
            if not wait_for_release(HOLD_LIMIT):
                self.log("the operator's session ended or an hour passed: writable again")
            if not self.back_to_writable():
                self.say("FAILED the registry did not come back to normal")
                return 1
            self.log(f"writable again after {self.record.readonly_seconds}s read-only "
                     "(cluster GC)")
            self.say(f"HELD {self.record.readonly_seconds}")
            return 0
        finally:
            lock.release()

    def collect_shared(self) -> int:
        """Cluster GC, on one replica while every replica holds: the collection."""
        c = self.config
        if not running(self.run, c.standby) or running(self.run, c.primary):
            self.log("refused: collect only while this replica holds read-only "
                     "(regops gc does both)")
            return 2
        output = self.garbage_collect(c.standby)
        self.record.blobs_deleted = output.stdout.count("Deleting blob: ")
        if not output.ok:
            self.log(" ".join(output.stdout.strip().splitlines()[-5:]))
            self.write("failed", 1, f"garbage-collect exited {output.returncode} (cluster)")
            return 1
        message = f"{self.record.blobs_deleted} blobs deleted from the shared bucket (cluster GC)"
        self.log(f"ok: {message}")
        self.write("ok", 0, message)
        return 0

    def main(self, command: str | None, wait_for_release: Callable[[float], bool]) -> int:
        """Run `command`; interrupted, back to writable first."""
        try:
            if not self.config.shared:
                if command is not None:
                    self.log(f"refused: {command} is for storage replicas share")
                    return 2
                return self.collect_here()
            if command == "hold":
                return self.hold(wait_for_release)
            if command == "collect":
                return self.collect_shared()
            self.log("refused: the images are in a bucket other replicas share "
                     "(registry_storage: s3); run regops gc from the operator's machine, "
                     "which holds every replica read-only and collects once")
            return 2
        except Failed as failed:
            return failed.code
        except Interrupted as interrupted:
            if self.phase != "writable":
                self.log("interrupted: switching the registry back to writable")
                if not self.back_to_writable():
                    self.log("the registry is not back to normal; run the deploy")
            return 128 + interrupted.signum


def _remove_tree(path: Path) -> bool:
    try:
        shutil.rmtree(path)
    except OSError:
        return False
    return True


def released_on_stdin(limit: float) -> bool:
    """True when the operator sends a line; False when stdin closes or `limit` passes."""
    ready, _, _ = select.select([sys.stdin], [], [], limit)
    return bool(ready) and sys.stdin.readline() != ""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regops-gc", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the job's constants (JSON)")
    parser.add_argument("command", nargs="?", choices=("hold", "collect"))
    args = parser.parse_args(argv)
    job = Job(Config.load(args.config))
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)  # the operator's session hung up
    return job.main(args.command, released_on_stdin)


if __name__ == "__main__":
    sys.exit(main())
