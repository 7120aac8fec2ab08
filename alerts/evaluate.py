"""Evaluate one practice or all of them: many practices to a transaction, each still judged on its own."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from itertools import islice

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from alerts.decide import SilenceWindow
from alerts.lifecycle import EvaluationResult, active_silences, evaluate_together
from alerts.owed import settle_evaluation
from config import Config, ConfigError, Practice
from remits.summary import practices_with_months
from storage.db import get_engine
from storage.models import utcnow

log = logging.getLogger(__name__)

# Practices judged in one transaction. A commit per practice cost a WAL flush each: on this machine's disk most of
# a first evaluation's time (bench/README.md, "bench.evaluate"). 50 hold their locks for well under a second.
PRACTICES_PER_TRANSACTION = 50


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
    # much as a practice's own queries.
    with get_engine(database_url).connect() as connection:
        silences = read_silences(connection, now)
        results: list[EvaluationResult] = []
        for batch in batches(practices, PRACTICES_PER_TRANSACTION):
            results += evaluate_batch(connection, config, batch, as_of, now, silences)
        return results


def batches(practices: Sequence[Practice], size: int) -> Iterator[list[Practice]]:
    iterator = iter(practices)
    while batch := list(islice(iterator, size)):
        yield batch


def read_silences(connection: Connection, now: dt.datetime) -> list[SilenceWindow]:
    """The silences active at `now`, read once per run rather than once per practice: the table is global and
    small, and `now` is fixed for the run."""
    with Session(bind=connection) as session, session.begin():
        return active_silences(session, now)


def evaluate_batch(connection: Connection, config: Config, practices: Sequence[Practice], as_of: dt.date,
                   now: dt.datetime, silences: list[SilenceWindow]) -> list[EvaluationResult]:
    """Practices judged and committed together. Should any of them fail, the batch is rolled back and its
    practices evaluated again one at a time, so each commits, or rolls back, on its own as it always has, and the
    one that fails raises as before."""
    if len(practices) == 1:
        return evaluate_in_transaction(connection, config, practices, as_of, now, silences)
    try:
        return evaluate_in_transaction(connection, config, practices, as_of, now, silences)
    except Exception as error:  # any failure: retried practice by practice, where it raises again
        log.warning("evaluation of %d practices together failed (%s); evaluating them one at a time",
                    len(practices), type(error).__name__)
        return [evaluate_in_transaction(connection, config, [practice], as_of, now, silences)[0]
                for practice in practices]


def evaluate_in_transaction(connection: Connection, config: Config, practices: Sequence[Practice], as_of: dt.date,
                            now: dt.datetime, silences: list[SilenceWindow]) -> list[EvaluationResult]:
    """Practices in one transaction: committed on success, rolled back on any error. On PostgreSQL two evaluations
    of one practice take turns (transaction-scoped advisory locks, taken in one order so that two batches never wait
    on each other): run side by side, both would insert the same new alert and one would fail on its unique key."""
    ids = [practice.id for practice in practices]
    with Session(bind=connection, expire_on_commit=False) as session, session.begin():
        if connection.dialect.name == "postgresql":
            lock_and_tune(session, ids)
        results = evaluate_together(session, config, practices, as_of, now, silences,
                                    practices_with_months(session, ids))
        settle_evaluation(session, ids, now)
        return results


def lock_and_tune(session: Session, practice_ids: list[str]) -> None:
    """The practices' advisory locks, ordered by the lock's number, not the name: two names may share a number. In
    the same round trip, for this transaction only: no JIT compilation (the batch read's estimated cost passes
    jit_above_cost, and compiling took longer than running it); room to sort a batch's values in memory; and no
    sequential scans. Every statement here looks rows up by key, but with `alert` empty, as before a first
    evaluation, PostgreSQL planned the foreign key check of each new event as a scan of `alert`, and kept that plan
    while the run filled the table: 1.0 s of a first evaluation's 2,000 practices (6,163 events; 0.01 s by the
    index)."""
    session.execute(text("SELECT set_config('jit', 'off', true), set_config('work_mem', '32MB', true), "
                         "set_config('enable_seqscan', 'off', true), "
                         "pg_advisory_xact_lock(lock) FROM (SELECT hashtext('evaluate:' || id) AS lock "
                         "FROM unnest(CAST(:ids AS text[])) AS id ORDER BY lock) AS ordered"), {"ids": practice_ids})
