"""The operator's alert commands, through the real `vendorwatch` command in a subprocess: acknowledge, silence,
lift a silence, list, and evaluate with --json. Alerts are seeded in-process (ingest, then evaluate) first."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alerts.evaluate import evaluate_practices
from config import Config, load_config
from intake.ingest import ingest_path
from storage.db import engine_for, session_scope, upgrade
from storage.models import Alert, AlertEvent, Base, Silence
from tests.conftest import TEST_CONFIG, reset_caches, subprocess_env
from tests.support.services import drop_postgres_database, fresh_postgres_database
from tests.worker_process import vendorwatch

OPERATOR = "alice"
NOWHERE = "json://127.0.0.1:9/"  # the discard port: a delivery attempt goes nowhere and harms nothing
CHANNEL_VARIABLES = ("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL")
ALERT_ROW_KEYS = {"rule", "practice", "vendor", "kpi", "segment", "severity", "state", "started_at", "resolved_at",
                  "acknowledged_at", "silenced"}


@pytest.fixture(scope="module")
def operations_database(machine_services: None) -> Iterator[str]:
    url = fresh_postgres_database("vw_alert_ops")
    upgrade(url)
    yield url
    engine_for(url).dispose()
    drop_postgres_database(url)


@pytest.fixture
def database_url(operations_database: str) -> str:
    with engine_for(operations_database).begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    return operations_database


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Config]:
    """The test config (maple-clinic, vendor claimright; denial_rate warn 9.5, crit 10), channels pointing nowhere."""
    for name in CHANNEL_VARIABLES:
        monkeypatch.setenv(name, NOWHERE)
    monkeypatch.setenv("VENDORWATCH_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("VENDORWATCH_DATABASE_URL", raising=False)
    reset_caches()
    yield load_config(TEST_CONFIG)
    reset_caches()


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return subprocess_env({
        "VENDORWATCH_DATABASE_URL": database_url,
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "cli-var"),
        "VENDORWATCH_OPERATOR": OPERATOR,
        **dict.fromkeys(CHANNEL_VARIABLES, NOWHERE),
    })


def run(env: dict[str, str], *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    result = vendorwatch(*args, env=env, check=False)
    assert result.returncode == status, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def run_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run(env, "--json", *args).stdout)


def ingest(tmp_path: Path, config: Config, database_url: str, period: str, value: float) -> None:
    feed = tmp_path / f"denials-{period}.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,{period},{value}\n")
    result = ingest_path(feed, config, today=dt.date(2026, 12, 31), database_url=database_url)
    assert result.status == "accepted", result.problems


def evaluate(config: Config, database_url: str, day: str) -> list[str]:
    as_of = dt.date.fromisoformat(day)
    [result] = evaluate_practices(config, as_of=as_of, now=dt.datetime.combine(as_of, dt.time(12), tzinfo=dt.UTC),
                                  database_url=database_url)
    return [change.event for change in result.changes]


@pytest.fixture
def firing_alert(tmp_path: Path, config: Config, database_url: str) -> int:
    """A critical denial_rate alert, firing since the evaluation of 2026-11-15."""
    ingest(tmp_path, config, database_url, "2026-10", 10.4)
    assert evaluate(config, database_url, "2026-11-15") == ["firing"]
    with session_scope(database_url) as session:
        return session.scalars(select(Alert.id)).one()


def stored_alert(database_url: str, alert_id: int) -> Alert:
    with session_scope(database_url) as session:
        return session.get_one(Alert, alert_id)


def stored_silences(database_url: str) -> list[Silence]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(Silence)))


# -- acknowledge ----------------------------------------------------------------------------------------------


def test_acknowledging_a_firing_alert_records_who_and_stops_its_repeats(
    firing_alert: int, env: dict[str, str], config: Config, database_url: str
) -> None:
    [row] = run_json(env, "alerts", "list")
    assert row.keys() >= ALERT_ROW_KEYS
    assert {key: row[key] for key in ALERT_ROW_KEYS - {"started_at"}} == {
        "rule": "threshold", "practice": "maple-clinic", "vendor": "claimright", "kpi": "denial_rate",
        "segment": "all", "severity": "critical", "state": "firing", "resolved_at": None, "acknowledged_at": None,
        "silenced": False,
    }
    assert row["started_at"] == "2026-11-15T12:00:00+00:00"  # ISO 8601, as JSON consumers parse it

    acked = run(env, "alerts", "ack", str(firing_alert))
    assert f"alert {firing_alert} acknowledged by {OPERATOR}" in acked.stdout
    alert = stored_alert(database_url, firing_alert)
    assert (alert.acknowledged_by, alert.state) == (OPERATOR, "firing")
    assert alert.acknowledged_at is not None

    assert evaluate(config, database_url, "2026-11-30") == []  # 15 days on: due a repeat, but acknowledged


def test_acknowledging_a_resolved_or_unknown_alert_fails_with_a_clear_message(
    firing_alert: int, tmp_path: Path, env: dict[str, str], config: Config, database_url: str
) -> None:
    ingest(tmp_path, config, database_url, "2026-11", 7.0)
    assert evaluate(config, database_url, "2026-12-15") == ["resolved"]

    resolved = run(env, "alerts", "ack", str(firing_alert), status=1)
    assert f"alert {firing_alert} is resolved, not firing: nothing to acknowledge" in resolved.stderr
    unknown = run(env, "alerts", "ack", "99999", status=1)
    assert "no alert 99999" in unknown.stderr
    assert stored_alert(database_url, firing_alert).acknowledged_by is None


# -- list -----------------------------------------------------------------------------------------------------


def alert_events(database_url: str, alert_id: int) -> list[str]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(AlertEvent.event).where(AlertEvent.alert_id == alert_id)
                                    .order_by(AlertEvent.id)))


def test_alerts_list_shows_the_latest_value_and_period_while_the_severity_stays(
    firing_alert: int, tmp_path: Path, env: dict[str, str], config: Config, database_url: str
) -> None:
    ingest(tmp_path, config, database_url, "2026-11", 10.8)
    assert evaluate(config, database_url, "2026-11-20") == []  # still critical, and no repeat due for 7 days

    [row] = run_json(env, "alerts", "list")
    table = run(env, "alerts", "list").stdout
    assert (row["severity"], row["value"], row["period"]) == ("critical", 10.8, "2026-11")
    assert "10.8" in table and "2026-11" in table and "10.4" not in table
    assert alert_events(database_url, firing_alert) == ["firing"]  # a new value is no event: nothing is told


def test_an_acknowledged_alert_follows_its_latest_value_too(
    firing_alert: int, tmp_path: Path, env: dict[str, str], config: Config, database_url: str
) -> None:
    run(env, "alerts", "ack", str(firing_alert))
    ingest(tmp_path, config, database_url, "2026-11", 10.6)
    assert evaluate(config, database_url, "2026-12-02") == []  # a repeat is due, but acknowledged

    [row] = run_json(env, "alerts", "list", "--state", "firing")
    assert (row["value"], row["period"], row["acknowledged_by"]) == (10.6, "2026-11", OPERATOR)


# -- silences -------------------------------------------------------------------------------------------------


def test_a_silence_is_created_listed_shown_on_its_alert_and_lifted(firing_alert: int, env: dict[str, str],
                                                                   database_url: str) -> None:
    before = dt.datetime.now(dt.UTC)
    created = run_json(env, "alerts", "silence", "--practice", "maple-clinic", "--kpi", "denial_rate",
                       "--for", "3d", "--reason", "ClaimRight is migrating its clearinghouse")
    ends_at = dt.datetime.fromisoformat(created["ends_at"])
    assert before + dt.timedelta(days=3) <= ends_at <= dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert (created["practice"], created["vendor"], created["kpi"], created["created_by"]) == (
        "maple-clinic", None, "denial_rate", OPERATOR)

    [listed] = run_json(env, "alerts", "silences")
    assert (listed["id"], listed["reason"], listed["lifted_at"]) == (
        created["id"], "ClaimRight is migrating its clearinghouse", None)
    [row] = run_json(env, "alerts", "list")
    assert (row["id"], row["silenced"]) == (firing_alert, True)

    lifted = run(env, "alerts", "unsilence", str(created["id"]))
    assert f"silence {created['id']} lifted" in lifted.stdout
    [silence] = stored_silences(database_url)
    assert silence.lifted_by == OPERATOR and silence.lifted_at is not None


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        pytest.param(["--practice", "maple-clinic", "--for", "3d"], 2, "Missing option '--reason'",
                     id="without a reason: usage error"),
        pytest.param(["--for", "3d", "--reason", "why not"], 1,
                     "a silence needs at least one of --practice, --vendor, --kpi", id="without a matcher: failure"),
        pytest.param(["--kpi", "denial_rate", "--until", "2099-01-01", "--for", "3d", "--reason", "x"], 2,
                     "give exactly one of --until or --for", id="both --until and --for: usage error"),
    ],
)
def test_a_silence_that_cannot_be_made_is_refused_with_a_clear_message(
    arguments: list[str], status: int, message: str, env: dict[str, str], database_url: str
) -> None:
    result = run(env, "alerts", "silence", *arguments, status=status)
    assert message in " ".join(result.stderr.split()), result.stderr  # rich may wrap the usage-error box
    assert stored_silences(database_url) == []


# -- evaluate -------------------------------------------------------------------------------------------------


def test_evaluate_with_json_prints_every_change_as_json(tmp_path: Path, env: dict[str, str], config: Config,
                                                        database_url: str) -> None:
    ingest(tmp_path, config, database_url, "2026-10", 10.4)
    [report] = run_json(env, "evaluate", "--as-of", "2026-11-15")
    assert report["practice"] == "maple-clinic"
    assert isinstance(report["notification_id"], int)
    [change] = report["changes"]
    assert {key: change[key] for key in ("rule", "practice", "vendor", "kpi", "segment", "severity", "event")} == {
        "rule": "threshold", "practice": "maple-clinic", "vendor": "claimright", "kpi": "denial_rate",
        "segment": "all", "severity": "critical", "event": "firing",
    }
    assert (change["value"], change["threshold"], change["period"]) == (10.4, 10.0, "2026-10")
