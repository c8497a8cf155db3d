"""How often a cron schedule fires, to know when a GC run is overdue.

The period is the longest gap between two runs (a schedule like
`0 3 * * 1,2` has a 6-day gap even though it runs twice a week); which days and
minutes fire is `regops_token.cron`'s, shared with the web pages' next GC time.
"""

from __future__ import annotations

from datetime import date, timedelta

from regops.config.validators import cron_problem
from regops_token import cron

# Eight years from a leap year: covers every weekday/leap-day combination that can recur.
_WINDOW_START = date(2024, 1, 1)
_WINDOW_DAYS = 8 * 366


def period(schedule: str) -> timedelta:
    """Longest time between two runs of a valid cron.d schedule."""
    problem = cron_problem(schedule)
    if problem:
        raise ValueError(f"not a cron schedule: {problem}")
    parsed = cron.parse(schedule)
    times = sorted(h * 60 + m for h in parsed.hours for m in parsed.minutes)
    days = [n for n in range(_WINDOW_DAYS)
            if parsed.fires_on(_WINDOW_START + timedelta(days=n))]
    if len(days) < 2:
        return timedelta(days=_WINDOW_DAYS)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    gaps += [(b - a) * 1440 + times[0] - times[-1] for a, b in zip(days, days[1:], strict=False)]
    return timedelta(minutes=max(gaps))


def max_age(schedule: str) -> timedelta:
    """How old the last GC run may be: one period plus a grace of one period, at most a day
    (weekly -> 8 days, daily -> 2 days, hourly -> 2 hours)."""
    every = period(schedule)
    return every + min(every, timedelta(days=1))
