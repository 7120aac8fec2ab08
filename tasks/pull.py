"""feeds.pull_all enqueues feeds.pull per vendor with `pull:`; feeds.pull fetches one feed and hands a new file
to ingest.file, the same validation/archive/quarantine path as an SFTP drop."""

from __future__ import annotations

from celery import shared_task

from config.settings import get_settings
from feeds.pull import PullFailed, PullMisconfigured, pull_targets, pull_vendor
from storage.db import session_scope
from storage.models import utcnow
from tasks.context import current_config
from tasks.ingest import ingest_file

MAX_RETRIES = 3
BACKOFF_SECONDS = 60


@shared_task(name="feeds.pull_all")
def pull_all() -> list[list[str]]:
    targets = [[practice.id, vendor.id] for practice, vendor in pull_targets(current_config())]
    for practice_id, vendor_id in targets:
        pull_task.delay(practice_id, vendor_id)
    return targets


@shared_task(name="feeds.pull", bind=True, max_retries=MAX_RETRIES)
def pull_task(self: object, practice_id: str, vendor_id: str) -> dict[str, object]:
    """Retries a failed pull after 1, 2 and 4 minutes; a missing token or `pull:` entry is not retried."""
    config = current_config()
    practice = config.practice(practice_id)
    vendor = practice.vendor(vendor_id) if practice is not None else None
    if practice is None or vendor is None:
        raise ValueError(f"unknown practice/vendor {practice_id}/{vendor_id}")
    try:
        with session_scope() as session:
            outcome = pull_vendor(practice, vendor, get_settings().inbox, session, utcnow())
    except PullMisconfigured:
        raise
    except PullFailed as exc:
        retries = self.request.retries  # type: ignore[attr-defined]
        raise self.retry(exc=exc, countdown=BACKOFF_SECONDS * 2**retries) from None  # type: ignore[attr-defined]
    if outcome.path is not None:
        ingest_file.delay(str(outcome.path), settled=True)
    return outcome.as_dict()
