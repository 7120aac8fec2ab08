"""A missing feed fires 'feed late' past its grace days, escalates when a second period goes missing, and
resolves when the feed arrives."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from alerts.delivery import deliver
from alerts.evaluate import evaluate_practices
from config import load_config
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import Alert, Notification
from tests.conftest import TEST_CONFIG
from tests.support.tls_capture import CapturingHTTPSServer


def ingest_month(tmp_path: Path, period: str) -> None:
    feed = tmp_path / f"claimright-{period}.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,days_in_ar,{period},38\n")
    assert ingest_path(feed, load_config(TEST_CONFIG), today=dt.date(2026, 12, 31)).status == "accepted"


def evaluate_on(day: str) -> list[dict[str, object]]:
    [result] = evaluate_practices(load_config(TEST_CONFIG), as_of=dt.date.fromisoformat(day),
                                  now=dt.datetime.fromisoformat(day + "T12:00:00+00:00"))
    return [change.__dict__ for change in result.changes]


def feed_alert() -> Alert | None:
    with session_scope() as session:
        return session.scalars(select(Alert).where(Alert.rule == "freshness")).one_or_none()


def test_a_feed_is_on_time_until_its_grace_days_have_passed(tmp_path: Path, vw_env: dict[str, str]) -> None:
    ingest_month(tmp_path, "2026-09")
    assert evaluate_on("2026-11-13") == []  # 2026-10 is due on the 10th, with 3 days' grace
    assert feed_alert() is None


def test_a_late_feed_warns_then_escalates_then_resolves_when_it_arrives(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer
) -> None:
    ingest_month(tmp_path, "2026-09")
    [late] = evaluate_on("2026-11-14")
    assert (late["event"], late["severity"], late["period"], late["due_on"]) == ("firing", "warning", "2026-10",
                                                                              "2026-11-10")
    alert = feed_alert()
    assert alert is not None and (alert.state, alert.severity) == ("firing", "warning")

    [escalated] = evaluate_on("2026-12-14")
    assert (escalated["event"], escalated["severity"]) == ("severity_changed", "critical")
    with session_scope() as session:
        notification = session.scalars(select(Notification)).one()
        assert notification.tags == ["teams", "email"]
        deliver(session, load_config(TEST_CONFIG), notification.id)
    card = str(teams_server.wait_for(1)[0].json())
    assert "ClaimRight Billing has not sent Oct 2026" in card and "due Nov 10, 2026" in card

    ingest_month(tmp_path, "2026-10")
    ingest_month(tmp_path, "2026-11")
    [arrived] = evaluate_on("2026-12-14")
    assert (arrived["event"], arrived["rule"]) == ("resolved", "freshness")
    alert = feed_alert()
    assert alert is not None and alert.state == "resolved"


def test_a_vendor_that_never_sent_anything_is_late_from_its_go_live_month(vw_env: dict[str, str]) -> None:
    changes = evaluate_on("2025-02-14")  # ClaimRight went live 2025-01-01; January was due 2025-02-10
    assert [(c["rule"], c["period"], c["severity"]) for c in changes] == [("freshness", "2025-01", "warning")]
