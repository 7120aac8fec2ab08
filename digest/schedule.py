"""When a digest is due: pure functions of (schedule, time zone, week, now). No database, no clock.

Every instant here is an aware datetime. A send time is wall-clock time in the practice's (or region's) own time
zone, turned into UTC for that very week, so 07:00 stays 07:00 across daylight-saving changes.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from config.schema import DigestSchedule

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ONE_WEEK = dt.timedelta(days=7)


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_monday(week: str) -> dt.date:
    year, number = week.split("-W")
    return dt.date.fromisocalendar(int(year), int(number), 1)


def week_bounds(week: str) -> tuple[dt.date, dt.date]:
    start = week_monday(week)
    return start, start + dt.timedelta(days=6)


def shift_week(week: str, weeks: int) -> str:
    return iso_week(week_monday(week) + weeks * ONE_WEEK)


def parse_week(text: str) -> str:
    """A valid ISO week label (YYYY-Www), normalised; ValueError otherwise."""
    try:
        return iso_week(week_monday(text.strip().upper()))
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{text!r} is not an ISO week (YYYY-Www, e.g. 2026-W48)") from exc


def scheduled_at(schedule: DigestSchedule, timezone: str, week: str) -> dt.datetime:
    """The UTC instant of `week`'s send time. A wall time skipped by a spring-forward change (02:30 on that
    night) falls after the gap, as zoneinfo resolves it: the digest is late by the hour, never skipped."""
    day = week_monday(week) + dt.timedelta(days=WEEKDAYS.index(schedule.weekday))
    hour, minute = (int(part) for part in schedule.time.split(":"))
    local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZoneInfo(timezone))
    return local.astimezone(dt.UTC)


def due_week(schedule: DigestSchedule, timezone: str, now: dt.datetime) -> str | None:
    """The practice-local ISO week whose digest is due at `now`, once its send time has passed; else None.

    A worker that was down on Monday catches up later that week; a week missed entirely is not replayed (the
    next digest covers it)."""
    week = iso_week(now.astimezone(ZoneInfo(timezone)).date())
    return week if now >= scheduled_at(schedule, timezone, week) else None


def reporting_window(
    schedule: DigestSchedule, timezone: str, week: str, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """(since, as_of) for `week`'s digest. It reports what happened since the previous digest's send time, and
    the data as of now while the week lasts (a digest sent late that week catches up); a past week rebuilt later
    is dated as it was due, at its own send time, never in a later week (its alerts are shown as they stand
    now)."""
    since = scheduled_at(schedule, timezone, shift_week(week, -1))
    as_of = now if now < week_end(timezone, week) else scheduled_at(schedule, timezone, week)
    return since, max(since, as_of)


def week_end(timezone: str, week: str) -> dt.datetime:
    """The UTC instant the practice-local week ends (the next Monday's midnight)."""
    monday = dt.datetime.combine(week_monday(week) + ONE_WEEK, dt.time(0), tzinfo=ZoneInfo(timezone))
    return monday.astimezone(dt.UTC)


def local_date(instant: dt.datetime, timezone: str) -> dt.date:
    return instant.astimezone(ZoneInfo(timezone)).date()
