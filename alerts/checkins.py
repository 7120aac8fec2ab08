"""Staff check-in reminders: one operator message per due check-in, exactly once.

The pulse_reminder row (unique per practice and check-in) is claimed in the same transaction that writes the
message to the outbox, so a second beat, a rerun or two workers at once never remind twice.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.operator import CheckinDue, PulseDue, enqueue_operator_alert
from config import Config, Practice
from pulse.schedule import CheckIn, reminders_due
from pulse.tracking import tracking_start
from storage.db import session_scope
from storage.models import PulseReminder, PulseSurvey


def send_checkin_reminders(config: Config, *, as_of: dt.date | None = None,
                           database_url: str | None = None) -> list[int]:
    """Write a reminder for every check-in due today that has none yet; the outbox ids to deliver."""
    as_of = as_of or dt.date.today()
    notification_ids = []
    for practice in config.practices:
        if practice.pulse.cadence_days is None:
            continue
        with session_scope(database_url) as session:
            closings = list(session.scalars(select(PulseSurvey.closed_on)
                                            .where(PulseSurvey.practice_id == practice.id)))
            start = tracking_start(session, practice, as_of, record=True)
            for checkin in reminders_due(practice, closings, as_of, start):
                notification_id = remind_once(session, config, practice, checkin)
                if notification_id is not None:
                    notification_ids.append(notification_id)
    return notification_ids


def remind_once(session: Session, config: Config, practice: Practice, checkin: CheckIn) -> int | None:
    """Claim the check-in, then write its message; None when it was claimed before (or no route takes it)."""
    reminder = PulseReminder(practice_id=practice.id, checkin=checkin.key, due_on=checkin.due_on)
    try:
        with session.begin_nested():
            session.add(reminder)
    except IntegrityError:
        return None
    reminder.notification_id = enqueue_operator_alert(session, config, reminder_facts(config, practice, checkin),
                                                      practice_id=practice.id)
    return reminder.notification_id


def reminder_facts(config: Config, practice: Practice, checkin: CheckIn) -> CheckinDue | PulseDue:
    """The first check-in after a vendor went live, or the next one by the practice's cadence."""
    due, group = checkin.due_on.isoformat(), config.surveys.min_group_size
    if checkin.vendor_name and checkin.go_live:
        return CheckinDue(practice.id, practice.name, checkin.vendor_name, checkin.go_live.isoformat(), due, group)
    return PulseDue(practice.id, practice.name, due, practice.pulse.cadence_days, group)
