"""Operator actions on alerts: acknowledge, silence, lift a silence. Plain functions the CLI calls."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Alert, Silence, utcnow


class AlertOperationError(Exception):
    """An operator action that cannot be done, with the reason to show."""


def acknowledge(session: Session, alert_id: int, by: str, now: dt.datetime | None = None) -> Alert:
    """Stop repeats of a firing alert until its severity changes."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise AlertOperationError(f"no alert {alert_id}")
    if alert.state != "firing":
        raise AlertOperationError(f"alert {alert_id} is {alert.state}, not firing: nothing to acknowledge")
    alert.acknowledged_at, alert.acknowledged_by = now or utcnow(), by
    return alert


def add_silence(session: Session, *, practice: str | None, vendor: str | None, kpi: str | None,
                ends_at: dt.datetime, reason: str, by: str, now: dt.datetime | None = None) -> Silence:
    now = now or utcnow()
    if practice is None and vendor is None and kpi is None:
        raise AlertOperationError("a silence needs at least one of --practice, --vendor, --kpi")
    if ends_at <= now:
        raise AlertOperationError("--until must be in the future")
    if not reason.strip():
        raise AlertOperationError("--reason is required: say why, for whoever wonders later")
    silence = Silence(practice_id=practice, vendor_id=vendor, kpi=kpi, starts_at=now, ends_at=ends_at,
                      reason=reason.strip(), created_by=by, created_at=now)
    session.add(silence)
    session.flush()
    return silence


def lift_silence(session: Session, silence_id: int, by: str, now: dt.datetime | None = None) -> Silence:
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise AlertOperationError(f"no silence {silence_id}")
    if silence.lifted_at is not None:
        raise AlertOperationError(f"silence {silence_id} was already lifted")
    silence.lifted_at, silence.lifted_by = now or utcnow(), by
    return silence


def list_silences(session: Session, now: dt.datetime | None = None, include_ended: bool = False) -> list[Silence]:
    now = now or utcnow()
    query = select(Silence).order_by(Silence.ends_at)
    if not include_ended:
        query = query.where(Silence.lifted_at.is_(None), Silence.ends_at > now)
    return list(session.scalars(query))
