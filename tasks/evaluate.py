"""alerts.evaluate: judge the latest data of one practice (or all) and hand each new message to delivery."""

from __future__ import annotations

from celery import shared_task

from alerts.evaluate import evaluate_practices
from tasks.context import current_config, parse_as_of


@shared_task(name="alerts.evaluate")
def evaluate_task(practice_id: str | None = None, as_of: str | None = None) -> list[dict[str, object]]:
    results = evaluate_practices(current_config(), practice_id=practice_id, as_of=parse_as_of(as_of))
    from tasks.deliver import deliver_task

    for result in results:
        if result.notification_id is not None:
            deliver_task.delay(result.notification_id)
    return [result.as_dict() for result in results]
