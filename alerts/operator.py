"""Operator alerts: something an operator must look at (a rejected feed, an undeliverable notification), sent
through the operator route."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from alerts.routes import MessageFacts, select_tags
from config import Config
from storage.models import Notification, utcnow

MAX_DETAILS = 10


def enqueue_operator_alert(session: Session, config: Config, *, title: str, message: str, details: list[str],
                           practice_id: str | None = None, exclude_channels: Sequence[str] = ()) -> int | None:
    """Write an operator notification to the outbox; None when no channel would take it.

    exclude_channels (channel keys) are the targets that just failed: the alert must reach someone else."""
    practice = config.practice(practice_id) if practice_id else None
    facts = MessageFacts(kind="operator", severity="warning", practice=practice_id,
                         region=practice.region if practice else None)
    tags = select_tags(config.routes, facts)
    if not any(channel.tags & set(tags) and channel.key not in exclude_channels for channel in config.channels):
        return None
    shown = details[:MAX_DETAILS]
    if len(details) > MAX_DETAILS:
        shown.append(f"... and {len(details) - MAX_DETAILS} more")
    notification = Notification(kind="operator", practice_id=practice_id, severity="warning", tags=tags,
                                title=title, created_at=utcnow(),
                                payload={"message": message, "details": shown,
                                         "exclude_channels": list(exclude_channels)})
    session.add(notification)
    session.flush()
    return notification.id
