"""Feed freshness: which period a vendor owes next, when it is due, and whether it is late.

Pure functions: no database, no clock. The caller passes the newest `period_end` it holds for a (practice,
vendor) and `today`.

Rules (from each vendor's `cadence`, `due_day` and `grace_days` in practices.yaml):

- **monthly**: the feed for month M (period label ``YYYY-MM``) is due on day `due_day` of month M+1
  (December's feed is due in January of the next year).
- **weekly**: the feed for ISO week W (period label ``YYYY-Www``, Monday to Sunday) is due `due_day` days after
  the week's Sunday: due_day 1 is the Monday after the week, 7 the Sunday after. For a weekly vendor a `due_day`
  above 7 is clamped to 7, so the default due_day 10 reads as "the Sunday after the week ends".
- **late**: a feed is late once ``today > due_on + grace_days`` (`late_after` is that last day of grace; on it
  the feed is still on time).
- **days_late** counts the days since the due date (not since the end of the grace period), and is 0 while the
  feed is not late: due on the 10th with 3 days of grace, the feed is on time through the 13th and
  "late 4 days" on the 14th.
- **the expected period** is the first period the vendor has not delivered: the one after the newest period
  received (observations of any segment count; with a `latest_period_end` that is not on a period boundary,
  the period holding the day after it, i.e. the first period that is not wholly delivered). With nothing ever
  received it is the period that holds the vendor's `go_live` date (monthly: that month; weekly: that ISO week).
  A vendor never owes a period before its go-live: history delivered for earlier periods (the baseline window)
  leaves the go-live period as the expected one.
- **several missing periods**: the expected period stays the oldest missing one (its due date and lateness are
  reported), and `periods_overdue` counts how many consecutive periods from it on are late (past their own
  grace) as of `today`; it is 0 exactly when `late` is false.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Literal

from config.schema import Vendor
from storage.periods import Period, month_period, week_period

Cadence = Literal["weekly", "monthly"]
WEEKLY_MAX_DUE_DAY = 7
ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class FeedDue:
    expected_period: str  # YYYY-MM (monthly) or YYYY-Www (weekly)
    due_on: dt.date
    late_after: dt.date  # the last day of grace: late when today > late_after
    late: bool
    days_late: int  # days since due_on when late, else 0
    periods_overdue: int  # consecutive late periods from expected_period on; 0 when not late


def period_containing(cadence: Cadence, day: dt.date) -> Period:
    """The month (monthly) or ISO week (weekly) that holds `day`."""
    if cadence == "monthly":
        return month_period(day.year, day.month)
    year, week, _ = day.isocalendar()
    return week_period(year, week)


def following_period(cadence: Cadence, period: Period) -> Period:
    return period_containing(cadence, period.end + ONE_DAY)


def due_date(cadence: Cadence, due_day: int, period: Period) -> dt.date:
    """The day the feed for `period` is due (see the module docstring)."""
    if cadence == "weekly":
        return period.end + dt.timedelta(days=min(due_day, WEEKLY_MAX_DUE_DAY))
    next_month = period.end + ONE_DAY
    last_day = calendar.monthrange(next_month.year, next_month.month)[1]
    return next_month.replace(day=min(due_day, last_day))


def expected_period(vendor: Vendor, latest_period_end: dt.date | None) -> Period:
    """The oldest period the vendor has not delivered (never one before its go-live)."""
    go_live = period_containing(vendor.cadence, vendor.go_live)
    if latest_period_end is None:
        return go_live
    after = period_containing(vendor.cadence, latest_period_end + ONE_DAY)
    return max(go_live, after, key=lambda period: period.start)


def next_due(vendor: Vendor, latest_period_end: dt.date | None, today: dt.date) -> FeedDue:
    """The next feed `vendor` owes, given the newest period_end received (None: nothing yet), as of `today`."""
    period = expected_period(vendor, latest_period_end)
    due_on = due_date(vendor.cadence, vendor.due_day, period)
    late_after = due_on + dt.timedelta(days=vendor.grace_days)
    late = today > late_after
    overdue, candidate, candidate_late_after = 0, period, late_after
    while today > candidate_late_after:
        overdue += 1
        candidate = following_period(vendor.cadence, candidate)
        candidate_late_after = due_date(vendor.cadence, vendor.due_day, candidate) + dt.timedelta(
            days=vendor.grace_days
        )
    return FeedDue(
        expected_period=period.label,
        due_on=due_on,
        late_after=late_after,
        late=late,
        days_late=(today - due_on).days if late else 0,
        periods_overdue=overdue,
    )
