"""A feed that arrives months after its period is news: it is judged when it comes (a breach in it alerts), and
every channel says how late it came. Data already known for longer than a feed on time would be judged stays
quiet, as before."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from alerts.evaluate import evaluate_practices
from alerts.messages import FAMILIES, render_alert
from config import load_config
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import FeedFile, Notification
from tests.conftest import TEST_CONFIG
from tests.test_dates_and_wording import words

JUNE_END = dt.date(2026, 6, 30)


def ingest_june(tmp_path: Path) -> dt.date:
    """June's initial denial rate, 13% (over the clinic's 10% critical line), delivered today; the practice-local
    day it arrived."""
    path = tmp_path / "claimright-2026-06.csv"
    path.write_text("practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,2026-06,13\n",
                    encoding="utf-8")
    assert ingest_path(path, load_config(TEST_CONFIG), today=dt.date(2026, 12, 31)).status == "accepted"
    with session_scope() as session:
        received = session.scalars(select(FeedFile.received_at)).one()
    return received.astimezone(ZoneInfo("America/Denver")).date()


def test_a_feed_months_late_alerts_and_every_channel_says_when_it_came(
    tmp_path: Path, vw_env: dict[str, str]
) -> None:
    received = ingest_june(tmp_path)
    assert (received - JUNE_END).days > 62  # past the window in which a monthly value counts as current

    [result] = evaluate_practices(load_config(TEST_CONFIG), as_of=received, now=dt.datetime.now(dt.UTC))

    [breach] = [c for c in result.changes if c.kpi == "denial_rate"]
    assert (breach.event, breach.severity, breach.period) == ("firing", "critical", "2026-06")
    late = (f"13.0% for Jun 2026 (reported on {received:%b} {received.day}, {received.year}, "
            f"{(received - JUNE_END).days} days after the period ended), above the 10.0% threshold")
    with session_scope() as session:
        notification = session.get(Notification, result.notification_id)
        assert notification is not None
        bodies = {family: render_alert(notification.payload, notification.title, family).body
                  for family in FAMILIES}
    for family, body in bodies.items():
        assert late in words(body), (family, body)


def test_late_data_is_news_for_as_long_as_data_on_time_would_be(tmp_path: Path, vw_env: dict[str, str]) -> None:
    received = ingest_june(tmp_path)
    later = received + dt.timedelta(days=63)

    [result] = evaluate_practices(load_config(TEST_CONFIG), as_of=later,
                                  now=dt.datetime.combine(later, dt.time(18), tzinfo=dt.UTC))

    assert [c.kpi for c in result.changes if c.rule != "freshness"] == []
