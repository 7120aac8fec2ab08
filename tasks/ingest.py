"""ingest.scan_inbox lists the inbox; ingest.file ingests one file and asks for an evaluation if data changed."""

from __future__ import annotations

import logging
from pathlib import Path

from alerts.owed import owe_evaluation, owed_evaluations
from feeds.inbox import OutsideInbox, list_inbox, list_strays, process_inbox_file
from feeds.ingest import IngestResult, unfollowed
from storage.db import session_scope
from storage.models import utcnow
from tasks.context import current_config
from worker.app import app
from worker.settings import get_settings

log = logging.getLogger(__name__)


@app.task(name="ingest.scan_inbox")
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
            evaluate_task.delay(practice_id=practice)
    return paths


@app.task(name="ingest.file")
def ingest_file(path: str, evaluate: bool = True, settled: bool = False) -> dict[str, object]:
    """settled=True: the caller (the inbox watcher) already saw the upload finish; skip the stability wait.
    A path outside the inbox is refused: this task reads only what landed there."""
    try:
        result = process_inbox_file(Path(path), current_config(), get_settings(), settled=settled)
    except OutsideInbox:
        log.warning("refused to ingest %s: not a file inside the inbox", Path(path).name)
        return {"path": path, "status": "refused"}
    if result is None:
        return {"path": path, "status": "gone"}
    if result.status == "rejected":
        alert_operator(Path(path), result)
    if result.status == "ignored":
        alert_operator_stray(Path(path), result)
    # A duplicate is evaluated too: it may be the redelivery of a task whose worker died after the commit and
    # before this line. Evaluation is idempotent, so a real duplicate costs one quiet evaluation.
    if evaluate and (result.changed or result.status == "duplicate"):
        from tasks.evaluate import evaluate_task

        with session_scope() as session:
            owe_evaluation(session, result.practices, utcnow())
        for practice in result.practices:
            evaluate_task.delay(practice_id=practice)
    return result.as_dict()


def inbox_name(path: Path) -> str:
    """inbox/<practice>/<vendor>/<file> as "<practice>/<vendor>/<file>" (a link named, never followed)."""
    try:
        return str(unfollowed(path).relative_to(get_settings().inbox.resolve()))
    except ValueError:
        return path.name


def alert_operator(path: Path, result: IngestResult) -> None:
    """A rejected inbox file is an operator's job: say which file, where it went, and why."""
    name = inbox_name(path)
    count = max(result.problem_count, len(result.problems))
    what = {"pulse": "Pulse export", "remits": "835 remittance"}.get(result.kind, "Feed")  # remits: issue 16
    where = ("It was deleted, since it names staff; the problems are listed in quarantine/ "
             "(.errors.json). Fix the export and drop it in the inbox again." if result.kind == "pulse" else
             f"It was moved to {result.moved_to}; the full list of problems is in the .errors.json beside it. "
             "Fix the file and drop it in the inbox again.")
    send_operator_alert(name, title=f"{what} rejected: {name} ({count} problem{'s' if count != 1 else ''})",
                        message=f"Nothing from this file was stored. {where}",
                        details=[str(problem) for problem in result.problems])


def alert_operator_stray(path: Path, result: IngestResult) -> None:
    """Something that is not a feed file sat in the inbox: say what it was and where it went (once: it is gone)."""
    name = inbox_name(path)
    send_operator_alert(name, title=f"Not a feed file, set aside unread: {name}",
                        message=f"It was moved to {result.moved_to}. Only regular files are read from the inbox; "
                                "links, pipes and dot-named files are set aside. Drop the file itself to ingest it.",
                        details=[str(problem) for problem in result.problems])


def send_operator_alert(name: str, *, title: str, message: str, details: list[str]) -> None:
    from alerts.operator import enqueue_operator_alert
    from tasks.deliver import deliver_task

    practice = name.split("/", 1)[0] if "/" in name else None
    with session_scope() as session:
        notification_id = enqueue_operator_alert(
            session, current_config(), title=title, message=message, details=details,
            practice_id=practice if practice and current_config().practice(practice) else None,
        )
    if notification_id is not None:
        deliver_task.delay(notification_id)
