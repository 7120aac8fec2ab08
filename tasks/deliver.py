"""alerts.deliver: send one outbox notification; transient failures retry with exponential backoff, and the last
failure (or a permanent one) hands an operator alert to delivery."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from celery import shared_task
from sqlalchemy.exc import DBAPIError

from alerts.delivery import DeliveryIncomplete, deliver, give_up, rounds_used_up, undelivered
from storage.db import session_scope
from storage.models import utcnow
from tasks.context import current_config, dry_run_dir

MAX_RETRIES = 6
MAX_COUNTDOWN = 3600
# A database outage is waited out this many times (15 s, 30 s, ... capped at 5 minutes: about an hour in all).
MAX_DATABASE_RETRIES = 15


def backoff(retries: int) -> int:
    """Seconds before retry number `retries` + 1: 30, 60, 120, ... capped at an hour."""
    return min(30 * 2**retries, MAX_COUNTDOWN)


@shared_task(name="alerts.deliver", bind=True, max_retries=MAX_RETRIES, acks_late=True)
def deliver_task(self: Any, notification_id: int) -> dict[str, object]:
    token = self.request.id
    try:
        with session_scope() as session:
            report = deliver(session, current_config(), notification_id, dry_run_dir=Path(str(dry_run_dir())),
                             token=token)
    except DeliveryIncomplete as exc:
        retries = self.request.retries
        with session_scope() as session:
            if retries >= MAX_RETRIES or rounds_used_up(session, notification_id):
                hand_over(give_up(session, current_config(), notification_id, token))
                raise
        raise self.retry(exc=exc, countdown=backoff(retries)) from exc
    except DBAPIError as exc:
        # The database went away mid-delivery (what was sent before is recorded per target). The claim carries this
        # task's id, so the retry takes it back at once; deliver_pending picks it up if this chain is lost too.
        raise self.retry(exc=exc, countdown=min(15 * 2**self.request.retries, 300),
                         max_retries=MAX_DATABASE_RETRIES) from exc
    hand_over(report.operator_notification_id)
    return asdict(report)


def hand_over(operator_notification_id: int | None) -> None:
    """Deliver the operator alert that a failed notification raised (already committed by then)."""
    if operator_notification_id is not None:
        deliver_task.delay(operator_notification_id)


@shared_task(name="alerts.deliver_pending")
def deliver_pending() -> list[int]:
    """Safety net: any outbox row no live task is delivering (pending, or a stale claim) is handed to delivery
    again; one whose rounds are used up fails and the operator hears of it."""
    with session_scope() as session:
        rows = undelivered(session, utcnow())
        for notification_id, used_up in rows:
            if used_up:
                hand_over(give_up(session, current_config(), notification_id))
    retried = [notification_id for notification_id, used_up in rows if not used_up]
    for notification_id in retried:
        deliver_task.delay(notification_id)
    return retried
