"""When the staff should be asked again. Pure functions of (practice, the days its pulses closed, today).

Seed 000: a practice that "visibly checks in with staff during the first two weeks" after announcing a change is
remembered as thoughtful; silence reads as leadership no longer listening. So each vendor's go-live brings a
check-in: its reminder goes out a week after the go-live, and a pulse should have closed two weeks after it. After
that, a pulse is due every `cadence_days` after the last one closed (reminder a week ahead). A check-in is met by
any pulse that closes after it became owed. Past its due date plus `grace_days`, the 'pulse overdue' alert fires
(critical once a whole further cadence has gone by: alerts.rules.overdue_verdict); it resolves when a pulse
arrives.

All of it is off for a practice without `pulse: {cadence_days: N}`, and nothing falls due before the schedule
started to count (`start`: pulse.tracking): the first check-in is then due a cadence after that day, and a
go-live check-in only if it falls due after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from config import Practice

GO_LIVE_REMINDER = dt.timedelta(days=7)
GO_LIVE_DUE = dt.timedelta(days=14)
CADENCE_NOTICE = dt.timedelta(days=7)


@dataclass(frozen=True)
class CheckIn:
    key: str  # unique within the practice: the reminder for it is sent once
    due_on: dt.date  # a pulse should have closed by this day
    remind_on: dt.date
    vendor_name: str | None = None  # the vendor whose go-live calls for it; None: the regular cadence
    go_live: dt.date | None = None


def pending_checkins(practice: Practice, closings: Sequence[dt.date], as_of: dt.date,
                     start: dt.date | None = None) -> list[CheckIn]:
    """Every check-in no pulse has met yet (including ones not yet due), earliest due first. `start`: the day the
    schedule started to count (None: it always has)."""
    cadence = practice.pulse.cadence_days
    if cadence is None:
        return []
    closed = [day for day in closings if day <= as_of]
    checkins = [
        CheckIn(f"go-live:{vendor.id}:{vendor.go_live.isoformat()}", vendor.go_live + GO_LIVE_DUE,
                vendor.go_live + GO_LIVE_REMINDER, vendor.name, vendor.go_live)
        for vendor in practice.vendors
        if not any(day >= vendor.go_live for day in closed)
        and (start is None or vendor.go_live + GO_LIVE_DUE >= start)
    ]
    anchors = closed if start is None else [*closed, start]
    if anchors:
        due = max(anchors) + dt.timedelta(days=cadence)
        checkins.append(CheckIn(f"cadence:{due.isoformat()}", due, due - CADENCE_NOTICE))
    return sorted(checkins, key=lambda checkin: (checkin.due_on, checkin.key))


def reminders_due(practice: Practice, closings: Sequence[dt.date], as_of: dt.date,
                  start: dt.date | None = None) -> list[CheckIn]:
    """Check-ins to remind leadership of today: their reminder day has come, and they are not yet overdue (from
    then on the 'pulse overdue' alert speaks, so an outage of the reminder task never sends stale reminders)."""
    grace = dt.timedelta(days=practice.pulse.grace_days)
    return [checkin for checkin in pending_checkins(practice, closings, as_of, start)
            if checkin.remind_on <= as_of <= checkin.due_on + grace]


def next_checkin_due(practice: Practice, closings: Sequence[dt.date], as_of: dt.date,
                     start: dt.date | None = None) -> dt.date | None:
    pending = pending_checkins(practice, closings, as_of, start)
    return pending[0].due_on if pending else None
