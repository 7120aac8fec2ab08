"""Evaluate one practice or all of them, each in its own transaction."""

from __future__ import annotations

import datetime as dt

from alerts.lifecycle import EvaluationResult, evaluate_practice
from config import Config, ConfigError
from storage.db import session_scope
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
    results = []
    for practice in practices:
        with session_scope(database_url) as session:
            results.append(evaluate_practice(session, config, practice, as_of, now))
    return results
