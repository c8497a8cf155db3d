"""`regops gc`: run the deployed GC job on the hosts now, as cron runs it, and report
the record it leaves (`regops status` reads the same record)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from regops import hostpaths
from regops.hostops.remote import RegopsError, run_remote, script, summarize, texts
from regops.inventory import InventoryHost
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


def run_gc(hosts: Sequence[InventoryHost]) -> dict[str, Any]:
    def one(h: InventoryHost) -> dict[str, Any]:
        try:
            rc, out, _ = run_remote(h, gc_command())
        except RegopsError as error:
            return {"host": h.name, "ok": False, "error": str(error), **dict.fromkeys(GC_FIELDS)}
        return gc_result(h.name, rc, out)

    return summarize(parallel_all(one, list(hosts)))
