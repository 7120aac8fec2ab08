"""alerts.deliver: send one outbox notification; transient failures retry with exponential backoff, and the last
failure (or a permanent one) hands an operator alert to delivery."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from sqlalchemy import select

from alerts.delivery import DeliveryIncomplete, deliver, give_up
from storage.db import session_scope
from storage.models import Notification
from tasks.context import current_config, dry_run_dir
from worker.app import app

MAX_RETRIES = 6
MAX_COUNTDOWN = 3600


def backoff(retries: int) -> int:
    """Seconds before retry number `retries` + 1: 30, 60, 120, ... capped at an hour."""
    return min(30 * 2**retries, MAX_COUNTDOWN)


@app.task(name="alerts.deliver", bind=True, max_retries=MAX_RETRIES, acks_late=True)
def deliver_task(self: object, notification_id: int) -> dict[str, object]:
    try:
        with session_scope() as session:
            report = deliver(session, current_config(), notification_id, dry_run_dir=Path(str(dry_run_dir())))
    except DeliveryIncomplete as exc:
        retries = self.request.retries  # type: ignore[attr-defined]
        if retries >= MAX_RETRIES:
            with session_scope() as session:
                hand_over(give_up(session, current_config(), notification_id))
            raise
        raise self.retry(exc=exc, countdown=backoff(retries)) from exc  # type: ignore[attr-defined]
    hand_over(report.operator_notification_id)
    return asdict(report)


def hand_over(operator_notification_id: int | None) -> None:
    """Deliver the operator alert that a failed notification raised (already committed by then)."""
    if operator_notification_id is not None:
        deliver_task.delay(operator_notification_id)


@app.task(name="alerts.deliver_pending")
def deliver_pending() -> list[int]:
    """Safety net: any outbox row still pending (its task was lost) is handed to delivery again."""
    with session_scope() as session:
        ids = list(session.scalars(select(Notification.id).where(Notification.status == "pending")))
    for notification_id in ids:
        deliver_task.delay(notification_id)
    return ids
