"""Retention against real PostgreSQL and real files: backdated attempts, alert events and filed files go (in several
batches), recent ones and everything the record needs (observations, revisions, alerts, feed files) stay; a dry run
removes nothing and says what would go; beat runs it daily."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from config.settings import get_settings
from storage.db import get_engine, session_scope, upgrade
from storage.models import (
    Alert,
    AlertEvent,
    DeliveryAttempt,
    FeedFile,
    Notification,
    ObservationRevision,
    ObservationValue,
    Series,
)
from storage.retention import purge
from worker.cli import cli

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
OLD, RECENT = NOW - dt.timedelta(days=500), NOW - dt.timedelta(days=10)
ANCIENT = NOW - dt.timedelta(days=800)  # beyond the 2 years kept of a resolved alert's events


def alert(state: str, resolved_at: dt.datetime | None, kpi: str) -> Alert:
    return Alert(rule="threshold", practice_id="maple-clinic", vendor_id="claimright", kpi=kpi, segment="all",
                 state=state, severity="warning", value=10.0, threshold=9.5, period="2024-01", started_at=ANCIENT,
                 updated_at=ANCIENT, resolved_at=resolved_at)


def events(for_alert: Alert, count: int) -> list[AlertEvent]:
    return [AlertEvent(alert_id=for_alert.id, event="fired", severity="warning", value=10.0, period="2024-01",
                       at=ANCIENT) for _ in range(count)]


def file_at(path: Path, filed: dt.datetime, stamped: bool = True) -> Path:
    """A filed file as intake.ingest.file_away leaves it: its name stamped with the filing time, or (an
    .errors.json, an ignored file) only its modification time telling."""
    name = f"{filed:%Y%m%dT%H%M%S}-{path.name}" if stamped else path.name
    target = path.with_name(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("practice,vendor,kpi,period,value\n", encoding="utf-8")
    os.utime(target, (filed.timestamp(), filed.timestamp()))
    return target


@pytest.fixture
def world(vw_env: dict[str, str]) -> dict[str, list[Path]]:
    """Old and recent rows and files of each kind, plus the values and revisions that must never go."""
    upgrade()
    with session_scope() as session:
        files = [FeedFile(sha256=c * 64, filename=f"{c}.csv", source="inbox", practice_id="maple-clinic",
                          vendor_id="claimright", rows=1, received_at=ANCIENT) for c in "ab"]
        series = Series(practice_id="maple-clinic", vendor_id="claimright", kpi="denial_rate", segment="all")
        session.add_all([*files, series])
        session.flush()
        session.add(ObservationValue(series_id=series.id, period_start=dt.date(2024, 1, 1),
                                     period_end=dt.date(2024, 1, 31), value=9.0, feed_file_id=files[1].id))
        session.add(ObservationRevision(series_id=series.id, period_start=dt.date(2024, 1, 1),
                                        period_end=dt.date(2024, 1, 31), old_value=8.0, new_value=9.0,
                                        old_feed_file_id=files[0].id, new_feed_file_id=files[1].id,
                                        revised_at=ANCIENT))
        long_resolved, lately_resolved = alert("resolved", ANCIENT, "denial_rate"), alert("resolved", RECENT, "a")
        firing = alert("firing", None, "b")
        note = Notification(kind="alert", practice_id="maple-clinic", severity="warning", tags=[], title="t",
                            payload={}, status="sent", created_at=ANCIENT)
        session.add_all([long_resolved, lately_resolved, firing, note])
        session.flush()
        session.add_all(events(long_resolved, 5) + events(lately_resolved, 2) + events(firing, 2))
        session.add_all([DeliveryAttempt(notification_id=note.id, channel_key="k", channel_label="Teams",
                                         outcome="failed", error="HTTP 500", at=at)
                         for at in [OLD] * 5 + [RECENT] * 2])
    settings = get_settings()
    old = [file_at(settings.archive / "maple-clinic" / "claimright" / "jan.csv", OLD),
           file_at(settings.quarantine / "maple-clinic" / "claimright" / "feb.csv", OLD),
           file_at(settings.quarantine / "maple-clinic" / "claimright" / "feb.csv.errors.json", OLD, stamped=False)]
    # Filed lately, though the vendor's file itself is old (its modification time survives the move).
    recent = [file_at(settings.archive / "maple-clinic" / "claimright" / "nov.csv", RECENT)]
    os.utime(recent[0], (OLD.timestamp(), OLD.timestamp()))
    return {"old": old, "recent": recent}


def counts() -> dict[str, int]:
    with session_scope() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (DeliveryAttempt, AlertEvent, Alert, ObservationValue, ObservationRevision, FeedFile)}


def test_dry_run_counts_and_removes_nothing(world: dict[str, list[Path]]) -> None:
    before = counts()
    report = purge(get_settings(), now=NOW, dry_run=True)
    assert (report.files, report.delivery_attempts, report.alert_events) == (3, 5, 5)
    assert sorted(report.file_names) == sorted(str(p) for p in world["old"])
    assert counts() == before and all(path.exists() for path in world["old"] + world["recent"])


def test_purge_removes_only_what_is_older_in_batches_and_logs_it(
        world: dict[str, list[Path]], caplog: pytest.LogCaptureFixture) -> None:
    before = counts()
    statements: list[str] = []
    engine = get_engine()
    from sqlalchemy import event

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with caplog.at_level(logging.INFO, logger="storage.retention"):
            report = purge(get_settings(), now=NOW, batch=2)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert (report.files, report.delivery_attempts, report.alert_events) == (3, 5, 5)
    after = counts()
    assert after["delivery_attempt"] == before["delivery_attempt"] - 5 == 2
    assert after["alert_event"] == before["alert_event"] - 5 == 4  # lately resolved and firing alerts keep theirs
    for kept in ("alert", "observation_value", "observation_revision", "feed_file"):
        assert after[kept] == before[kept]
    assert not any(path.exists() for path in world["old"]) and all(path.exists() for path in world["recent"])
    # 5 rows in batches of 2: three DELETEs per table, each in its own transaction.
    assert sum(s.startswith("DELETE FROM delivery_attempt") for s in statements) == 3
    assert sum(s.startswith("DELETE FROM alert_event") for s in statements) == 3
    [line] = [r.getMessage() for r in caplog.records if r.name == "storage.retention"]
    assert "removed 3 files" in line and "5 delivery attempts" in line and "5 events of alerts" in line
    assert purge(get_settings(), now=NOW).delivery_attempts == 0  # nothing left to do: a second run is a no-op


def test_ages_come_from_the_environment(world: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDORWATCH_RETAIN_ATTEMPTS_DAYS", "5")
    monkeypatch.setenv("VENDORWATCH_RETAIN_FILES_DAYS", "1000")
    get_settings.cache_clear()
    report = purge(get_settings(), now=NOW, dry_run=True)
    assert (report.delivery_attempts, report.files) == (7, 0)


def test_cli_purge_dry_run(world: dict[str, list[Path]]) -> None:
    result = CliRunner().invoke(cli, ["purge", "--dry-run", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Against today's clock: the backdated rows are older than 400 days whatever today is in the test run.
    assert report["dry_run"] is True and report["delivery_attempts"] >= 5 and report["files"] >= 3
    assert all(path.exists() for path in world["old"])
    assert "would remove" in CliRunner().invoke(cli, ["purge", "--dry-run"]).stdout


def test_beat_purges_daily_with_an_expiry() -> None:
    from worker.app import TASK_MODULES, app, beat_schedule

    app.loader.import_default_modules()  # the worker imports the included task modules at start-up
    entry = beat_schedule()["purge-old"]
    assert "tasks.retention" in TASK_MODULES
    assert entry["task"] == "maintenance.purge" and entry["task"] in app.tasks
    assert entry["schedule"].hour == {3} and entry["options"]["expires"] <= 3600  # type: ignore[attr-defined,index]
