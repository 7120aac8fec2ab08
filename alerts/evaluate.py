"""Evaluate one practice or all of them, each in its own transaction."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from alerts.decide import SilenceWindow
from alerts.lifecycle import EvaluationResult, active_silences, evaluate_practice
from alerts.owed import settle_evaluation
from config import Config, ConfigError, Practice
from storage.db import get_engine
from storage.models import utcnow


def evaluate_practices(
    config: Config,
    *,
    practice_id: str | None = None,
    as_of: dt.date | None = None,
    now: dt.datetime | None = None,
    database_url: str | None = None,
) -> list[EvaluationResult]:
    as_of = as_of or dt.date.today()
    now = now or utcnow()
    practices = config.practices
    if practice_id is not None:
        practice = config.practice(practice_id)
        if practice is None:
            raise ConfigError([f"unknown practice {practice_id!r}"])
        practices = [practice]
    # One connection for the run: a pool checkout per practice (each with its pre-ping round trip) cost about as
    # much as a practice's own queries. Each practice still commits, or rolls back, on its own.
    with get_engine(database_url).connect() as connection:
        silences = read_silences(connection, now)
        return [evaluate_in_transaction(connection, config, practice, as_of, now, silences) for practice in practices]


def read_silences(connection: Connection, now: dt.datetime) -> list[SilenceWindow]:
    """The silences active at `now`, read once per run rather than once per practice: the table is global and
    small, and `now` is fixed for the run."""
    with Session(bind=connection) as session, session.begin():
        return active_silences(session, now)


def evaluate_in_transaction(connection: Connection, config: Config, practice: Practice, as_of: dt.date,
                            now: dt.datetime, silences: list[SilenceWindow]) -> EvaluationResult:
    """One practice in a transaction of its own: committed on success, rolled back on any error. On PostgreSQL two
    evaluations of one practice take turns (a transaction-scoped advisory lock): run side by side, both would
    insert the same new alert and one would fail on its unique key."""
    with Session(bind=connection, expire_on_commit=False) as session, session.begin():
        if connection.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"evaluate:{practice.id}"})
        result = evaluate_practice(session, config, practice, as_of, now, silences)
        settle_evaluation(session, practice.id, now)
        return result
