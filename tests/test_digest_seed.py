"""A small world the digest tests share, built through the real path (feed files ingested, rules evaluated, a
pulse export ingested, at frozen times) on the test's own PostgreSQL database.

Maple Street Clinic (America/Denver, region mountain) has ClaimRight Billing live since 2025-07-01 and Remindly,
live since 2026-10-01, which has never sent a feed. The digest of week 2026-W48 goes out on Monday 2026-11-23 at
07:00 MST (14:00 UTC) and reports on the week since Monday 2026-11-16 07:00 MST:

- ClaimRight's 2026-09 feed arrived 2026-10-12 (charge lag 5.5 days: critical; net collection 95.9%: warning),
  its 2026-10 feed on 2026-11-17 (denial rate 10.4%: critical; charge lag back to 1.1 days; net collection 94.1%).
- Evaluations on 2026-10-15 and 2026-11-20: the net collection warning is still open from October, the denial
  rate opened this week, the charge lag resolved this week, and Remindly's 2026-10 feed is late.
Pine Family Practice (same region) has no data at all.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import time_machine
import yaml
from sqlalchemy import select

from alerts.evaluate import evaluate_practices
from config import Config, load_config
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import Alert
from tests.conftest import TEST_CONFIG
from worker.demo.run import DATA_DIR as DEMO_DATA

WEEK = "2026-W48"
SEND_AT = dt.datetime(2026, 11, 23, 14, 0, tzinfo=dt.UTC)  # Monday 07:00 in Denver (MST)
AFTER_SEND = SEND_AT + dt.timedelta(minutes=5)
GO_LIVE = dt.date(2025, 7, 1)
PRACTICES: list[dict[str, object]] = [
    {
        "id": "maple-clinic",
        "name": "Maple Street Clinic",
        "timezone": "America/Denver",
        "region": "mountain",
        "annual_net_collectible": 600000,
        "staff_count": 14,
        "digest_to": ["owner@maple.example", "manager@maple.example"],
        "overrides": {"denial_rate": {"warn": 9.5, "crit": 10}},
        "vendors": [
            {"id": "claimright", "name": "ClaimRight Billing", "service": "billing", "go_live": GO_LIVE,
             "fee_pct": 6.0, "cadence": "monthly", "due_day": 10, "grace_days": 3},
            {"id": "remindly", "name": "Remindly", "service": "reminders", "go_live": dt.date(2026, 10, 1),
             "cadence": "monthly", "due_day": 10, "grace_days": 3},
        ],
    },
    {
        "id": "pine-family",
        "name": "Pine Family Practice",
        "timezone": "America/Denver",
        "region": "mountain",
        "digest_to": ["owner@pine.example"],
        "vendors": [
            {"id": "claimright", "name": "ClaimRight Billing", "service": "billing",
             "go_live": dt.date(2026, 6, 1), "cadence": "monthly", "due_day": 10, "grace_days": 3},
        ],
    },
]
REGIONS = {"mountain": {"name": "Mountain region", "digest_to": ["lead@mountain.example"]}}


@dataclass(frozen=True)
class World:
    config: Config
    config_dir: Path
    tmp: Path


def write_config(directory: Path, practices: Sequence[Mapping[str, object]], regions: Mapping[str, object]) -> Config:
    """practices.yaml as given; channels.yaml from the test fixtures (loopback SMTP and TLS servers)."""
    directory.mkdir(parents=True, exist_ok=True)
    document = {"regions": regions, "practices": practices} if regions else {"practices": practices}
    (directory / "practices.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    shutil.copyfile(TEST_CONFIG / "channels.yaml", directory / "channels.yaml")
    return load_config(directory)


def months(first: str, last: str) -> list[str]:
    year, month = (int(part) for part in first.split("-"))
    labels = []
    while f"{year:04d}-{month:02d}" <= last:
        labels.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return labels


def billing_value(kpi: str, period: str, index: int) -> float:
    """Flat series with a small zig-zag (so no trend rule fires) and the story's two bad months."""
    before = period < GO_LIVE.strftime("%Y-%m")
    wiggle = 0.5 * (index % 2)
    story = {
        ("charge_lag_days", "2026-09"): 5.5, ("charge_lag_days", "2026-10"): 1.1,
        ("net_collection_rate", "2026-09"): 95.9, ("net_collection_rate", "2026-10"): 94.1,
        ("denial_rate", "2026-10"): 10.4,
    }
    if (kpi, period) in story:
        return story[(kpi, period)]
    levels = {
        "days_in_ar": (48.0, 38.0),
        "denial_rate": (7.0, 5.5),
        "net_collection_rate": (95.0, 96.5),
        "cost_to_collect_pct": (9.0, 6.5),
        "charge_lag_days": (2.0, 1.0),
    }
    return levels[kpi][0 if before else 1] + wiggle


def billing_feed(path: Path, periods: list[str], offset: int = 0) -> Path:
    lines = ["practice,vendor,kpi,period,value"]
    for index, period in enumerate(periods, start=offset):
        for kpi in ("days_in_ar", "denial_rate", "net_collection_rate", "cost_to_collect_pct", "charge_lag_days"):
            lines.append(f"maple-clinic,claimright,{kpi},{period},{billing_value(kpi, period, index)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def at(moment: dt.datetime) -> time_machine.travel:
    return time_machine.travel(moment, tick=False)


def ingest_at(moment: dt.datetime, path: Path, config: Config, practice: str | None = None) -> None:
    with at(moment):
        result = ingest_path(path, config, today=moment.date(), practice=practice)
    assert result.status == "accepted", result


def evaluate_at(moment: dt.datetime, config: Config) -> None:
    with at(moment):
        evaluate_practices(config, as_of=moment.date(), now=moment)


def pulse_export(path: Path, responses: int) -> Path:
    """The demo's Google Forms export, cut to its first `responses` answers."""
    lines = (DEMO_DATA / "oakridge-fm" / "pulse-2026-10-30.csv").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[: responses + 1]) + "\n", encoding="utf-8")
    return path


def seed_world(tmp: Path, *, pulse_responses: int = 12) -> World:
    config_dir = tmp / "config"
    config = write_config(config_dir, PRACTICES, REGIONS)
    history = months("2024-07", "2026-09")
    ingest_at(dt.datetime(2026, 10, 12, 15, tzinfo=dt.UTC), billing_feed(tmp / "claimright-history.csv", history),
              config)
    evaluate_at(dt.datetime(2026, 10, 15, 12, tzinfo=dt.UTC), config)
    ingest_at(dt.datetime(2026, 11, 17, 15, tzinfo=dt.UTC),
              billing_feed(tmp / "claimright-2026-10.csv", ["2026-10"], offset=len(history)), config)
    if pulse_responses:
        ingest_at(dt.datetime(2026, 11, 2, 15, tzinfo=dt.UTC), pulse_export(tmp / "pulse.csv", pulse_responses),
                  config, practice="maple-clinic")
    evaluate_at(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC), config)
    return World(config, config_dir, tmp)


@pytest.fixture
def world(tmp_path: Path, vw_env: dict[str, str]) -> Iterator[World]:
    yield seed_world(tmp_path)


def alert_states(practice: str = "maple-clinic") -> set[tuple[str, str, str, str]]:
    with session_scope() as session:
        alerts = session.scalars(select(Alert).where(Alert.practice_id == practice))
        return {(a.vendor_id, a.kpi, a.state, a.severity) for a in alerts}


def test_the_seeded_world_has_the_alerts_the_digest_tests_rely_on(world: World) -> None:
    states = alert_states()

    assert ("claimright", "denial_rate", "firing", "critical") in states
    assert ("claimright", "net_collection_rate", "firing", "warning") in states
    assert ("claimright", "charge_lag_days", "resolved", "critical") in states
    assert any(vendor == "remindly" and state == "firing" for vendor, _, state, _ in states)
    assert not any(vendor == "claimright" and kpi not in ("denial_rate", "net_collection_rate", "charge_lag_days")
                   for vendor, kpi, _, _ in states), sorted(states)
    assert alert_states("pine-family") == {("claimright", "feed", "firing", "critical")}
