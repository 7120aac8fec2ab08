"""Feed freshness: next_due's rules case by case (monthly and weekly, grace, several periods missing, never
received, year and ISO-week-53 boundaries); feed_status on a real PostgreSQL after an ingest; and
`vendorwatch --json feeds status` through the real command line."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from config import Config, Vendor, load_config
from feeds.freshness import FeedDue, next_due
from feeds.status import feed_status
from intake.ingest import ingest_path
from storage.db import session_scope
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.worker_process import vendorwatch

D = dt.date
GO_LIVE = D(2025, 1, 1)


def vendor(
    cadence: Literal["weekly", "monthly"] = "monthly",
    due_day: int = 10,
    grace_days: int = 3,
    go_live: dt.date = GO_LIVE,
) -> Vendor:
    return Vendor(
        id="acme",
        name="Acme Billing",
        service="billing",
        go_live=go_live,
        cadence=cadence,
        due_day=due_day,
        grace_days=grace_days,
    )


MONTHLY = vendor()  # due the 10th of the next month, 3 days of grace
WEEKLY = vendor("weekly", due_day=2, grace_days=1, go_live=D(2024, 6, 3))  # due the Tuesday after the week


@dataclass(frozen=True)
class Case:
    name: str
    vendor: Vendor
    latest_period_end: dt.date | None
    today: dt.date
    expected: FeedDue


def due(
    period: str, due_on: dt.date, late_after: dt.date, late: bool = False, days_late: int = 0, overdue: int = 0
) -> FeedDue:
    return FeedDue(period, due_on, late_after, late, days_late, overdue)


OCTOBER_RECEIVED = D(2025, 10, 31)
NOVEMBER_DUE = due("2025-11", D(2025, 12, 10), D(2025, 12, 13))

CASES = [
    # monthly
    Case("monthly on time", MONTHLY, OCTOBER_RECEIVED, D(2025, 11, 20), NOVEMBER_DUE),
    Case("monthly due today", MONTHLY, OCTOBER_RECEIVED, D(2025, 12, 10), NOVEMBER_DUE),
    Case("monthly within grace", MONTHLY, OCTOBER_RECEIVED, D(2025, 12, 12), NOVEMBER_DUE),
    Case("monthly last day of grace", MONTHLY, OCTOBER_RECEIVED, D(2025, 12, 13), NOVEMBER_DUE),
    Case(
        "monthly one day past grace",
        MONTHLY,
        OCTOBER_RECEIVED,
        D(2025, 12, 14),
        due("2025-11", D(2025, 12, 10), D(2025, 12, 13), late=True, days_late=4, overdue=1),
    ),
    Case(
        "monthly no grace: late the day after the due date",
        vendor(grace_days=0),
        OCTOBER_RECEIVED,
        D(2025, 12, 11),
        due("2025-11", D(2025, 12, 10), D(2025, 12, 10), late=True, days_late=1, overdue=1),
    ),
    Case(
        "monthly, September to November missing: the oldest is expected, three overdue",
        MONTHLY,
        D(2025, 8, 31),
        D(2025, 12, 20),
        due("2025-09", D(2025, 10, 10), D(2025, 10, 13), late=True, days_late=71, overdue=3),
    ),
    Case(
        "monthly never received, before the first due date: the go-live month",
        MONTHLY,
        None,
        D(2025, 1, 20),
        due("2025-01", D(2025, 2, 10), D(2025, 2, 13)),
    ),
    Case(
        "monthly never received, months later: still the go-live month, late",
        MONTHLY,
        None,
        D(2025, 4, 1),
        due("2025-01", D(2025, 2, 10), D(2025, 2, 13), late=True, days_late=50, overdue=2),
    ),
    Case(
        "monthly go-live mid-month: that month",
        vendor(go_live=D(2025, 3, 15)),
        None,
        D(2025, 3, 20),
        due("2025-03", D(2025, 4, 10), D(2025, 4, 13)),
    ),
    Case(
        "monthly history from before go-live does not make earlier months due",
        vendor(go_live=D(2025, 3, 1)),
        D(2024, 12, 31),
        D(2025, 3, 20),
        due("2025-03", D(2025, 4, 10), D(2025, 4, 13)),
    ),
    Case(
        "monthly December's feed is due in January (year rollover)",
        MONTHLY,
        D(2025, 11, 30),
        D(2026, 1, 14),
        due("2025-12", D(2026, 1, 10), D(2026, 1, 13), late=True, days_late=4, overdue=1),
    ),
    Case(
        "monthly after December comes January of the next year",
        MONTHLY,
        D(2025, 12, 31),
        D(2026, 1, 14),
        due("2026-01", D(2026, 2, 10), D(2026, 2, 13)),
    ),
    Case(
        "monthly a part-month delivery leaves that month expected",
        MONTHLY,
        D(2025, 10, 15),
        D(2025, 10, 20),
        due("2025-10", D(2025, 11, 10), D(2025, 11, 13)),
    ),
    # weekly (due_day 2: the Tuesday after the week's Sunday; 1 day of grace)
    Case(
        "weekly on time",
        WEEKLY,
        D(2025, 11, 2),  # Sunday of 2025-W44
        D(2025, 11, 11),
        due("2025-W45", D(2025, 11, 11), D(2025, 11, 12)),
    ),
    Case(
        "weekly one day past grace",
        WEEKLY,
        D(2025, 11, 2),
        D(2025, 11, 13),
        due("2025-W45", D(2025, 11, 11), D(2025, 11, 12), late=True, days_late=2, overdue=1),
    ),
    Case(
        "weekly due_day 1 is the Monday after the week",
        vendor("weekly", due_day=1, grace_days=0),
        D(2025, 11, 2),
        D(2025, 11, 10),
        due("2025-W45", D(2025, 11, 10), D(2025, 11, 10)),
    ),
    Case(
        "weekly due_day above 7 is clamped to 7: the Sunday after the week",
        vendor("weekly", due_day=10, grace_days=0),
        D(2025, 11, 2),
        D(2025, 11, 17),
        due("2025-W45", D(2025, 11, 16), D(2025, 11, 16), late=True, days_late=1, overdue=1),
    ),
    Case(
        "weekly ISO week 53 follows week 52",
        WEEKLY,
        D(2026, 12, 27),  # Sunday of 2026-W52; 2026-W53 runs 2026-12-28 to 2027-01-03
        D(2027, 1, 6),
        due("2026-W53", D(2027, 1, 5), D(2027, 1, 6)),
    ),
    Case(
        "weekly ISO week 53 late in the next calendar year",
        WEEKLY,
        D(2026, 12, 27),
        D(2027, 1, 7),
        due("2026-W53", D(2027, 1, 5), D(2027, 1, 6), late=True, days_late=2, overdue=1),
    ),
    Case(
        "weekly after week 53 comes week 1 of the next ISO year",
        WEEKLY,
        D(2027, 1, 3),
        D(2027, 1, 5),
        due("2027-W01", D(2027, 1, 12), D(2027, 1, 13)),
    ),
    Case(
        "weekly W53 and W01 missing: two overdue, W02 still in grace",
        WEEKLY,
        D(2026, 12, 27),
        D(2027, 1, 20),
        due("2026-W53", D(2027, 1, 5), D(2027, 1, 6), late=True, days_late=15, overdue=2),
    ),
    Case(
        "weekly week 1 starting in December (2025-W01 is 2024-12-30 to 2025-01-05)",
        WEEKLY,
        D(2024, 12, 29),  # Sunday of 2024-W52
        D(2025, 1, 2),
        due("2025-W01", D(2025, 1, 7), D(2025, 1, 8)),
    ),
    Case(
        "weekly never received: the ISO week of go-live, which may belong to the previous ISO year",
        vendor("weekly", due_day=2, grace_days=1, go_live=D(2027, 1, 1)),  # a Friday of 2026-W53
        None,
        D(2027, 1, 2),
        due("2026-W53", D(2027, 1, 5), D(2027, 1, 6)),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_next_due(case: Case) -> None:
    assert next_due(case.vendor, case.latest_period_end, case.today) == case.expected


def test_late_iff_periods_overdue() -> None:
    for case in CASES:
        assert case.expected.late == (case.expected.periods_overdue > 0), case.name
        assert (case.expected.days_late > 0) == case.expected.late, case.name


# -- feed_status on PostgreSQL ----------------------------------------------------------------------------------

HEADER = "practice,vendor,kpi,period,value,segment\n"
OCTOBER_FEED = (
    HEADER
    + "maple-clinic,claimright,denial_rate,2025-10,9.1,all\n"
    + "maple-clinic,claimright,days_in_ar,2025-10,41,all\n"
)
NOVEMBER_PAYER_FEED = HEADER + "maple-clinic,claimright,denial_rate,2025-11,8.7,payer:aetna\n"


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    for name in ("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL"):
        monkeypatch.setenv(name, "json://localhost")
    return load_config(TEST_CONFIG)


def status_row(config: Config, database_url: str, today: dt.date) -> dict[str, object]:
    with session_scope(database_url) as session:
        rows = feed_status(session, config, today)
    assert [(row["practice"], row["vendor"]) for row in rows] == [("maple-clinic", "claimright")]
    return rows[0]


def test_feed_status_reports_late_only_after_the_grace_period(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    # claimright: monthly, due_day 10, grace_days 3, go-live 2025-01-01 (tests/fixtures/config/practices.yaml).
    never = status_row(config, postgres_url, D(2025, 2, 14))
    assert never["latest_period"] is None
    assert never["last_file_at"] is None
    assert never["expected_period"] == "2025-01"
    assert never["late"] is True

    path = tmp_path / "claimright-2025-10.csv"
    path.write_text(OCTOBER_FEED, encoding="utf-8")
    assert ingest_path(path, config, database_url=postgres_url, today=D(2025, 11, 5)).status == "accepted"

    in_grace = status_row(config, postgres_url, D(2025, 12, 13))
    assert in_grace["latest_period"] == "2025-10"
    assert isinstance(in_grace["last_file_at"], dt.datetime)
    assert in_grace["expected_period"] == "2025-11"
    assert in_grace["due_on"] == D(2025, 12, 10)
    assert (in_grace["late"], in_grace["days_late"], in_grace["periods_overdue"]) == (False, 0, 0)

    past_grace = status_row(config, postgres_url, D(2025, 12, 14))
    assert past_grace["expected_period"] == "2025-11"
    assert (past_grace["late"], past_grace["days_late"], past_grace["periods_overdue"]) == (True, 4, 1)

    months_later = status_row(config, postgres_url, D(2026, 2, 14))
    assert months_later["expected_period"] == "2025-11"
    assert (months_later["late"], months_later["periods_overdue"]) == (True, 3)

    # A period received in any segment counts as received.
    path = tmp_path / "claimright-2025-11-aetna.csv"
    path.write_text(NOVEMBER_PAYER_FEED, encoding="utf-8")
    assert ingest_path(path, config, database_url=postgres_url, today=D(2025, 12, 14)).status == "accepted"
    caught_up = status_row(config, postgres_url, D(2025, 12, 14))
    assert caught_up["latest_period"] == "2025-11"
    assert caught_up["expected_period"] == "2025-12"
    assert caught_up["due_on"] == D(2026, 1, 10)
    assert caught_up["late"] is False


# -- the command line -------------------------------------------------------------------------------------------

ROW_KEYS = {
    "practice",
    "vendor",
    "cadence",
    "latest_period",
    "last_file_at",
    "expected_period",
    "due_on",
    "late_after",
    "late",
    "days_late",
    "periods_overdue",
}


def test_feeds_status_command(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = tmp_path / "claimright-2025-10.csv"
    path.write_text(OCTOBER_FEED, encoding="utf-8")
    assert ingest_path(path, config, database_url=postgres_url, today=D(2025, 11, 5)).status == "accepted"
    env = subprocess_env(
        {
            "VENDORWATCH_CONFIG": str(TEST_CONFIG),
            "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
            "VENDORWATCH_DATABASE_URL": postgres_url,
            "TEST_TEAMS_URL": "json://localhost",
            "TEST_ALERT_EMAIL_URL": "json://localhost",
            "TEST_DIGEST_EMAIL_URL": "json://localhost",
        }
    )

    rows = json.loads(vendorwatch("--json", "feeds", "status", env=env).stdout)

    assert len(rows) == 1
    row = rows[0]
    assert set(row) == ROW_KEYS
    assert (row["practice"], row["vendor"], row["cadence"]) == ("maple-clinic", "claimright", "monthly")
    assert row["latest_period"] == "2025-10"
    assert row["last_file_at"] is not None
    assert (row["expected_period"], row["due_on"], row["late_after"]) == ("2025-11", "2025-12-10", "2025-12-13")
    assert isinstance(row["late"], bool)
    assert isinstance(row["days_late"], int)
    expected = next_due(config.practices[0].vendors[0], D(2025, 10, 31), dt.date.today())
    assert (row["late"], row["days_late"], row["periods_overdue"]) == (
        expected.late,
        expected.days_late,
        expected.periods_overdue,
    )

    human = vendorwatch("feeds", "status", env=env).stdout  # piped, as in a cron mail: no cell may be cut
    assert "maple-clinic" in human and "claimright" in human
    assert "2025-11 on 2025-12-10" in human
    assert (f"LATE {expected.days_late} days" if expected.late else "on time") in human
