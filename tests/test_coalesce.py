"""A burst of files for one practice queues one evaluation per file; the first evaluates them all and the others
return at once, while a file stored after an evaluation started is still evaluated (issue 18 item 5)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select

from alerts.owed import owe_evaluation
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import AlertEvent
from storage.models import utcnow as now
from tasks.context import current_config
from tasks.evaluate import evaluate_task

PRACTICE = "maple-clinic"


def store(tmp_path: Path, name: str, period: str, value: float) -> None:
    """As the ingest task does it: the file stored, then the evaluation owed."""
    feed = tmp_path / f"{name}.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\n{PRACTICE},claimright,denial_rate,{period},{value}\n")
    result = ingest_path(feed, current_config(), today=dt.date(2026, 11, 20))
    assert result.status == "accepted", result.problems
    with session_scope() as session:
        owe_evaluation(session, result.practices, now())


def events() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(AlertEvent)) or 0


def test_a_burst_is_evaluated_once_and_later_data_again(vw_env: dict[str, str], tmp_path: Path) -> None:
    for number, period in enumerate(("2026-08", "2026-09", "2026-10")):
        store(tmp_path, f"burst-{number}", period, 10.5)  # critical: over the 10% line
    as_of = "2026-11-20"
    first = evaluate_task(practice_id=PRACTICE, as_of=as_of, owed_only=True)
    # Three months over the line: the threshold alert, and the escalation (escalate_after: 3, issue 17), at once.
    assert [(change["kpi"], change["rule"]) for result in first for change in result["changes"]] == [
        ("denial_rate", "threshold"), ("denial_rate", "escalation")]
    told = events()
    for _ in range(2):  # the burst's other two queued evaluations
        assert evaluate_task(practice_id=PRACTICE, as_of=as_of, owed_only=True) == []
    assert events() == told

    store(tmp_path, "later", "2026-10", 8.0)  # a correction after the evaluation: back under every line
    [later] = evaluate_task(practice_id=PRACTICE, as_of=as_of, owed_only=True)
    assert [(change["rule"], change["event"]) for change in later["changes"]] == [
        ("threshold", "resolved"), ("escalation", "resolved")]
    # An evaluation asked for by a person or the schedule runs whatever is owed.
    assert evaluate_task(practice_id=PRACTICE, as_of=as_of) != []
