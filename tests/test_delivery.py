"""Evaluation writes the outbox; delivery claims it, sends once per target, and records every attempt."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from alerts.delivery import DeliveryIncomplete, claim, deliver
from alerts.evaluate import evaluate_practices
from config import load_config
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import Alert, AlertEvent, DeliveryAttempt, Notification, utcnow
from tests.conftest import TEST_CONFIG
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer

AS_OF = dt.date(2026, 11, 23)


def ingest_value(tmp_path: Path, value: float, period: str = "2026-10") -> None:
    feed = tmp_path / f"denials-{period}-{value}.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,{period},{value}\n")
    result = ingest_path(feed, load_config(TEST_CONFIG), today=AS_OF)
    assert result.status == "accepted", result.problems


def evaluate() -> list[int]:
    results = evaluate_practices(load_config(TEST_CONFIG), as_of=AS_OF)
    return [r.notification_id for r in results if r.notification_id is not None]


def test_a_critical_breach_writes_one_outbox_row_routed_to_teams_and_email(tmp_path: Path, vw_env: dict[str, str],
                                                                           postgres_url: str) -> None:
    ingest_value(tmp_path, 10.4)
    [notification_id] = evaluate()
    with session_scope() as session:
        notification = session.get_one(Notification, notification_id)
        assert notification.tags == ["teams", "email"]
        assert notification.severity == "critical"
        [change] = notification.payload["changes"]
        assert (change["event"], change["kpi"], change["value"], change["threshold"]) == (
            "firing", "denial_rate", 10.4, 10.0)
        alert = session.scalars(select(Alert)).one()
        assert (alert.state, alert.severity, alert.period) == ("firing", "critical", "2026-10")


def test_evaluating_the_same_data_twice_sends_nothing_new(tmp_path: Path, vw_env: dict[str, str]) -> None:
    ingest_value(tmp_path, 10.4)
    assert len(evaluate()) == 1
    assert evaluate() == []
    with session_scope() as session:
        assert len(session.scalars(select(AlertEvent)).all()) == 1


def test_a_warning_is_recorded_but_not_pushed_when_no_route_asks_for_it(tmp_path: Path,
                                                                        vw_env: dict[str, str]) -> None:
    ingest_value(tmp_path, 9.7)
    assert evaluate() == []
    with session_scope() as session:
        alert = session.scalars(select(Alert)).one()
        assert (alert.state, alert.severity) == ("firing", "warning")


def test_a_failing_target_is_retried_and_the_one_that_succeeded_is_not_sent_again(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    teams_server.responder = CapturingHTTPSServer([500, 200]).responder
    ingest_value(tmp_path, 10.4)
    [notification_id] = evaluate()
    config = load_config(TEST_CONFIG)
    with session_scope() as session:
        try:
            deliver(session, config, notification_id)
            raise AssertionError("a 500 from Teams must leave the notification for a retry")
        except DeliveryIncomplete:
            pass
        assert session.get_one(Notification, notification_id).status == "pending"
        report = deliver(session, config, notification_id)
        assert report.skipped == [c.label for c in config.channels if "email" in c.tags]
        outcomes = [(a.channel_label.split("[")[1], a.outcome) for a in session.scalars(
            select(DeliveryAttempt).order_by(DeliveryAttempt.id))]
        assert session.get_one(Notification, notification_id).status == "sent"
    assert outcomes == [("teams]", "failed"), ("email]", "sent"), ("teams]", "sent")]
    assert len(teams_server.wait_for(2)) == 2
    assert len(smtp_server.messages) == 1


def test_a_claimed_notification_cannot_be_claimed_by_a_second_worker(tmp_path: Path, vw_env: dict[str, str]) -> None:
    ingest_value(tmp_path, 10.4)
    [notification_id] = evaluate()
    now = utcnow()
    with session_scope() as first, session_scope() as second:
        assert claim(first, notification_id, now) is True
        assert claim(second, notification_id, now) is False
        assert claim(second, notification_id, now + dt.timedelta(hours=1)) is True, "a stale claim is taken over"


def test_a_resolved_alert_is_announced_to_the_channels_that_heard_it_fire(tmp_path: Path,
                                                                         vw_env: dict[str, str]) -> None:
    ingest_value(tmp_path, 10.4, "2026-09")
    evaluate()
    ingest_value(tmp_path, 9.1, "2026-10")
    [notification_id] = evaluate()
    with session_scope() as session:
        notification = session.get_one(Notification, notification_id)
        assert notification.tags == ["teams", "email"]
        assert [c["event"] for c in notification.payload["changes"]] == ["resolved"]
        threshold_alert = session.scalars(select(Alert).where(Alert.rule == "threshold")).one()
        assert threshold_alert.state == "resolved"


def test_evaluating_twice_on_the_embedded_sqlite_database_sends_nothing_new(
    tmp_path: Path, vw_env: dict[str, str], monkeypatch: object
) -> None:
    """SQLite hands back naive datetimes unless the model converts them; the repeat check must still work."""
    from storage.db import upgrade
    from tests.conftest import reset_caches

    sqlite_url = f"sqlite:///{tmp_path / 'embedded.sqlite'}"
    monkeypatch.setenv("VENDORWATCH_DATABASE_URL", sqlite_url)  # type: ignore[attr-defined]
    reset_caches()
    upgrade(sqlite_url)
    ingest_value(tmp_path, 10.4)
    assert len(evaluate()) == 1
    assert evaluate() == []
    with session_scope() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.last_notified_at is not None and alert.last_notified_at.tzinfo is not None
