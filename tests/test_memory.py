"""Memory stays flat with the size of what comes in: evaluation holds one series of a practice at a time."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from config import load_config
from feeds.ingest import ingest_path
from tests.conftest import TEST_CONFIG, subprocess_env

ROOT = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2026, 11, 5)  # the October feed is not yet due: no freshness alert
MONTHS = [f"{2024 + (9 + i) // 12}-{(9 + i) % 12 + 1:02d}" for i in range(25)]  # 2024-10 .. 2026-10
SEGMENTS = 4_000  # x 25 months = 100,000 values of one practice
BAD_SEGMENT = "provider:bad"
# What the evaluation may add to the peak RSS of a process that has already imported the code, loaded the config
# and connected. Read whole, the practice's 100,000 values took 78 MB above that; a series at a time, 17 MB.
EVALUATION_GROWTH_LIMIT_KB = 40 * 1024


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
