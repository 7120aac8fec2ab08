"""ingest.scan_inbox lists the inbox; ingest.file ingests one file and asks for an evaluation if data changed."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task

from alerts.owed import owe_evaluation, owed_evaluations
from config.settings import get_settings
from intake.inbox import OutsideInbox, list_inbox, list_strays, process_inbox_file
from remits.keys import KEY_VARIABLE, RemitKeyMissing
from storage.db import session_scope
from storage.models import utcnow
from storage.uploads import IngestResult
from tasks.context import current_config

log = logging.getLogger(__name__)


@shared_task(name="ingest.scan_inbox")
def scan_inbox() -> list[str]:
    """Every minute from beat: the files still in the inbox, and the evaluations still owed (their message may
    have been lost with a broker that went down)."""
    inbox = get_settings().inbox
    # Strays too: the task sets each aside and tells the operator, once, since it is gone from the inbox after.
    paths = [str(path) for path in [*list_inbox(inbox), *list_strays(inbox)]]
    for path in paths:
        ingest_file.delay(path)
    with session_scope() as session:
        owed = owed_evaluations(session)
    if owed:
        from tasks.evaluate import evaluate_task

        for practice in owed:
            evaluate_task.delay(practice_id=practice, owed_only=True)
    return paths


@shared_task(name="ingest.file")
def ingest_file(path: str, evaluate: bool = True, settled: bool = False) -> dict[str, object]:
    """settled=True: the caller (the inbox watcher) already saw the upload finish; skip the stability wait.
    A path outside the inbox is refused: this task reads only what landed there."""
    try:
        result = process_inbox_file(Path(path), current_config(), get_settings(), settled=settled)
    except OutsideInbox:
        log.warning("refused to ingest %s: not a file inside the inbox", Path(path).name)
        return {"path": path, "status": "refused"}
    except RemitKeyMissing:
        # The setting, not the file: it stays in the inbox (its attempt not counted) and is read once the key is set.
        log.warning("%s waits in the inbox: %s is not set", Path(path).name, KEY_VARIABLE)
        tell_once_about_remit_key(Path(path))
        return {"path": path, "status": "waiting"}
    if result is None:
        return {"path": path, "status": "gone"}
    if result.status in ("rejected", "ignored"):
        tell_operator(Path(path), result)
    # A duplicate is evaluated too: it may be the redelivery of a task whose worker died after the commit and
    # before this line. Evaluation is idempotent, so a real duplicate costs one quiet evaluation.
    if evaluate and (result.changed or result.status == "duplicate"):
        from tasks.evaluate import evaluate_task

        with session_scope() as session:
            owe_evaluation(session, result.practices, utcnow())
        for practice in result.practices:
            evaluate_task.delay(practice_id=practice, owed_only=True)
    return result.as_dict()


def tell_once_about_remit_key(path: Path) -> None:
    """Every scan retries the file: one process tells the operator, again a week later (tasks.once) if still unset."""
    from alerts.operator import tell_remit_key_missing
    from tasks.deliver import deliver_task
    from tasks.once import claim_once, release

    if not claim_once("remit-key-missing"):
        return
    try:
        with session_scope() as session:
            notification_id = tell_remit_key_missing(session, current_config(), path, get_settings().inbox,
                                                     KEY_VARIABLE)
    except Exception:
        release("remit-key-missing")  # the database is down: a later scan tells instead
        raise
    if notification_id is not None:
        deliver_task.delay(notification_id)


def tell_operator(path: Path, result: IngestResult) -> None:
    """A rejected or set-aside file: the operator is told which, where it went and why (alerts.operator)."""
    from alerts.operator import tell_about_file
    from tasks.deliver import deliver_task

    with session_scope() as session:
        notification_id = tell_about_file(session, current_config(), path, get_settings().inbox, result)
    if notification_id is not None:
        deliver_task.delay(notification_id)
