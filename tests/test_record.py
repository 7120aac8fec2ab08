"""The portfolio view, part two: a vendor's record on a KPI over time, and the escalation a long breach raises
(issue 17 item 2). The figures against values worked out by hand; the escalation through the real path
(tests/test_timelines.py's month-by-month ingest and evaluation on PostgreSQL), routed and worded like any other
alert, once per evaluation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from alerts.messages import render_alert
from alerts.record import Record, escalation_verdict, improving, record_of
from alerts.rules import Point, Thresholds
from storage.periods import parse_period
from tests.test_escaping import (
    ALERT_ELEMENTS,
    HOSTILE,
    as_slack_receives,
    html_problems,
    markdown_problems,
    slack_problems,
    text_problems,
)
from tests.test_timelines import (
    NOTHING,
    PUSHED,
    Event,
    database_url,
    environment,
    new_timeline,
    threshold,
    timeline_database,
)

__all__ = ["database_url", "environment", "timeline_database"]  # fixtures, imported for pytest

# denial_rate as the catalog has it with an override: lower is better, warning above 8, critical above 10.
DENIAL = Thresholds(better="lower", warn=8.0, crit=10.0, for_periods=1)
GO_LIVE = dt.date(2025, 1, 1)


def points(values: dict[str, float]) -> list[Point]:
    return [Point(label, (p := parse_period(label)).start, p.end, value) for label, value in values.items()]


def monthly(first_year: int, first_month: int, values: list[float]) -> dict[str, float]:
    found = {}
    for offset, value in enumerate(values):
        year, month = divmod(first_month - 1 + offset, 12)
        found[f"{first_year + year:04d}-{month + 1:02d}"] = value
    return found


def escalation(event: str) -> Event:
    return ("escalation", event, "critical")


def test_the_record_of_the_last_12_months_by_hand() -> None:
    # 14 months after go-live; the record keeps the last 12 (2025-03 .. 2026-02):
    #   4.0 6.0 9.0 10.5 9.2 7.0 4.5 8.5 9.0 11.0 12.0 9.5
    # in breach (> 8): 9.0 10.5 9.2 | 8.5 9.0 11.0 12.0 9.5 -> runs 3 and 5, the latest run 5, the longest 5.
    # within the 5.0 target: 4.0 and 4.5 -> 2 of 12.
    values = [3.0, 3.5, 4.0, 6.0, 9.0, 10.5, 9.2, 7.0, 4.5, 8.5, 9.0, 11.0, 12.0, 9.5]
    record = record_of(points(monthly(2025, 1, values)), DENIAL, 5.0, GO_LIVE)

    assert [mark.period for mark in record.months][::11] == ["2025-03", "2026-02"]
    assert (record.within_target, record.breach_run, record.longest_run) == (2, 5, 5)
    # Getting better: the last 3 months' mean (11.0 + 12.0 + 9.5) / 3 = 10.83 against the 3 before
    # (4.5 + 8.5 + 9.0) / 3 = 7.33: worse, so not improving.
    assert improving(record, "lower") is False


def test_months_before_go_live_are_not_the_vendors_and_a_missing_month_breaks_a_run() -> None:
    # 2024-11 and 2024-12 are before go-live (in breach, but the practice's own); 2025-03 is missing.
    values = {"2024-11": 11.0, "2024-12": 11.0, "2025-01": 9.0, "2025-02": 9.0, "2025-04": 9.0, "2025-05": 9.5}
    record = record_of(points(values), DENIAL, None, GO_LIVE)

    assert [mark.period for mark in record.months] == ["2025-01", "2025-02", "2025-04", "2025-05"]
    assert (record.breach_run, record.longest_run, record.within_target) == (2, 2, 0)  # no target: not in breach
    assert improving(record, "lower") is None  # fewer than 6 months


def test_higher_is_better_and_improving() -> None:
    # net collection rate: warning under 96. Months: 94 95 95.5 | 96.5 97 97.5.
    rate = Thresholds(better="higher", warn=96.0, crit=94.0, for_periods=1)
    record = record_of(points(monthly(2025, 1, [94.0, 95.0, 95.5, 96.5, 97.0, 97.5])), rate, 97.0, GO_LIVE)

    assert (record.breach_run, record.longest_run, record.within_target) == (0, 3, 2)  # 97.0 and 97.5
    assert improving(record, "higher") is True  # 97.0 against 94.83


def test_escalation_is_critical_from_escalate_after_months_running() -> None:
    latest = points({"2025-06": 9.0})[0]
    for run, severity in ((2, None), (3, "critical"), (4, "critical")):
        record = record_of(points(monthly(2025, 7 - run, [9.0] * run)), DENIAL, None, GO_LIVE)
        verdict = escalation_verdict(record, 3, latest)
        assert (verdict.severity, verdict.value, verdict.threshold, verdict.held) == (severity, run, 3.0, True)
    assert escalation_verdict(Record(()), 3, latest).severity is None


# -- through evaluation -----------------------------------------------------------------------------------------
# tests/test_timelines.py's practice: go-live 2025-07-01, learning period 2025-07 and 2025-08, evaluated on day 15
# of the next month, criticals pushed to Teams and email.


def test_a_breach_of_three_months_escalates_once_routed_and_worded_like_any_alert(
        tmp_path: Path, database_url: str, environment: None) -> None:
    timeline = new_timeline(tmp_path, database_url, "denial_rate", overrides={"denial_rate": {"trend_periods": 0}})
    rows = timeline.run([("2025-07", 9.5), ("2025-08", 9.5), ("2025-09", 9.0), ("2025-10", 9.5),
                         ("2025-11", 9.2), ("2025-12", 9.4), ("2026-01", 7.0)])

    assert rows == [
        ("2025-07", 9.5, [threshold("firing", "warning")], None),  # learning: its months never count
        ("2025-08", 9.5, [threshold("repeat", "warning")], None),
        ("2025-09", 9.0, [threshold("repeat", "warning")], None),  # run 1 (the test routes push criticals only)
        ("2025-10", 9.5, [threshold("repeat", "warning")], None),  # run 2
        ("2025-11", 9.2, [threshold("repeat", "warning"), escalation("firing")], PUSHED),  # run 3: escalate
        ("2025-12", 9.4, [threshold("repeat", "warning"), escalation("repeat")], PUSHED),  # like any alert
        ("2026-01", 7.0, [threshold("resolved", "warning"), escalation("resolved")], PUSHED),
    ]
    escalated = timeline.months[4]
    [change] = [c for c in escalated.payload["changes"] if c["rule"] == "escalation"]
    assert (change["value"], change["threshold"], change["severity"]) == (3.0, 3.0, "critical")
    assert "Birch Family Practice: LedgerLine Initial denial rate, in breach 3 months running" in escalated_title(
        timeline.database_url, escalated.notification_id)
    text = " ".join(render_alert(escalated.payload, "t", "text").body.split())
    assert ("Critical: Initial denial rate (escalation), LedgerLine In breach for 3 months running, through Nov "
            "2025: escalate per the contract. Next step: Escalate per the contract: write to LedgerLine") in text
    teams = render_alert(escalated.payload, "t", "teams").body
    assert "escalate per the contract" in teams
    # Once per evaluation: one escalation change in the message, however many rules fired on the KPI.
    assert [c["rule"] for c in timeline.months[5].payload["changes"]].count("escalation") == 1


def escalated_title(database_url: str, notification_id: int | None) -> str:
    from storage.db import session_scope
    from storage.models import Notification

    with session_scope(database_url) as session:
        return session.get_one(Notification, notification_id).title


@pytest.mark.parametrize("after", [4, 0])
def test_escalate_after_is_configurable_and_zero_turns_it_off(after: int, tmp_path: Path, database_url: str,
                                                               environment: None) -> None:
    timeline = new_timeline(tmp_path, database_url, "denial_rate",
                            overrides={"denial_rate": {"trend_periods": 0, "escalate_after": after}})
    rows = timeline.run([("2025-09", 9.0), ("2025-10", 9.5), ("2025-11", 9.2), ("2025-12", 9.4)])

    escalations = [(period, [e for e in events if e[0] == "escalation"]) for period, _, events, _ in rows]
    expected_last = [escalation("firing")] if after == 4 else NOTHING
    assert escalations == [("2025-09", []), ("2025-10", []), ("2025-11", []), ("2025-12", expected_last)]


def test_the_digest_states_the_escalation_in_its_own_words(tmp_path: Path, database_url: str,
                                                           environment: None) -> None:
    from digest.build import build_digest
    from digest.render import render_digest
    from storage.db import session_scope

    timeline = new_timeline(tmp_path, database_url, "denial_rate", overrides={"denial_rate": {"trend_periods": 0}})
    timeline.run([("2025-09", 9.0), ("2025-10", 9.5), ("2025-11", 9.2), ("2025-12", 10.4)])
    practice = timeline.config.practices[0]
    with session_scope(database_url) as session:
        digest = build_digest(session, timeline.config, practice, "2026-W03",
                              dt.datetime(2026, 1, 12, 14, tzinfo=dt.UTC))
    text = " ".join(render_digest(digest).text.split())

    # 2025-12 is critical on its own (10.4 > 10) and the fourth month in breach: the verdict states the value,
    # the huddle's first point the escalation, and the alerts list both.
    assert [a.rule for a in digest.open_alerts] == ["threshold", "escalation"]
    assert "(2026-W03) Action needed: LedgerLine initial denial rate is 10.4%, over the 10.0% limit 2 critical" in text
    assert ("Critical: LedgerLine, initial denial rate in breach for 4 months running through Dec 2025: escalate "
            "per the contract") in text
    assert ("1. LedgerLine's initial denial rate has been in breach for 4 months running through Dec 2025: escalate "
            "per the contract. Write to LedgerLine citing the months in breach") in text


def test_the_scorecard_states_the_record_of_a_kpi_that_breached_lately(tmp_path: Path, database_url: str,
                                                                       environment: None) -> None:
    from digest.build import build_digest
    from digest.render import render_digest
    from storage.db import session_scope

    timeline = new_timeline(tmp_path, database_url, "denial_rate",
                            overrides={"denial_rate": {"trend_periods": 0, "target": 8.5}})
    # After go-live (2025-07): 9.5 9.5 7.0 8.0 9.0 9.4 8.2 7.5 -> in breach (> 8): 9.5 9.5 | 9.0 9.4 | 8.2:
    # runs 2 and 3, the latest run 0 (7.5); within the 8.5 target: 7.0 8.0 8.2 7.5 -> 4 of 8.
    # Getting better: (9.4 + 8.2 + 7.5) / 3 = 8.37 against (7.0 + 8.0 + 9.0) / 3 = 8.0: worse.
    timeline.run([("2025-07", 9.5), ("2025-08", 9.5), ("2025-09", 7.0), ("2025-10", 8.0), ("2025-11", 9.0),
                  ("2025-12", 9.4), ("2026-01", 8.2), ("2026-02", 7.5)])
    with session_scope(database_url) as session:
        digest = build_digest(session, timeline.config, timeline.config.practices[0], "2026-W12",
                              dt.datetime(2026, 3, 16, 14, tzinfo=dt.UTC))
    [row] = digest.vendors[0].rows
    assert row.record is not None
    assert (row.record.within_target, row.record.breach_run, row.record.longest_run, row.getting_better) == (
        4, 0, 3, False)
    text = " ".join(render_digest(digest).text.split())
    assert "Last 8 months: 4 within target; longest breach 3 months; getting worse" in text


@pytest.mark.parametrize("hostile", list(HOSTILE.values()), ids=list(HOSTILE.keys()))
def test_hostile_names_in_an_escalation_are_escaped_for_every_channel(hostile: str) -> None:
    from dataclasses import asdict

    from alerts.lifecycle import Change, message_title

    vendor, kpi = f"Acme {hostile} RCM", f"Initial denial rate {hostile}"
    change = Change(alert_id=1, event="firing", severity="critical", previous_severity=None, practice="p",
                    vendor="acme", vendor_name=vendor, kpi="denial_rate", kpi_label=kpi, unit="%", better="lower",
                    segment="payer:Aetna", value=4.0, threshold=3.0, period="2026-10", learning=False,
                    rule="escalation")
    payload = {"practice": "p", "practice_name": f"Maple {hostile}", "changes": [asdict(change)]}
    title = message_title(payload)
    names = [vendor, kpi]
    problems = [f"title: {p}" for p in text_problems(title, hostile, [f"Maple {hostile}"])]
    problems += [f"teams: {p}" for p in markdown_problems(render_alert(payload, title, "teams").body, hostile,
                                                             names)]
    slack = as_slack_receives(render_alert(payload, title, "slack").body)
    problems += [f"slack: {p}" for p in slack_problems(slack, hostile, names)]
    problems += [f"email: {p}" for p in html_problems(render_alert(payload, title, "email").body, hostile, names,
                                                      ALERT_ELEMENTS)]
    problems += [f"text: {p}" for p in text_problems(render_alert(payload, title, "text").body, hostile, names)]
    assert "in breach 4 months running" in title
    assert not problems, "\n".join(problems)
