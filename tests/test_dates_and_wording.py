"""Every date leadership reads is the right one, said the same way in every channel: the month a late feed was
missing, 'on' a day and 'in' a month, whole days for a missed check-in, a digest dated in its own week that never
says a feed arrived after that date, pulse alerts beside the same pulse as the pulse table, and survey ingest
counting people as responses. Each test reads the rendered text (each channel's message, the digest's parts)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from alerts.evaluate import evaluate_practices
from alerts.formats import format_when
from alerts.lifecycle import Change
from alerts.messages import FAMILIES, render_alert
from config import Config, load_config
from digest.build import build_digest
from digest.render import RenderedDigest, render_digest
from digest.schedule import iso_week, week_bounds
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import FeedFile, Observation, PulseSurvey
from tests.conftest import FIXTURES, TEST_CONFIG, subprocess_env
from tests.test_pulse_support import config_with, google_export, pine_clinic, staff, write_export
from tests.worker_process import vendorwatch

PRACTICE = "maple-clinic"  # tests/fixtures/config: ClaimRight Billing, monthly, due on the 10th, 3 days' grace
DENVER = ZoneInfo("America/Denver")


def feed(tmp_path: Path, name: str, *rows: tuple[str, str, str]) -> None:
    """A long CSV of (kpi, period, value) rows for ClaimRight, through the real ingest."""
    lines = ["practice,vendor,kpi,period,value", *(f"{PRACTICE},claimright,{k},{p},{v}" for k, p, v in rows)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ingest_path(path, load_config(TEST_CONFIG), today=dt.date(2026, 12, 31))
    assert result.status == "accepted", result.problems


def months(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    labels = []
    while f"{year}-{month:02d}" <= last:
        labels.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return labels


def evaluate(config: Config, day: str, database_url: str | None = None) -> list[Change]:
    now = dt.datetime.fromisoformat(day + "T18:00:00+00:00")
    results = evaluate_practices(config, as_of=dt.date.fromisoformat(day), now=now, database_url=database_url)
    return [change for result in results for change in result.changes]


def messages(change: Change, practice_name: str) -> dict[str, str]:
    """The message body each channel family would be sent for this one change."""
    payload = {"practice": change.practice, "practice_name": practice_name, "changes": [asdict(change)]}
    return {family: render_alert(payload, "title", family).body for family in FAMILIES}


def digest(config: Config, practice_id: str, week: str, now: dt.datetime,
           database_url: str | None = None) -> RenderedDigest:
    practice = config.practice(practice_id)
    assert practice is not None
    with session_scope(database_url) as session:
        return render_digest(build_digest(session, config, practice, week, now))


def words(text: str) -> str:
    """Text with its line wrapping undone and HTML tags and the entities the templates use removed."""
    text = re.sub(r"<[^>]+>", " ", text).replace("&#39;", "'").replace("&amp;", "&")
    return " ".join(text.split())


@pytest.mark.parametrize(("period", "said"), [
    ("2026-10", "in Oct 2026"),
    ("2026-10-28", "on Oct 28, 2026"),
    ("2026-W44", "in week 2026-W44"),
    ("2026-10-01..2026-10-15", "from Oct 1, 2026 to Oct 15, 2026"),
    (dt.date(2026, 12, 7), "on Dec 7, 2026"),
])  # fmt: skip
def test_a_period_takes_on_for_a_day_and_in_for_a_month(period: str | dt.date, said: str) -> None:
    assert format_when(period) == said


def test_a_feed_that_arrives_names_the_month_that_was_missing_in_every_channel_and_the_digest(
    tmp_path: Path, vw_env: dict[str, str]
) -> None:
    config = load_config(TEST_CONFIG)
    feed(tmp_path, "history.csv", *(("days_in_ar", month, "38") for month in months("2025-01", "2026-05")))
    [late] = [c for c in evaluate(config, "2026-07-14") if c.rule == "freshness"]
    assert (late.event, late.period) == ("firing", "2026-06")

    feed(tmp_path, "june.csv", ("days_in_ar", "2026-06", "38"))
    [arrived] = [c for c in evaluate(config, "2026-07-20") if c.rule == "freshness"]

    for family, body in messages(arrived, "Maple Street Clinic").items():
        assert "Jun 2026 is no longer missing" in words(body), (family, body)
        assert "Jul 2026" not in body, (family, body)
    rendered = digest(config, PRACTICE, "2026-W30", dt.datetime(2026, 7, 20, 18, tzinfo=dt.UTC))
    for part in (rendered.text, rendered.html):
        assert "ClaimRight Billing's Jun 2026 feed arrived" in words(part)
        assert "Jul 2026 feed arrived" not in words(part)


def test_an_alert_on_a_day_reads_on_that_day_and_one_on_a_month_in_that_month(
    tmp_path: Path, vw_env: dict[str, str]
) -> None:
    config = load_config(TEST_CONFIG)
    feed(tmp_path, "october.csv", ("denial_rate", "2026-10-28", "13"), ("days_in_ar", "2026-10", "55"))
    evaluate(config, "2026-11-02")

    rendered = digest(config, PRACTICE, "2026-W45", dt.datetime(2026, 11, 2, 18, tzinfo=dt.UTC))

    for part in (rendered.text, rendered.html):
        text = words(part)
        assert "initial denial rate 13.0% on Oct 28, 2026" in text
        assert "days in A/R 55.0 days in Oct 2026" in text
        assert "in Oct 28, 2026" not in text


def test_a_missed_check_in_counts_whole_days_and_its_end_names_the_check_in_not_a_value(
    tmp_path: Path, postgres_url: str
) -> None:
    """The check-in two weeks after Acme's go-live (2026-03-01) is due 2026-03-15; tracking started before it."""
    config = config_with(pine_clinic(cadence_days=30))
    first = evaluate(config, "2026-03-02", postgres_url)  # the first evaluation: the schedule starts to count
    assert [c for c in first if c.rule == "pulse_overdue"] == []
    [overdue] = [c for c in evaluate(config, "2026-05-01", postgres_url) if c.rule == "pulse_overdue"]
    assert overdue.value == 47

    for family, body in messages(overdue, "Pine Clinic").items():
        assert "The staff check-in due on Mar 15, 2026 is 47 days overdue" in words(body), (family, body)
        assert "47.0" not in body, (family, body)

    export = write_export(tmp_path, google_export(config, staff(6, dt.date(2026, 5, 3), pulse_workload=4)), "may.csv")
    assert ingest_path(export, config, practice="pine-clinic", database_url=postgres_url,
                       today=dt.date(2026, 12, 31)).status == "accepted"
    [met] = [c for c in evaluate(config, "2026-05-04", postgres_url) if c.rule == "pulse_overdue"]
    assert met.event == "resolved"
    for family, body in messages(met, "Pine Clinic").items():
        assert "A staff pulse survey came in for the check-in due on Mar 15, 2026" in words(body), (family, body)
        assert "0.0 days" not in body, (family, body)
    rendered = digest(config, "pine-clinic", "2026-W19", dt.datetime(2026, 5, 4, 18, tzinfo=dt.UTC), postgres_url)
    for part in (rendered.text, rendered.html):
        assert "the staff pulse due on Mar 15, 2026 came in" in words(part)
        assert "back to 0" not in words(part)


def test_a_digest_rebuilt_later_is_dated_in_its_week_and_no_feed_arrives_after_that_date(
    tmp_path: Path, vw_env: dict[str, str]
) -> None:
    config = load_config(TEST_CONFIG)
    feed(tmp_path, "history.csv", *(("days_in_ar", month, "38") for month in months("2025-01", "2026-09")))
    with session_scope() as session:
        received = session.scalars(select(FeedFile.received_at)).one().astimezone(DENVER).date()
    week = iso_week(received - dt.timedelta(days=14))  # two weeks before the feed came: a past week
    monday, sunday = week_bounds(week)

    rendered = digest(config, PRACTICE, week, dt.datetime.now(dt.UTC))

    text_date = re.search(r"weekly vendor digest, \w+, (\w+ \d+, \d{4}) \(" + week + r"\)", words(rendered.text))
    html_date = re.search(r"Weekly vendor digest &middot; (\w+ \d+, \d{4})", rendered.html)
    assert text_date is not None and html_date is not None
    assert monday <= dt.datetime.strptime(text_date[1], "%B %d, %Y").date() <= sunday
    assert monday <= dt.datetime.strptime(html_date[1], "%b %d, %Y").date() <= sunday
    for part in (rendered.text, rendered.html):
        assert f"last feed received {received:%a %b} {received.day}" not in words(part)
        assert f"latest arrived {received:%a %b} {received.day}" not in words(part)


def test_a_pulse_alert_in_the_digest_shows_the_same_pulse_as_the_pulse_table(
    tmp_path: Path, postgres_url: str
) -> None:
    """Readiness 17 in October, 16 in November: critical both times, so the second evaluation tells nobody, and
    the alert must still carry November's figure beside November's table."""
    config = config_with(pine_clinic(cadence_days=30))
    worried = {"readiness_emotional": 3, "readiness_leadership": 3, "readiness_decisions": 3,
               "readiness_process": 3, "readiness_adjustment": 3}
    for day, last in ((dt.date(2026, 10, 30), 2), (dt.date(2026, 11, 5), 1)):  # 6 days apart: no repeat due
        export = google_export(config, staff(6, day, pulse_workload=3, readiness_trust=last, **worried))
        assert ingest_path(write_export(tmp_path, export, f"{day}.csv"), config, practice="pine-clinic",
                           database_url=postgres_url, today=dt.date(2026, 12, 31)).status == "accepted"
        evaluate(config, (day + dt.timedelta(days=1)).isoformat(), postgres_url)

    rendered = digest(config, "pine-clinic", "2026-W46", dt.datetime(2026, 11, 9, 18, tzinfo=dt.UTC), postgres_url)

    text = words(rendered.text)
    assert "Survey closed Thu Nov 5" in text
    assert "Staff pulse, readiness score 16 on Nov 5, 2026" in text
    assert "readiness score 17" not in text and "Oct 30, 2026" not in text
    assert "Staff pulse, readiness score 16 on Nov 5, 2026" in words(rendered.html)


def test_survey_ingest_counts_people_as_responses_and_what_it_stores_as_scores(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = {"VENDORWATCH_CONFIG": str(TEST_CONFIG), "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
                "VENDORWATCH_DATABASE_URL": postgres_url, "TEST_TEAMS_URL": "json://127.0.0.1:9/teams",
                "TEST_ALERT_EMAIL_URL": "json://127.0.0.1:9/email", "TEST_DIGEST_EMAIL_URL": "json://127.0.0.1:9/d"}
    export = tmp_path / "google-forms.csv"
    export.write_bytes((FIXTURES / "pulse" / "google-forms.csv").read_bytes())
    result = vendorwatch("ingest", "--no-evaluate", "--practice", PRACTICE, str(export),
                         env=subprocess_env(settings))

    with session_scope(postgres_url) as session:
        responses = session.scalars(select(PulseSurvey.responses)).one()
        scores = session.scalar(select(func.count()).select_from(Observation)) or 0
    assert scores > 0
    line = words(result.stdout)
    assert f"{export}: {responses} responses, {scores} new scores, 0 revised scores" in line, line
    assert "rows" not in line
