"""digest.due finds the practices and regions whose send time has passed in their own time zone; digest.weekly
and digest.region claim, build and send one each. A digest whose retries run out raises an operator alert."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from celery import shared_task
from sqlalchemy.orm import Session

from digest.mail import DigestNotSent
from digest.send import DigestOutcome, due_digests, run_key, send_digest, send_region_digest, tell_operator
from storage.db import session_scope
from storage.models import utcnow
from tasks.context import current_config, dry_run_dir

MAX_RETRIES = 4


def backoff(retries: int) -> int:
    """Seconds before retry number `retries` + 1: 2, 4, 8, 16 minutes."""
    return 120 * 2**retries


@shared_task(name="digest.due")
def digest_due() -> list[list[str]]:
    with session_scope() as session:
        due = due_digests(session, current_config(), utcnow())
    for item in due:
        task = weekly_digest if item.kind == "practice" else regional_digest
        task.delay(item.key, item.week)
    return [[item.kind, item.key, item.week] for item in due]


@shared_task(name="digest.weekly", bind=True, max_retries=MAX_RETRIES, acks_late=True)
def weekly_digest(self: Any, practice_id: str, week: str, resend: bool = False) -> dict[str, object]:
    config = current_config()
    practice = config.practice(practice_id)
    if practice is None:
        raise ValueError(f"unknown practice {practice_id!r}")
    return send_with_retries(
        self, practice_id, week,
        lambda session: send_digest(session, config, practice, week, resend=resend, dry_run_dir=preview_dir()),
    )


@shared_task(name="digest.region", bind=True, max_retries=MAX_RETRIES, acks_late=True)
def regional_digest(self: Any, region: str, week: str, resend: bool = False) -> dict[str, object]:
    return send_with_retries(
        self, run_key("region", region), week,
        lambda session: send_region_digest(session, current_config(), region, week, resend=resend,
                                           dry_run_dir=preview_dir()),
    )


def send_with_retries(task: Any, key: str, week: str, send: Callable[[Session], DigestOutcome]) -> dict[str, object]:
    try:
        with session_scope() as session:
            return asdict(send(session))
    except DigestNotSent as exc:
        retries = task.request.retries
        if exc.permanent or retries >= MAX_RETRIES:
            give_up(key, week, str(exc))
            raise
        raise task.retry(exc=exc, countdown=backoff(retries)) from exc


def give_up(key: str, week: str, error: str) -> None:
    from tasks.deliver import deliver_task

    with session_scope() as session:
        notification_id = tell_operator(session, current_config(), key, week, error)
    if notification_id is not None:
        deliver_task.delay(notification_id)


def preview_dir() -> Path:
    return Path(str(dry_run_dir()))
