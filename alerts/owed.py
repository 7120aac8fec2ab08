"""Evaluations owed: a practice whose data changed and that no evaluation has looked at since.

The ingest task asks the broker for an evaluation right after it stores a file. If the broker is down at that
moment, or restarts empty before a worker takes the message, that request is gone, and the alert the new data
should raise would wait for the next morning's scheduled evaluation. So the request is also written here, in the
database; an evaluation settles it in its own transaction, and the inbox scan (every minute) enqueues whatever is
still owed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import EvaluationRequest


def owe_evaluation(session: Session, practices: Iterable[str], now: dt.datetime) -> None:
    rows = [{"practice_id": practice, "requested_at": now} for practice in sorted(set(practices))]
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(EvaluationRequest).values(rows)
    session.execute(statement.on_conflict_do_update(
        index_elements=["practice_id"], set_={"requested_at": statement.excluded.requested_at}
    ))


def settle_evaluation(session: Session, practice_ids: Iterable[str], started: dt.datetime) -> None:
    """Called in the evaluation's transaction: what was asked for before it started is done; a request made
    after it started may concern data it did not see, so it stays owed."""
    session.execute(delete(EvaluationRequest).where(
        EvaluationRequest.practice_id.in_(list(practice_ids)), EvaluationRequest.requested_at <= started
    ))


def owed_evaluations(session: Session) -> list[str]:
    return list(session.scalars(select(EvaluationRequest.practice_id).order_by(EvaluationRequest.practice_id)))


def is_owed(session: Session, practice_id: str) -> bool:
    return session.scalar(select(EvaluationRequest.practice_id).where(
        EvaluationRequest.practice_id == practice_id)) is not None
