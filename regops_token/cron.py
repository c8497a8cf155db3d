"""When a 5-field cron schedule next fires: the web pages say when deleted space comes
back (at the next GC). Cron's own rules: numbers, `*`, ranges, lists, steps and
names; day of month and day of week are OR-ed when both are restricted."""

from __future__ import annotations

from datetime import datetime, timedelta

_NAMES = {
    **{m: i for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1)},
    **{d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {text!r}")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = int(_NAMES.get(a, a)), int(_NAMES.get(b, b))
        else:
            start = int(_NAMES.get(body, body))
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise ValueError(f"{text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def next_run(schedule: str, after: datetime) -> datetime:
    """The first minute after `after` (same timezone) that `schedule` matches."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"{schedule!r}: cron needs 5 fields")
    minutes, hours, days, months, weekdays = (
        _field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True))
    weekdays = {d % 7 for d in weekdays}  # 7 is Sunday too
    any_day, any_weekday = fields[2] == "*", fields[4] == "*"

    def day_matches(t: datetime) -> bool:
        in_month, in_week = t.day in days, (t.isoweekday() % 7) in weekdays
        if any_day or any_weekday:
            return in_month and in_week
        return in_month or in_week

    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(5 * 366):  # days; a schedule that never fires (Feb 30) ends here
        if t.month in months and day_matches(t):
            for hour in sorted(h for h in hours if h >= t.hour):
                first = t.minute if hour == t.hour else 0
                for minute in sorted(m for m in minutes if m >= first):
                    return t.replace(hour=hour, minute=minute)
        t = (t + timedelta(days=1)).replace(hour=0, minute=0)
    raise ValueError(f"{schedule!r} never fires")
