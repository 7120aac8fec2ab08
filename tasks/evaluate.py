"""alerts.evaluate: judge the latest data of one practice (or all) and hand each new message to delivery."""

from __future__ import annotations

from celery import shared_task

from alerts.evaluate import evaluate_practices
from alerts.owed import is_owed
from storage.db import session_scope
from tasks.context import current_config, parse_as_of


@shared_task(name="alerts.evaluate")
def evaluate_task(practice_id: str | None = None, as_of: str | None = None,
                  owed_only: bool = False) -> list[dict[str, object]]:
    """owed_only (asked for by new data): nothing to do once an evaluation that started after the data was
    stored has settled its request (alerts.owed). A burst of files for one practice queues one evaluation per
    file; the first evaluates them all and the rest return at once."""
    if owed_only and practice_id is not None:
        with session_scope() as session:
            if not is_owed(session, practice_id):
                return []
    results = evaluate_practices(current_config(), practice_id=practice_id, as_of=parse_as_of(as_of))
    from tasks.deliver import deliver_task

    for result in results:
        if result.notification_id is not None:
            deliver_task.delay(result.notification_id)
    return [result.as_dict() for result in results]
