"""Feed freshness as the operator sees it: per vendor, the newest period, the last file, and the next feed due
(rules in feeds.freshness)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from config import Config
from feeds.freshness import next_due
from storage.models import FeedFile, Observation


def latest_periods(session: Session) -> dict[tuple[str, str], tuple[str, dt.date]]:
    """(practice, vendor) -> (label, period_end) of the newest period received, in any segment. When several
    labels end on that day (a month and its last day), the longest period's label is kept."""
    newest = (
        select(
            Observation.practice_id,
            Observation.vendor_id,
            func.max(Observation.period_end).label("period_end"),
        )
        .group_by(Observation.practice_id, Observation.vendor_id)
        .subquery()
    )
    query = (
        select(
            Observation.practice_id,
            Observation.vendor_id,
            Observation.period,
            newest.c.period_end,
            Observation.period_start,
        )
        .join(
            newest,
            and_(
                Observation.practice_id == newest.c.practice_id,
                Observation.vendor_id == newest.c.vendor_id,
                Observation.period_end == newest.c.period_end,
            ),
        )
        .distinct()
        .order_by(Observation.practice_id, Observation.vendor_id, Observation.period_start, Observation.period)
    )
    latest: dict[tuple[str, str], tuple[str, dt.date]] = {}
    for practice_id, vendor_id, period, period_end, _start in session.execute(query):
        latest.setdefault((practice_id, vendor_id), (period, period_end))
    return latest


def last_files(session: Session) -> dict[tuple[str, str], dt.datetime]:
    """(practice, vendor) -> when the newest accepted file arrived: a file named for them (inbox path) or a file
    that holds any of their current observations (a file ingested from the command line names neither)."""
    named = (
        select(FeedFile.practice_id, FeedFile.vendor_id, func.max(FeedFile.received_at))
        .where(FeedFile.practice_id.is_not(None), FeedFile.vendor_id.is_not(None))
        .group_by(FeedFile.practice_id, FeedFile.vendor_id)
    )
    holding = (
        select(Observation.practice_id, Observation.vendor_id, func.max(FeedFile.received_at))
        .join(FeedFile, FeedFile.id == Observation.feed_file_id)
        .group_by(Observation.practice_id, Observation.vendor_id)
    )
    last: dict[tuple[str, str], dt.datetime] = {}
    for query in (named, holding):
        for practice_id, vendor_id, received_at in session.execute(query):
            if practice_id is None or vendor_id is None:
                continue
            key = (practice_id, vendor_id)
            if key not in last or received_at > last[key]:
                last[key] = received_at
    return last


def feed_status(session: Session, config: Config, today: dt.date) -> list[dict[str, Any]]:
    """One row per configured (practice, vendor): latest_period, last_file_at, expected_period, due_on,
    late_after, late, days_late, periods_overdue, as of `today`."""
    latest = latest_periods(session)
    files = last_files(session)
    rows = []
    for practice in config.practices:
        for vendor in practice.vendors:
            period, period_end = latest.get((practice.id, vendor.id), (None, None))
            due = next_due(vendor, period_end, today)
            rows.append(
                {
                    "practice": practice.id,
                    "vendor": vendor.id,
                    "cadence": vendor.cadence,
                    "latest_period": period,
                    "last_file_at": files.get((practice.id, vendor.id)),
                    "expected_period": due.expected_period,
                    "due_on": due.due_on,
                    "late_after": due.late_after,
                    "late": due.late,
                    "days_late": due.days_late,
                    "periods_overdue": due.periods_overdue,
                }
            )
    return rows
