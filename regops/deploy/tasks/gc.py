"""Garbage collection: the safe, read-only GC job (`regops_host.gc`, run by the host's
python3) as a systemd service, started by a timer on `registry_gc_schedule`.

The package `regops_host` is installed as files, verbatim; its constants go into
a JSON file it reads. Its keys: the `gc` concern of `regops.config.keys`.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, systemd

import regops_host
from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy.facts import expect_at_prepare
from regops.deploy.operations import refresh_apt_for
from regops.deploy.render import template, upload_max_age_minutes
from regops_token import cron

expect_at_prepare(File, path=hostpaths.GC_TIMER)  # apply() asks, with GC turned off

PACKAGES = ["python3"]
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # systemd's order; cron's 0 is Sun


def _values(values: frozenset[int], low: int, high: int) -> str:
    """One calendar component: `*`, or values and `a..b` runs, comma-separated."""
    if set(values) == set(range(low, high + 1)):
        return "*"
    return ",".join(f"{a:02d}" if a == b else f"{a:02d}..{b:02d}" if b > a + 1
                    else f"{a:02d},{b:02d}" for a, b in _runs(sorted(values)))


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _weekdays(days: frozenset[int]) -> str:
    order = sorted((d - 1) % 7 for d in days)  # Monday first, Sunday last
    return ",".join(DAYS[a] if a == b else f"{DAYS[a]}..{DAYS[b]}" if b > a + 1
                    else f"{DAYS[a]},{DAYS[b]}" for a, b in _runs(order))


def on_calendar(schedule: str) -> list[str]:
    """`registry_gc_schedule` (cron's five fields or a macro) as systemd `OnCalendar=`
    expressions that fire at the same minutes, in the host's local time as cron does.

    One expression, or two when both day of month and day of week are restricted:
    cron then fires on a day matching either, while systemd's components must all
    match, so each gets its own (a timer fires on the union of its OnCalendar=).
    What is not a cron schedule (`@reboot`, say) raises ValueError."""
    try:
        parsed = cron.parse(schedule)
    except ValueError as error:
        raise ValueError(f"registry_gc_schedule {schedule!r} cannot run as a systemd timer: "
                         f"{error} (5 fields or one of {', '.join(cron.MACROS)})") from None
    clock = f"{_values(parsed.hours, 0, 23)}:{_values(parsed.minutes, 0, 59)}:00"
    months = _values(parsed.months, 1, 12)
    days = _values(parsed.days_of_month, 1, 31)
    weekdays = "" if len(parsed.days_of_week) == 7 else _weekdays(parsed.days_of_week) + " "
    if parsed.any_day_of_month or parsed.any_day_of_week:  # both must match
        return [f"{weekdays}*-{months}-{days} {clock}"]
    return [f"*-{months}-{days} {clock}", f"{weekdays}*-{months}-* {clock}"]


def job_config(s: Settings) -> str:
    """The job's constants (`regops_host.gc.Config`)."""
    d = s.data
    return json.dumps({
        "primary": d["registry_container_name"],
        "config_in_container": f"{s.container_config_dir}/config.yml",
        "storage": f"{d['registry_data_dir']}/docker/registry/v2",
        "state_file": hostpaths.GC_STATE,
        "registry_control": hostpaths.REGISTRY_CONTROL,
        "frontdoor_control": hostpaths.FRONTDOOR_CONTROL,
        "lock": hostpaths.LOCK,
        "delete_untagged": bool(d["registry_gc_delete_untagged"]),
        "upload_max_age_minutes": upload_max_age_minutes(s),
        "lock_wait": 3600,
        "shared": s.bucket is not None,
    }, indent=2, sort_keys=True) + "\n"


def code_files() -> list[tuple[Path, str]]:
    """(file here, path on the host) of the package `regops_host`."""
    package = Path(regops_host.__file__).parent
    return [(f, f"{hostpaths.HOST_CODE}/regops_host/{f.name}")
            for f in sorted(package.glob("*.py"))]


def timer(s: Settings) -> str:
    return template(hostpaths.GC_TIMER, s, schedule=s["registry_gc_schedule"],
                    calendars=on_calendar(s["registry_gc_schedule"]))


def _put(name: str, text: str, dest: str, mode: str = "0644"):
    return files.put(name=name, src=StringIO(text), dest=dest, user="root", group="root",
                     mode=mode)


@deploy("Garbage collection")
def apply(s: Settings) -> None:
    refresh_apt_for(PACKAGES)
    apt.packages(name="Install python3 (Debian's), which runs the GC job", packages=PACKAGES)
    for directory in (hostpaths.STATE_DIR, "/etc/regops", hostpaths.HOST_CODE,
                      f"{hostpaths.HOST_CODE}/regops_host"):
        files.directory(name=f"Create {directory}", path=directory, user="root",
                        group="root", mode="0755")
    for local, remote in code_files():
        files.put(name=f"Install the GC job's code {remote}", src=str(local), dest=remote,
                  user="root", group="root", mode="0644")
    _put("Write the GC job's settings", job_config(s), hostpaths.GC_CONFIG)
    _put(f"Install {hostpaths.GC_SCRIPT}, which runs the GC job",
         template(hostpaths.GC_SCRIPT, s), hostpaths.GC_SCRIPT, mode="0755")
    service = _put("Install regops-gc.service, which runs the GC job",
                   template(hostpaths.GC_SERVICE, s), hostpaths.GC_SERVICE)
    if s["registry_gc_enabled"]:
        schedule = _put(f"Schedule GC with regops-gc.timer ({s['registry_gc_schedule']})",
                        timer(s), hostpaths.GC_TIMER)
        systemd.daemon_reload(name="Make systemd read the GC units again",
                              _if=lambda: service.did_change() or schedule.did_change())
        systemd.service(name="Start regops-gc.timer now and at every boot",
                        service="regops-gc.timer", running=True, enabled=True)
        systemd.service(name="Restart regops-gc.timer (its schedule changed)",
                        service="regops-gc.timer", restarted=True, _if=schedule.did_change)
    else:
        if host.get_fact(File, path=hostpaths.GC_TIMER):
            systemd.service(name="Stop regops-gc.timer (registry_gc_enabled is false)",
                            service="regops-gc.timer", running=False, enabled=False)
        removed = files.file(name="Remove regops-gc.timer (registry_gc_enabled is false)",
                             path=hostpaths.GC_TIMER, present=False)
        systemd.daemon_reload(name="Make systemd read the GC units again",
                              _if=lambda: service.did_change() or removed.did_change())
