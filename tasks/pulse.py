"""pulse.remind: write the staff check-in reminders due today to the outbox and hand each to delivery."""

from __future__ import annotations

from celery import shared_task

from alerts.checkins import send_checkin_reminders
from tasks.context import current_config, parse_as_of


@shared_task(name="pulse.remind")
def remind_task(as_of: str | None = None) -> list[int]:
    notification_ids = send_checkin_reminders(current_config(), as_of=parse_as_of(as_of))
    from tasks.deliver import deliver_task

    for notification_id in notification_ids:
        deliver_task.delay(notification_id)
    return notification_ids
