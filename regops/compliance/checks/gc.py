"""The GC job: installed, and run recently with success (`gc.*`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from regops.compliance import cron
from regops.compliance.checks._base import Context, check
from regops.compliance.checks._helpers import mode_problem
from regops.compliance.model import Verdict, fail, ok
from regops.hostpaths import GC_SCRIPT, GC_SERVICE, GC_TIMER

TIMER = "regops-gc.timer"


@check(
    id="gc.job-installed",
    title="The GC timer is installed, enabled and active",
    rationale="Without GC deleted images never free their space.",
    reference="regops",
)
def gc_job_installed(c: Context) -> Verdict:
    if not c.s["registry_gc_enabled"]:
        return ok("not expected: registry_gc_enabled is false")
    problems = [p for p in (
        mode_problem(c.facts.stat(GC_TIMER), GC_TIMER, "root", {"root"}, 0o644),
        mode_problem(c.facts.stat(GC_SERVICE), GC_SERVICE, "root", {"root"}, 0o644),
        mode_problem(c.facts.stat(GC_SCRIPT), GC_SCRIPT, "root", {"root"}, 0o755),
    ) if p]
    shown = dict(line.partition("=")[::2]
                 for line in (c.facts.optional_text("gc_timer") or "").splitlines())
    if shown.get("ActiveState") != "active":
        problems.append(f"{TIMER} is not active")
    if shown.get("UnitFileState") != "enabled":
        problems.append(f"{TIMER} is not enabled (it would not run after a reboot)")
    if shown.get("Triggers") != "regops-gc.service":
        problems.append(f"{TIMER} does not start regops-gc.service")
    if problems:
        return fail("; ".join(problems), "redeploy")
    return ok(f"{TIMER} runs {GC_SCRIPT} ({c.s['registry_gc_schedule']})")


def gc_max_age(c: Context) -> timedelta:
    if c.options.gc_max_age_days is not None:
        return timedelta(days=c.options.gc_max_age_days)
    return cron.max_age(c.s["registry_gc_schedule"])


@check(
    id="gc.last-run",
    title="The last GC run succeeded and is recent",
    rationale="A job that fails or never runs is as bad as none. Never run yet passes only while "
              "the job is younger than the allowed age (--gc-max-age-days, default: the schedule's "
              "period plus up to a day).",
    reference="regops",
)
def gc_last_run(c: Context) -> Verdict:
    """A host never GC'd passes only while its GC script is younger than the allowed age."""
    if not c.s["registry_gc_enabled"]:
        return ok("not expected: registry_gc_enabled is false")
    limit = gc_max_age(c)
    now = c.facts.now()
    raw = c.facts.optional_text("gc_state")
    if raw is None:
        script = c.facts.stat(GC_SCRIPT)
        if script is None:
            return fail(f"GC never ran and {GC_SCRIPT} is missing", "redeploy")
        installed = timedelta(seconds=max(0, now - script.ctime))
        if installed <= limit:
            return ok(f"no run yet; GC installed {_ago(installed)} ago, may go "
                      f"{_ago(limit)} without a run")
        return fail(f"GC never ran although installed {_ago(installed)} ago (limit "
                    f"{_ago(limit)})",
                    "look at /var/log/regops-gc.log and systemctl status regops-gc")
    try:
        state = json.loads(raw)
        when = datetime.strptime(state["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (ValueError, KeyError, TypeError):
        return fail("/var/lib/regops/gc-last.json is not a GC record", "run regops-gc by hand")
    age = timedelta(seconds=max(0, now - int(when.timestamp())))
    if state.get("result") != "ok" or state.get("exit_code") != 0:
        return fail(f"last GC {_ago(age)} ago failed (exit {state.get('exit_code')}): "
                    f"{state.get('message', '')}".rstrip(": "),
                    "look at /var/log/regops-gc.log")
    if age > limit:
        return fail(f"last successful GC was {_ago(age)} ago (limit {_ago(limit)})",
                    "look at systemctl list-timers regops-gc.timer and /var/log/regops-gc.log")
    return ok(f"last GC {_ago(age)} ago: ok, {state.get('bytes_freed', 0)} bytes freed, "
              f"read-only {state.get('readonly_seconds', 0)} s")


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 60} min"
