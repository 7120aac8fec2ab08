"""When a practice's pulse schedule started to count: `pulse.start` in practices.yaml, else the day the first
evaluation (or reminder run) saw `pulse.cadence_days`, recorded once in pulse_tracking. Check-ins fall due only
from then on (pulse.schedule), so adding a schedule to a practice live for a year does not shout at once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import Practice
from storage.models import PulseTracking


def recorded_start(session: Session, practice_id: str) -> dt.date | None:
    return session.scalar(select(PulseTracking.started_on).where(PulseTracking.practice_id == practice_id))


def tracking_start(session: Session, practice: Practice, as_of: dt.date, *, record: bool) -> dt.date:
    """The day check-ins start to be owed. Nothing recorded yet: `as_of`, written down when `record` (readers such
    as the digest only look, and treat the schedule as starting today)."""
    if practice.pulse.start is not None:
        return practice.pulse.start
    stored = recorded_start(session, practice.id)
    if stored is not None or not record:
        return stored or as_of
    try:
        with session.begin_nested():
            session.add(PulseTracking(practice_id=practice.id, started_on=as_of))
    except IntegrityError:  # another worker recorded it first: its day counts
        return recorded_start(session, practice.id) or as_of
    return as_of
