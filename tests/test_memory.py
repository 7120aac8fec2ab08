"""Memory stays flat with the size of what comes in: evaluation holds one series of a practice at a time, and a
file with a survey's header is read whole only when it is as small as a survey export is."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import alerts.lifecycle as lifecycle
from alerts.evaluate import evaluate_practices
from config import BUNDLED_DIR, load_config
from intake.ingest import ingest_path
from storage.db import engine_for, session_scope, upgrade
from storage.models import Alert, FeedRejection
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.support.services import drop_postgres_database, fresh_postgres_database
from worker.demo.run import DATA_DIR

ROOT = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2026, 11, 5)  # the October feed is not yet due: no freshness alert
MONTHS = [f"{2024 + (9 + i) // 12}-{(9 + i) % 12 + 1:02d}" for i in range(25)]  # 2024-10 .. 2026-10
SEGMENTS = 4_000  # x 25 months = 100,000 values of one practice
BAD_SEGMENT = "provider:bad"
# What the evaluation may add to the peak RSS of a process that has already imported the code, loaded the config
# and connected. Read whole, the practice's 100,000 values took 78 MB above that; a series at a time, 17 MB.
EVALUATION_GROWTH_LIMIT_KB = 40 * 1024
SURVEY_READ_LIMIT_BYTES = 4 * 1024 * 1024  # Python allocations while refusing a 30 MB "survey": its head, no more


def write_long_feed(path: Path) -> int:
    """One KPI of maple-clinic's billing vendor, steady and well inside its thresholds in every segment but one,
    which is past critical in its last three months."""
    lines = ["practice,vendor,kpi,period,value,segment\n"]
    for index in range(SEGMENTS):
        segment = BAD_SEGMENT if index == SEGMENTS - 1 else f"provider:p{index:05d}"
        for position, month in enumerate(MONTHS):
            value = 12.0 if segment == BAD_SEGMENT and position >= len(MONTHS) - 3 else 5.0
            lines.append(f"maple-clinic,claimright,denial_rate,{month},{value},{segment}\n")
    path.write_text("".join(lines))
    return len(lines) - 1


def quiet_config(directory: Path) -> Path:
    """The test practice, with no channels: nothing here is delivered."""
    directory.mkdir()
    shutil.copyfile(TEST_CONFIG / "practices.yaml", directory / "practices.yaml")
    (directory / "channels.yaml").write_text("dry_run: true\nurls: []\nroutes: []\n")
    return directory


def evaluate_in_fresh_process(config_dir: Path, postgres_url: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.support.evaluation_memory", str(config_dir), postgres_url,
               "maple-clinic", AS_OF.isoformat()]
    done = subprocess.run(command, cwd=ROOT, env=subprocess_env({}), capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def test_evaluating_a_practice_with_many_values_keeps_its_memory_flat(tmp_path: Path, postgres_url: str) -> None:
    config_dir, feed = quiet_config(tmp_path / "config"), tmp_path / "long.csv"
    rows = write_long_feed(feed)
    ingested = ingest_path(feed, load_config(config_dir), source="test", today=AS_OF, database_url=postgres_url)
    assert (ingested.status, ingested.rows) == ("accepted", rows)

    measured = evaluate_in_fresh_process(config_dir, postgres_url)

    threshold_changes = [change for change in measured["changes"] if change[1] == "threshold"]
    assert threshold_changes == [[BAD_SEGMENT, "threshold", "critical"]], "every series judged, the bad one fires"
    growth_kb = measured["after_kb"] - measured["before_kb"]
    assert growth_kb < EVALUATION_GROWTH_LIMIT_KB, (
        f"evaluating {rows:,} values raised the peak RSS by {growth_kb / 1024:.0f} MB: the practice was held whole")


def write_oversized_google_export(path: Path, megabytes: int) -> None:
    """A Google Forms header, then rows up to `megabytes`: the shape of a survey, the size of no survey."""
    row = "2026/10/30 9:15:00 AM MDT,Agree,Neutral,Front desk\n"
    with path.open("w") as out:
        out.write("Timestamp,I know who handles what,My workload is manageable,Team\n")
        out.write(row * (megabytes * 1_000_000 // len(row) + 1))


def test_an_oversized_survey_export_is_refused_unread(tmp_path: Path, postgres_url: str) -> None:
    big = tmp_path / "pulse-huge.csv"
    write_oversized_google_export(big, 30)
    config = load_config(BUNDLED_DIR)

    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = ingest_path(big, config, practice="oakridge-fm", database_url=postgres_url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started

    assert (result.kind, result.status) == ("pulse", "rejected")
    assert peak < SURVEY_READ_LIMIT_BYTES, f"refusing it allocated {peak / 1e6:.1f} MB: the file was read"
    message = result.problems[0].message
    assert "pulse-huge.csv" in message and "30.0 MB" in message and "20 MB limit" in message, message
    assert seconds < 30, f"refusing it took {seconds:.1f} s"
    with session_scope(postgres_url) as session:
        recorded = session.scalars(select(FeedRejection).where(FeedRejection.filename == big.name)).one()
        assert recorded.errors == [problem.as_dict() for problem in result.problems]


def config_with_survey_limit(directory: Path, limit: str) -> Path:
    directory.mkdir()
    for name in ("practices.yaml", "channels.yaml"):
        shutil.copyfile(BUNDLED_DIR / name, directory / name)
    surveys = (BUNDLED_DIR / "surveys.yaml").read_text()
    assert surveys.count("max_export_mb: 20\n") == 1
    (directory / "surveys.yaml").write_text(surveys.replace("max_export_mb: 20\n", f"max_export_mb: {limit}\n"))
    return directory


def test_a_normal_survey_export_is_read_and_the_limit_is_configurable(tmp_path: Path, postgres_url: str) -> None:
    export = DATA_DIR / "oakridge-fm" / "pulse-2026-10-30.csv"
    size_kb = export.stat().st_size / 1000
    tight = load_config(config_with_survey_limit(tmp_path / "tight", f"{size_kb / 2 / 1000:g}"))
    refused = ingest_path(export, tight, practice="oakridge-fm", database_url=postgres_url)
    assert (refused.kind, refused.status) == ("pulse", "rejected")
    assert f"over the {size_kb / 2 / 1000:g} MB limit" in refused.problems[0].message

    accepted = ingest_path(export, load_config(BUNDLED_DIR), practice="oakridge-fm", database_url=postgres_url)
    assert (accepted.kind, accepted.status) == ("pulse", "accepted") and accepted.rows > 0


# -- a practice read in small pieces decides exactly as one read in one go ------------------------------------
KPI_RANGES = {"denial_rate": (4.0, 12.0), "days_in_ar": (36.0, 54.0), "clean_claim_rate": (86.0, 99.0)}
# Names whose order differs between byte order and a linguistic collation: the series and their alerts must meet.
NAMES = ["all", "provider:Alpha", "provider:alpha", "provider:Ärzte", "provider:beta", "provider:Zeta", "provider:_x"]


def write_churning_feed(path: Path) -> None:
    """Values wandering across the thresholds, so alerts open, escalate, repeat and resolve month after month."""
    rng = random.Random(13)
    lines = ["practice,vendor,kpi,period,value,segment\n"]
    for kpi, (low, high) in KPI_RANGES.items():
        for segment in NAMES:
            lines += [f"maple-clinic,claimright,{kpi},{month},{rng.uniform(low, high):.1f},{segment}\n"
                      for month in MONTHS]
    path.write_text("".join(lines))


def month_by_month(config_dir: Path, feed: Path, database_url: str) -> tuple[list[list[dict[str, Any]]], list[Any]]:
    """Evaluations on the 15th of every month from 2025-02 to 2026-11: what each told, and the alerts at the end."""
    ingest_path(feed, load_config(config_dir), source="test", today=AS_OF, database_url=database_url)
    told = []
    for index in range(22):
        day = dt.date(2025 + (1 + index) // 12, (1 + index) % 12 + 1, 15)
        results = evaluate_practices(load_config(config_dir), as_of=day, now=dt.datetime.combine(day, dt.time(12),
                                                                                                  dt.UTC),
                                     database_url=database_url)
        told.append([change.__dict__ for result in results for change in result.changes])
    with session_scope(database_url) as session:
        alerts = [tuple(getattr(alert, column.key) for column in Alert.__table__.columns)
                  for alert in session.scalars(select(Alert).order_by(Alert.id))]
    return told, alerts


def test_a_practice_read_in_small_pieces_is_judged_as_one_read_whole(tmp_path: Path, postgres_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir, feed = quiet_config(tmp_path / "config"), tmp_path / "churn.csv"
    write_churning_feed(feed)
    whole = month_by_month(config_dir, feed, postgres_url)

    # Values streamed 7 rows at a time (series cut in the middle), alerts 3 at a time, changes written 2 at a time.
    for name, value in (("VALUES_AT_ONCE", 7), ("ALERTS_AT_ONCE", 3), ("RECORD_EVERY", 2)):
        monkeypatch.setattr(lifecycle, name, value)
    lifecycle.series_queries.cache_clear()
    lifecycle.alert_queries.cache_clear()
    second = fresh_postgres_database()
    try:
        upgrade(second)
        pieces = month_by_month(config_dir, feed, second)
    finally:
        engine_for(second).dispose()
        drop_postgres_database(second)
        lifecycle.series_queries.cache_clear()
        lifecycle.alert_queries.cache_clear()

    assert sum(len(told) for told in whole[0]) > 50, "the feed churns: many changes to compare"
    assert len(whole[1]) > 3 * 2, "several fetches of alerts in the small pieces"
    assert pieces == whole
