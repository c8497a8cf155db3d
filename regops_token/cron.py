"""Cron schedules as cron.d reads them: which days and minutes fire, and when a
schedule next fires (the web pages say when deleted space comes back, at the next
GC; `regops check` how long GC may go without running). Numbers, `*`, ranges,
lists, steps, names and the @macros; when both day of month and day of week are
restricted, a day matching either one fires. Validation is `regops`'s
(`regops.config.validators.cron_problem`): schedules reach here checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


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


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 is Sunday (7 is folded into it)
    any_day_of_month: bool
    any_day_of_week: bool

    def fires_on(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days_of_month
        in_week = (day.isoweekday() % 7) in self.days_of_week
        if self.any_day_of_month or self.any_day_of_week:
            return in_month and in_week
        return in_month or in_week


def parse(schedule: str) -> Schedule:
    fields = MACROS.get(schedule.strip(), schedule).split()
    if len(fields) != 5:
        raise ValueError(f"{schedule!r}: cron needs 5 fields")
    return Schedule(
        minutes=frozenset(expand(fields[0], 0, 59)),
        hours=frozenset(expand(fields[1], 0, 23)),
        days_of_month=frozenset(expand(fields[2], 1, 31)),
        months=frozenset(expand(fields[3], 1, 12, MONTHS)),
        days_of_week=frozenset(d % 7 for d in expand(fields[4], 0, 7, DAYS)),
        any_day_of_month=fields[2].startswith("*"),
        any_day_of_week=fields[4].startswith("*"),
    )


def next_run(schedule: str, after: datetime) -> datetime:
    """The first minute after `after` (same timezone) that `schedule` matches."""
    parsed = parse(schedule)
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(5 * 366):  # days; a schedule that never fires (Feb 30) ends here
        if parsed.fires_on(t.date()):
            for hour in sorted(h for h in parsed.hours if h >= t.hour):
                first = t.minute if hour == t.hour else 0
                for minute in sorted(m for m in parsed.minutes if m >= first):
                    return t.replace(hour=hour, minute=minute)
        t = (t + timedelta(days=1)).replace(hour=0, minute=0)
    raise ValueError(f"{schedule!r} never fires")
