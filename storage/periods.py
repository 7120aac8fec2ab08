"""Reporting periods: YYYY-MM (month), YYYY-Www (ISO week), YYYY-MM-DD (day), or an explicit start/end."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)
DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")


@dataclass(frozen=True, order=True)
class Period:
    start: dt.date
    end: dt.date
    label: str


def parse_period(text: str) -> Period:
    """Parse one period label; raise ValueError with a message an operator can act on."""
    text = text.strip()
    if match := MONTH.match(text):
        return month_period(int(match[1]), int(match[2]))
    if match := WEEK.match(text):
        return week_period(int(match[1]), int(match[2]))
    if match := DAY.match(text):
        day = dt.date(int(match[1]), int(match[2]), int(match[3]))
        return Period(day, day, day.isoformat())
    raise ValueError("period must be YYYY-MM, YYYY-Www or YYYY-MM-DD")


def month_period(year: int, month: int) -> Period:
    if not 1 <= month <= 12:
        raise ValueError(f"month {month} is not 1-12")
    last_day = calendar.monthrange(year, month)[1]
    return Period(dt.date(year, month, 1), dt.date(year, month, last_day), f"{year:04d}-{month:02d}")


def week_period(year: int, week: int) -> Period:
    start = dt.date.fromisocalendar(year, week, 1)
    return Period(start, start + dt.timedelta(days=6), f"{year:04d}-W{week:02d}")


def span_period(start_text: str, end_text: str) -> Period:
    start = dt.date.fromisoformat(start_text.strip())
    end = dt.date.fromisoformat(end_text.strip())
    if end < start:
        raise ValueError("period_end is before period_start")
    label = start.isoformat() if start == end else f"{start.isoformat()}..{end.isoformat()}"
    for candidate in (month_period(start.year, start.month), week_period(*start.isocalendar()[:2])):
        if (candidate.start, candidate.end) == (start, end):
            return candidate
    return Period(start, end, label)
