"""'Reported figure disagrees with remittances' (issue 16): the vendor's denial rate and net collections for a month
against the payers' 835s of that month, through the same lifecycle, outbox, routes and learning period as every
rule. Practice oakridge-fm, vendor acme-billing (go-live 2026-03-01, learning period 60 days)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from alerts.evaluate import evaluate_practices
from alerts.messages import render_alert
from alerts.remits_check import REMITS_RULE
from config import BUNDLED_DIR, Config, load_config
from config.schema import RemitTolerance
from digest.build import build_digest
from digest.render import render_digest
from intake.ingest import ingest_path
from remits.synthetic import Adjustment, Claim, Remittance, render_835
from remits.verify import compare
from storage.db import session_scope
from storage.models import Alert, Notification
from tests.test_remits import KEY, PRACTICE

VENDOR = "acme-billing"
TOLERANCE = RemitTolerance()


@pytest.mark.parametrize(("reported", "remitted", "unit", "claims", "severity"), [
    (8.5, 10.0, "%", 40, None),  # 1.5 points: at the line, not beyond it
    (8.4, 10.0, "%", 40, "warning"),  # 1.6 points
    (7.0, 10.0, "%", 40, "warning"),  # 3.0 points: twice the line, not beyond it
    (6.9, 10.0, "%", 40, "critical"),  # 3.1 points
    (6.1, 10.0, "%", 29, "skip"),  # under 30 remitted claims: not judged
    (103_000, 100_000, "USD", 40, None),  # 3%
    (104_000, 100_000, "USD", 40, "warning"),  # 4%
    (93_000, 100_000, "USD", 40, "critical"),  # 7%
])
def test_compare_warns_beyond_the_tolerance_and_is_critical_beyond_twice_it(
    reported: float, remitted: float, unit: str, claims: int, severity: str | None
) -> None:
    check = compare(reported, remitted, unit, claims, TOLERANCE)

    if severity == "skip":
        assert check is None
    else:
        assert check is not None and check.severity == severity


def month_of_claims(paid_on: dt.date, claims: int, denied: int, prefix: str, carc: str = "197") -> Remittance:
    """`claims` claims of $100 paid on `paid_on`, the first `denied` of them denied (CARC 197: authorization)."""
    made = [Claim(f"{prefix}{n}", "4", Decimal(100), Decimal(0), service_date=paid_on - dt.timedelta(days=20),
                  line_adjustments=(Adjustment("CO", carc, Decimal(100)),)) for n in range(denied)]
    made += [Claim(f"{prefix}{n}", "1", Decimal(100), Decimal(100), service_date=paid_on - dt.timedelta(days=20))
             for n in range(denied, claims)]
    return Remittance("Northwind Health", "NWH01", paid_on, claims=made)


def ingest_month(tmp_path: Path, config: Config, url: str, paid_on: dt.date, claims: int, denied: int,
                 reported: float, carc: str = "197") -> None:
    era = tmp_path / f"era-{paid_on}.835"
    era.write_bytes(render_835([month_of_claims(paid_on, claims, denied, f"M{paid_on:%m}-", carc)]))
    feed = tmp_path / f"acme-{paid_on:%Y-%m}.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\n{PRACTICE},{VENDOR},denial_rate,{paid_on:%Y-%m},{reported}\n")
    for path in (era, feed):
        result = ingest_path(path, config, database_url=url, practice=PRACTICE, today=dt.date(2026, 10, 1))
        assert result.status == "accepted", result.problems


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("VENDORWATCH_REMIT_KEY", KEY)
    return load_config(BUNDLED_DIR)


def remits_alerts(url: str) -> list[tuple[str, str, str, float, float | None]]:
    with session_scope(url) as session:
        rows = session.scalars(select(Alert).where(Alert.rule == REMITS_RULE).order_by(Alert.id))
        return [(a.kpi, a.state, a.severity, a.value, a.threshold) for a in rows]


def test_a_vendor_rate_far_below_the_remittances_fires_critical_and_is_pushed_with_both_figures(
    tmp_path: Path, postgres_url: str, config: Config
) -> None:
    # 40 remitted claims in September, 4 denied on first pass: 10.0%; Acme reports 6.1% (3.9 points off)
    ingest_month(tmp_path, config, postgres_url, dt.date(2026, 9, 15), 40, 4, 6.1)

    [result] = evaluate_practices(config, practice_id=PRACTICE, as_of=dt.date(2026, 10, 5), database_url=postgres_url)

    assert remits_alerts(postgres_url) == [("denial_rate", "firing", "critical", 6.1, 10.0)]
    [change] = [c for c in result.changes if c.rule == REMITS_RULE]
    assert (change.learning, change.expected) == (False, 10.0)
    with session_scope(postgres_url) as session:
        notification = session.get(Notification, result.notification_id)
        assert notification is not None
        text = render_alert(notification.payload, notification.title, "text").body
    assert "Initial denial rate (checked against remittances)" in text
    assert "6.1% for Sep 2026, but the payers' remittances show 10.0%" in text


def test_agreement_or_too_few_claims_opens_nothing_and_a_practice_override_widens_the_tolerance(
    tmp_path: Path, postgres_url: str, config: Config
) -> None:
    ingest_month(tmp_path, config, postgres_url, dt.date(2026, 8, 14), 40, 4, 9.0)  # 1.0 point off: agrees
    ingest_month(tmp_path, config, postgres_url, dt.date(2026, 9, 15), 29, 9, 6.1)  # 29 claims: not judged

    evaluate_practices(config, practice_id=PRACTICE, as_of=dt.date(2026, 10, 5), database_url=postgres_url)
    assert remits_alerts(postgres_url) == []

    directory = tmp_path / "config"
    directory.mkdir()
    practices = yaml.safe_load((BUNDLED_DIR / "practices.yaml").read_text())
    practices["practices"][0]["remits"] = {"rate_points": 5, "min_claims": 20}
    (directory / "practices.yaml").write_text(yaml.safe_dump(practices))
    (directory / "channels.yaml").write_text((BUNDLED_DIR / "channels.yaml").read_text())
    # with 20 claims enough, September (9 of 29 denied: 31.03%, against 6.1%) is judged: 24.93 points, critical
    evaluate_practices(load_config(directory), practice_id=PRACTICE, as_of=dt.date(2026, 10, 5),
                       database_url=postgres_url)
    assert remits_alerts(postgres_url) == [("denial_rate", "firing", "critical", 6.1, 31.03)]


def test_in_the_learning_period_a_disagreement_warning_goes_to_the_digest_only(
    tmp_path: Path, postgres_url: str, config: Config
) -> None:
    # March 2026 is in Acme's first 60 days: 40 claims, 4 denied (10.0%), Acme reports 8.0% (2.0 points: warning)
    ingest_month(tmp_path, config, postgres_url, dt.date(2026, 3, 20), 40, 4, 8.0)

    [result] = evaluate_practices(config, practice_id=PRACTICE, as_of=dt.date(2026, 4, 5), database_url=postgres_url)

    assert remits_alerts(postgres_url) == [("denial_rate", "firing", "warning", 8.0, 10.0)]
    [change] = [c for c in result.changes if c.rule == REMITS_RULE]
    assert change.learning is True
    with session_scope(postgres_url) as session:
        pushed = session.scalars(select(Notification)).all()
        assert not any(c["rule"] == REMITS_RULE for n in pushed for c in n.payload["changes"])


def test_the_digest_shows_each_verifiable_kpi_against_the_remittances_and_the_denial_reasons(
    tmp_path: Path, postgres_url: str, config: Config
) -> None:
    # before go-live (January): 4 of 40 denied, all timely filing (CARC 29); September: 4 of 40, all missing
    # information (CARC 16), and Acme reports 6.1% against the remittances' 10.0%; August agrees (9.0 vs 10.0)
    ingest_month(tmp_path, config, postgres_url, dt.date(2026, 1, 20), 40, 4, 9.5, carc="29")
    ingest_month(tmp_path, config, postgres_url, dt.date(2026, 8, 14), 40, 4, 9.0)
    ingest_month(tmp_path, config, postgres_url, dt.date(2026, 9, 15), 40, 4, 6.1, carc="16")
    practice = config.practice(PRACTICE)
    assert practice is not None
    evaluate_practices(config, practice_id=PRACTICE, as_of=dt.date(2026, 10, 5), database_url=postgres_url)

    with session_scope(postgres_url) as session:
        digest = build_digest(session, config, practice, "2026-W41", dt.datetime(2026, 10, 5, 18, tzinfo=dt.UTC))
    text = " ".join(render_digest(digest).text.split())
    html = render_digest(digest).html

    assert "vendor reports 6.1%, remittances show 10.0% (40 remitted claims)" in text
    assert "vendor reports 6.1%, remittances show 10.0% (40 remitted claims)" in html
    assert "Acme RCM, initial denial rate 6.1%" in text and "while the payers' remittances show 10.0%" in text
    assert digest.denial_reasons is not None
    assert [(r.payer, r.category, r.count, r.share, r.before_share) for r in digest.denial_reasons.rows] == [
        ("all payers", "missing information", 4, 100.0, 0.0),
        ("Northwind Health", "missing information", 4, 100.0, 0.0)]
    assert "DENIAL REASONS, SEP 2026 (4 of 40 remitted claims denied)" in text
    assert "Northwind Health: missing information, 100.0% of denials (4); before go-live 0.0%" in text
    # September's missing information is preventable (front end), January's timely filing is not
    assert "Preventable denials (eligibility, authorization, coding, missing information): 100.0% of this month's, " \
           "0.0% before go-live." in text
