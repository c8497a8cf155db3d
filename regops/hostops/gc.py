"""`regops gc`: run the deployed GC job on the hosts now, as cron runs it, and report
the record it leaves (`regops status` reads the same record)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from regops import hostpaths
from regops.hostops.remote import RegopsError, run_remote, script, summarize, texts
from regops.inventory import InventoryHost
from regops.storage import s3
from regops.util import parallel_all, parse_time

GC_FIELDS = ("time", "result", "exit_code", "bytes_freed", "blobs_deleted", "blob_bytes_freed",
             "uploads_deleted", "upload_bytes_freed", "readonly_seconds", "duration_seconds",
             "message")
NUMBERS = GC_FIELDS[2:-1]


def parse_gc_state(text: str) -> dict[str, Any] | None:
    """The GC job's gc-last.json; None when absent, empty or not what the job writes."""
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not {"time", "result"} <= set(doc):
        return None
    out = {k: doc.get(k) for k in GC_FIELDS}
    for key in NUMBERS:
        if not isinstance(out[key], int) or isinstance(out[key], bool):
            out[key] = None
    return out

GC_TIMEOUT = 6 * 3600  # a collection of a large registry takes long; a hung one not forever


def gc_command() -> str:
    """Run the deployed GC job as cron does (same log), then read its record."""
    job = hostpaths.GC_SCRIPT
    return script(
        {
            "start": "date -u +%s",
            "job": f"if [ ! -x {job} ]; then echo missing; exit 0; fi; "
            f"{job} >>{hostpaths.GC_LOG} 2>&1; echo $?",
            "state": f"cat {hostpaths.GC_STATE}",
        },
        timeout=GC_TIMEOUT,
    )


def gc_result(host: str, rc: int, stdout: str) -> dict[str, Any]:
    """Interpret `gc_command` output: the job's record, if it is from this run."""
    parts = texts(stdout)
    entry: dict[str, Any] = {"host": host, "ok": False, "error": None, **dict.fromkeys(GC_FIELDS)}
    job = parts.get("job", "")
    if job == "missing":
        entry["error"] = f"{hostpaths.GC_SCRIPT} is not installed (run the deploy first)"
        return entry
    if rc != 0 or not job.lstrip("-").isdigit():
        entry["error"] = f"the GC job did not run (exit {rc})"
        return entry
    state = parse_gc_state(parts.get("state", ""))
    started = parts.get("start", "")
    when = parse_time(state["time"]) if state else None
    job_rc = int(job)
    if state is None or when is None or (started.isdigit() and when.timestamp() < int(started)):
        entry["error"] = (
            f"the GC job exited {job_rc} without recording a result in {hostpaths.GC_STATE}"
        )
        return entry
    entry.update(state)
    entry["ok"] = job_rc == 0 and state["result"] == "ok"
    if not entry["ok"]:
        why = state.get("message") or f"see {hostpaths.GC_LOG}"
        entry["error"] = f"GC failed (exit {job_rc}): {why}"
    return entry


HOLD_READY_TIMEOUT = 600  # a replica draining long downloads before it is read-only


def cluster_groups(hosts: Sequence[InventoryHost]
                   ) -> tuple[list[InventoryHost], dict[str, list[InventoryHost]]]:
    """(hosts collected one by one, replicas on a shared bucket by registry name).

    Load balancers and storage hosts have no registry to collect."""
    single: list[InventoryHost] = []
    shared: dict[str, list[InventoryHost]] = {}
    for h in hosts:
        d = h.checked_data()
        if d["registry_role"] != "registry":
            continue
        if d["registry_storage"] == "s3":
            shared.setdefault(d["registry_name"], []).append(h)
        else:
            single.append(h)
    return single, {name: sorted(group, key=lambda h: h.name) for name, group in shared.items()}


class Hold:
    """One replica held read-only by `regops-gc hold` for as long as this session lasts."""

    def __init__(self, h: InventoryHost) -> None:
        self.host = h
        self.process = subprocess.Popen(
            h.ssh_argv(f"{hostpaths.GC_SCRIPT} hold"), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "READY":
                self.ready.set()
        self.ready.set()  # ended: `held` tells whether it got there

    @property
    def held(self) -> bool:
        return "READY" in self.lines

    def release(self) -> tuple[int, int | None]:
        """Writable again: (exit status, seconds it was read-only)."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("done\n")
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            rc = self.process.wait(HOLD_READY_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rc = self.process.wait()
        self.reader.join(10)
        seconds = next((int(line.split()[1]) for line in self.lines
                        if line.startswith("HELD ") and line.split()[1].isdigit()), None)
        return rc, seconds

    def problem(self) -> str:
        said = [line for line in self.lines if line and line != "READY"]
        return said[-1] if said else f"ssh exited {self.process.poll()}"


def bucket_blobs(h: InventoryHost) -> tuple[int, int] | None:
    """(blobs, bytes) in the shared bucket, from the operator's machine; None if it cannot."""
    try:
        s = h.settings()
        if s.bucket is None or s.s3_credentials is None:
            return None
        return s3.usage(s.bucket, s.s3_credentials, "docker/registry/v2/blobs")
    except (OSError, RegopsError, ValueError, SyntaxError):  # SyntaxError: bad XML
        return None


def empty_descriptor_cache(redis: InventoryHost) -> str | None:
    """Empty the replicas' shared redis; None when it said OK, else why not."""
    try:
        rc, out, err = run_remote(redis, hostpaths.REDIS_FLUSH)
    except RegopsError as error:
        return str(error)
    if rc == 0 and out.strip() == "OK":
        return None
    said = (err or out).strip().splitlines()
    return f"{hostpaths.REDIS_FLUSH} exited {rc}" + (f": {said[-1]}" if said else "")


def run_cluster_gc(name: str, replicas: Sequence[InventoryHost],
                   redis: InventoryHost | None = None) -> list[dict[str, Any]]:
    """Every replica read-only, one collection on the first, every replica writable again.

    Holding is a session per replica: if this process dies, the sessions close and the
    replicas make themselves writable (`regops-gc hold`). A shared descriptor cache
    (`redis`) is emptied after the collection and before they are writable, so no
    replica answers that a deleted blob exists."""
    collector = replicas[0]
    started = time.monotonic()
    holds = [Hold(h) for h in replicas]
    entries: list[dict[str, Any]] = []
    collected: dict[str, Any] | None = None
    error: str | None = None
    try:
        deadline = time.monotonic() + HOLD_READY_TIMEOUT
        for hold in holds:
            hold.ready.wait(max(0.0, deadline - time.monotonic()))
        not_held = [hold for hold in holds if not hold.held]
        if not_held:
            error = "; ".join(f"{hold.host.name}: {hold.problem()}" for hold in not_held)
        else:
            before = bucket_blobs(collector)
            rc, out, _ = run_remote(collector, f"{hostpaths.GC_SCRIPT} collect >>"
                                    f"{hostpaths.GC_LOG} 2>&1; echo \"rc=$?\"; "
                                    f"cat {hostpaths.GC_STATE}")
            collected = parse_gc_state(out.split("\n", 1)[1] if "\n" in out else "")
            if rc != 0 or not out.startswith("rc=0"):
                error = f"{collector.name}: the collection failed ({out.splitlines()[0:1]})"
            after = bucket_blobs(collector)
            if collected is not None and before is not None and after is not None:
                # Nothing writes while every replica holds: the difference is what GC freed.
                collected["blob_bytes_freed"] = collected["bytes_freed"] = before[1] - after[1]
            if redis is not None:
                problem = empty_descriptor_cache(redis)
                if collected is not None:
                    collected["descriptor_cache"] = "emptied" if problem is None else "stale"
                if problem is not None:
                    error = (f"{redis.name}: the shared descriptor cache was not emptied "
                             f"({problem}); run {hostpaths.REDIS_FLUSH} there")
    finally:
        released = [(hold, *hold.release()) for hold in holds]
    window = int(time.monotonic() - started)
    for hold, rc, seconds in released:
        entry: dict[str, Any] = {"host": hold.host.name, **dict.fromkeys(GC_FIELDS),
                                 "registry": name, "cluster": True}
        if hold.host is collector and collected:
            entry.update(collected)
        entry["readonly_seconds"] = seconds
        entry["duration_seconds"] = window
        entry["result"] = entry["result"] or ("held" if rc == 0 else "failed")
        entry["ok"] = error is None and rc == 0
        entry["error"] = error if error else (None if rc == 0 else hold.problem())
        entries.append(entry)
    return entries


def run_gc(hosts: Sequence[InventoryHost],
           everyone: Sequence[InventoryHost] | None = None) -> dict[str, Any]:
    """GC of `hosts`; a replica on a shared bucket brings every replica of its name in
    `everyone` (the whole inventory, whatever --limit said) into its cluster GC."""
    def one(h: InventoryHost) -> dict[str, Any]:
        try:
            rc, out, _ = run_remote(h, gc_command())
        except RegopsError as error:
            return {"host": h.name, "ok": False, "error": str(error), **dict.fromkeys(GC_FIELDS)}
        return gc_result(h.name, rc, out)

    single, shared = cluster_groups(hosts)
    inventory = everyone if everyone is not None else hosts
    _, all_shared = cluster_groups(inventory)
    entries = parallel_all(one, single)
    for name in shared:
        replicas = all_shared[name]
        cache = replicas[0].checked_data()["registry_redis_host"]
        redis = next((h for h in inventory if h.name == cache), None) if cache else None
        entries += run_cluster_gc(name, replicas, redis)
    return summarize(entries)
