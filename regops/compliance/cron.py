"""How often a cron schedule fires, to know when a GC run is overdue.

The period is the longest gap between two runs (a schedule like
`0 3 * * 1,2` has a 6-day gap even though it runs twice a week). Days follow
cron's rule: when both day-of-month and day-of-week are restricted, a day
matching either one fires.
"""

from __future__ import annotations

from datetime import date, timedelta

from regops.config.checks import cron_problem

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# Eight years from a leap year: covers every weekday/leap-day combination that can recur.
_WINDOW_START = date(2024, 1, 1)
_WINDOW_DAYS = 8 * 366


def _value(text: str, low: int, names: list[str]) -> int:
    return names.index(text.lower()) + low if text.lower() in names else int(text)


def expand(field: str, low: int, high: int, names: list[str] | None = None) -> set[int]:
    """The values one cron field allows (`*/15`, `1-5`, `mon-fri`, `0,30`)."""
    names = names or []
    values: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-")
            start, end = _value(first, low, names), _value(last, low, names)
        else:
            start = _value(base, low, names)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


def period(schedule: str) -> timedelta:
    """Longest time between two runs of a valid cron.d schedule."""
    problem = cron_problem(schedule)
    if problem:
        raise ValueError(f"not a cron schedule: {problem}")
    fields = MACROS.get(schedule.strip(), schedule).split()
    minutes = expand(fields[0], 0, 59)
    hours = expand(fields[1], 0, 23)
    doms = expand(fields[2], 1, 31)
    months = expand(fields[3], 1, 12, _MONTHS)
    dows = {d % 7 for d in expand(fields[4], 0, 7, _DAYS)}
    dom_any, dow_any = fields[2].startswith("*"), fields[4].startswith("*")

    def fires(day: date) -> bool:
        if day.month not in months:
            return False
        dom_ok, dow_ok = day.day in doms, (day.isoweekday() % 7) in dows
        if dom_any or dow_any:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    times = sorted(h * 60 + m for h in hours for m in minutes)
    days = [n for n in range(_WINDOW_DAYS) if fires(_WINDOW_START + timedelta(days=n))]
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
