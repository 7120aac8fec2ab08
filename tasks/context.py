"""What every task needs: the configuration (reloaded when its files change) and the current time.

Each process holds the configuration it loaded. When a task starts in a worker child, the child checks the files
and reloads an edited configuration, validated first (config/reload.py); the worker's parent does the same when a
task arrives, so a child it forks later starts from the newest valid configuration. A broken edit is refused: the
configuration in use stays, and one process (whichever claims that broken version first) logs it and tells the
operator, naming each file and line.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import suppress

from celery import signals

from config.reload import ConfigWatch, Refusal
from config.settings import get_settings

log = logging.getLogger(__name__)

current_config = ConfigWatch(lambda: get_settings().config)


def parse_as_of(as_of: str | None) -> dt.date:
    return dt.date.fromisoformat(as_of) if as_of else dt.date.today()


def dry_run_dir() -> object:
    return get_settings().data_dir / "dry-run"


@signals.task_prerun.connect
def reload_edited_config(**_: object) -> None:
    refusal = current_config.check()
    if refusal is not None:
        tell_refusal(refusal)


@signals.task_received.connect
def reload_edited_config_before_forking(**_: object) -> None:
    """In the worker's parent: keep the configuration that children inherit current. The child that runs the task
    checks too, and it, not the parent (which must not open connections its children would share), tells."""
    current_config.check()


def tell_refusal(refusal: Refusal) -> None:
    from tasks.once import claim_once, release

    claim = f"config-refused-{refusal.digest}"
    claimed = False
    try:
        claimed = claim_once(claim)
        if not claimed:
            log.info("configuration edit refused (the operator was told): %s", refusal.problems[0])
            return
        log.warning("configuration edit refused; the previous configuration stays in use until it is fixed:\n  %s",
                    "\n  ".join(refusal.problems))
        alert_operator(refusal)
    except Exception:
        # Redis or the database is down: the operator is told at a later task's check instead.
        log.exception("could not tell the operator about a refused configuration edit; will try again")
        if claimed:
            with suppress(Exception):
                release(claim)
        current_config.check_again()


def alert_operator(refusal: Refusal) -> None:
    from alerts.operator import tell_config_refused
    from storage.db import session_scope
    from tasks.deliver import deliver_task

    with session_scope() as session:
        notification_id = tell_config_refused(session, current_config(), refusal)
    if notification_id is not None:
        deliver_task.delay(notification_id)
