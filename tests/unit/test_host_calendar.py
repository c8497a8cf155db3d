"""registry_gc_schedule (cron) as the GC timer's OnCalendar=: the same minutes, checked
against systemd's own reading of the expressions (`systemd-analyze calendar`)."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime

import pytest

from regops.deploy.tasks.gc import on_calendar
from regops_token import cron
from tests.support.require import require_command

BASE = datetime(2026, 1, 1, 0, 0)
FIRINGS = 12
ELAPSE = re.compile(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def _systemd_firings(expressions: list[str]) -> list[datetime]:
    """The first FIRINGS times after BASE at which a timer with these OnCalendar= fires."""
    found: set[datetime] = set()
    for expression in expressions:
        out = subprocess.run(
            ["systemd-analyze", "calendar", f"--iterations={FIRINGS}",
             f"--base-time={BASE:%Y-%m-%d %H:%M:%S} UTC", expression],
            capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"},
        ).stdout
        found.update(datetime.strptime(t, "%Y-%m-%d %H:%M:%S") for t in ELAPSE.findall(out))
    return sorted(found)[:FIRINGS]


def _cron_firings(schedule: str) -> list[datetime]:
    times, t = [], BASE
    for _ in range(FIRINGS):
        t = cron.next_run(schedule, t)
        times.append(t)
    return times


@pytest.mark.parametrize("schedule", [
    "17 3 * * 0",  # the default
    "5 4 * * 7",  # 7 is Sunday too
    "*/15 * * * *",
    "0 4 1 * 1-5",  # both days restricted: either fires
    "30 2 13 * fri",
    "0 0 */2 * 1",  # a day of month starting with *: both must match
    "1-30/5 2,3 * jan-mar sat,sun",
    "0 12 15 * *",
    "10 1 * 2-4,11 mon-wed",
    "0 23 31 * *",
    "@weekly", "@daily", "@hourly", "@monthly", "@yearly",
])
def test_the_timer_fires_when_cron_would(schedule):
    require_command("systemd-analyze", "systemd")
    assert _systemd_firings(on_calendar(schedule)) == _cron_firings(schedule)


def test_what_systemd_reads_is_what_was_written():
    require_command("systemd-analyze", "systemd")
    for expression in on_calendar("1-30/5 2,3 * jan-mar sat,sun") + on_calendar("0 4 1 * 1-5"):
        out = subprocess.run(["systemd-analyze", "calendar", expression], capture_output=True,
                             text=True, check=True).stdout
        assert f"Normalized form: {expression}" in out


def test_the_default_schedule_is_one_weekly_expression():
    assert on_calendar("17 3 * * 0") == ["Sun *-*-* 03:17:00"]
    assert on_calendar("0 4 1 * 1-5") == ["*-*-01 04:00:00", "Mon..Fri *-*-* 04:00:00"]


def test_what_a_timer_cannot_do_is_refused_clearly():
    with pytest.raises(ValueError, match="registry_gc_schedule '@reboot' cannot run as a "
                                         "systemd timer"):
        on_calendar("@reboot")
