"""An operator's rerun: the same Celery task beat sends, enqueued now, and recorded with who asked (table `rerun`,
`vendorwatch history reruns`). The CLI's `rerun` commands and the console's buttons both come here."""

from __future__ import annotations

from typing import Any

from storage.db import session_scope
from storage.models import Rerun

RERUN_TASKS = ("ingest.scan_inbox", "alerts.evaluate", "feeds.pull_all", "feeds.pull", "digest.weekly",
               "digest.region")


def record_rerun(task: str, arguments: dict[str, Any], by: str, task_id: str | None = None) -> None:
    with session_scope() as session:
        session.add(Rerun(task=task, arguments=arguments, requested_by=by, task_id=task_id))


def request_rerun(task: str, arguments: dict[str, Any], by: str) -> str:
    """Send the task through the deployment's broker, record it, and give its task id."""
    from worker.app import app

    if task not in RERUN_TASKS:
        raise ValueError(f"{task} is not a task an operator reruns")
    result = app.send_task(task, kwargs=arguments)
    record_rerun(task, arguments, by, result.id)
    return str(result.id)
