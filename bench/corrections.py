"""Corrections benchmark: a revised value for every row already stored, checked row by row (against feeds.bulk,
the in-database check, where it still exists: before issue 15 it took corrections; this benchmark decided that
the row-by-row path could take them instead, and feeds/bulk.py went).

    .venv/bin/python -m bench.corrections [--rows N] [--rounds K]

1. Writes bench.ingest's long CSV of N rows (default 1,000,000) and its config, then a correction of it: the same
   rows, keys and order, every value a little lower (still inside its KPI's bounds), so every row is a revision.
2. Per round and per path, a fresh migrated PostgreSQL database: the first file is ingested as production does
   (streamed, untimed), a CHECKPOINT, then the correction is ingested in a spawned child with only that path's
   check allowed (`fast=()`: row by row; `fast=("postgresql",)`: checked inside PostgreSQL by feeds.bulk, when
   the module exists). Wall clock around `ingest_path`; it must return `accepted` with every row revised.
   The paths alternate within a round, so both see the same minute of this machine.
3. The bare COPY of the correction into an unindexed table, as bench.ingest's baseline, in the same round.

The last line is `RESULT rows=N rows_seconds=S bulk_seconds=B ratio_rows_vs_bulk=R copy_seconds=C` (the round with
the median ratio); without feeds.bulk (the code since issue 15), `bulk_seconds` and the ratio are `n/a` and the
round is the one with the median ratio to the bare COPY. Issue 15, item 4: R <= 2 let the row-by-row path take
corrections, and feeds/bulk.py go (bench/README.md has the figures of both).
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from bench.ingest import (
    BARE_DDL,
    KPIS,
    TODAY,
    checkpoint,
    libpq_url,
    practice_list,
    say,
    scalar,
    time_copy,
    with_database,
    write_config,
    write_csv,
)

GOAL_RATIO = 2.0
DECIMALS = {key: decimals for key, _, _, decimals in KPIS}
LOWEST = {key: low for key, low, _, _ in KPIS}


def write_correction(first: Path, corrected: Path) -> int:
    """The first file with every value lowered by a tenth of a unit at its own precision (never below its KPI's
    lowest generated value, so it stays valid, and never equal to the first value)."""
    written = 0
    with first.open(encoding="utf-8") as source, corrected.open("w", encoding="utf-8", newline="") as out:
        out.write(source.readline())
        for line in source:
            practice, vendor, kpi, period, value, segment = line.rstrip("\n").split(",")
            step = 10.0 ** -DECIMALS[kpi]
            number = float(value)
            revised = number - step if number - step >= LOWEST[kpi] else number + step
            out.write(f"{practice},{vendor},{kpi},{period},{revised:.{DECIMALS[kpi]}f},{segment}\n")
            written += 1
    return written


def ingest_in_child(csv_path: str, config_dir: str, url: str, fast: tuple[str, ...]) -> dict[str, Any]:
    """Child process: load the config, ingest once with only `fast` allowed, report the time and counts."""
    from config import load_config
    from intake.ingest import ingest_path
    from storage.db import engine_for

    config = load_config(config_dir)
    start = time.perf_counter()
    result = ingest_path(Path(csv_path), config, source="bench", today=TODAY, database_url=url, fast=fast)
    seconds = time.perf_counter() - start
    engine_for(url).dispose()
    return {"status": result.status, "checked_in": result.checked_in, "rows": result.rows, "seconds": seconds,
            "inserted": result.counts.inserted if result.counts else None,
            "revised": result.counts.revised if result.counts else None,
            "problems": [str(problem) for problem in result.problems[:5]]}


def in_child(csv_path: Path, config_dir: Path, url: str, fast: tuple[str, ...]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(ingest_in_child, str(csv_path), str(config_dir), url, fast).result()


def correct(url: str, first: Path, corrected: Path, config_dir: Path, fast: tuple[str, ...], rows: int) -> float:
    """Seconds to ingest the correction after the first file, checked by `fast` only."""
    stored = in_child(first, config_dir, url, ("streamed",))
    assert (stored["status"], stored["rows"]) == ("accepted", rows), stored
    checkpoint(url)
    result = in_child(corrected, config_dir, url, fast)
    assert result["status"] == "accepted", (result["status"], result["problems"])
    assert (result["rows"], result["revised"]) == (rows, rows), result
    expected = "python" if not fast else "postgresql"
    assert result["checked_in"] == expected, f"checked in {result['checked_in']}, meant {expected}"
    assert scalar(url, "SELECT count(*) FROM observation_revision") == rows
    return float(result["seconds"])


def bare_copy(url: str, corrected: Path) -> float:
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(BARE_DDL)
    checkpoint(url)
    return float(time_copy(corrected, url)["seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.corrections", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    has_bulk = importlib.util.find_spec("feeds.bulk") is not None
    rounds: list[tuple[float, float | None, float]] = []
    with tempfile.TemporaryDirectory(prefix="vw-bench-corrections-") as tmp:
        folder = Path(tmp)
        config_dir = folder / "config"
        write_config(config_dir, practice_list())
        first, corrected = folder / "first.csv", folder / "corrected.csv"
        rows = write_csv(first, args.rows, practice_list())
        assert write_correction(first, corrected) == rows
        say(f"bench.corrections: {rows:,} rows stored, then every one revised; {os.cpu_count()} CPU(s), "
            f"load average {os.getloadavg()[0]:.2f}")
        for number in range(1, args.rounds + 1):
            by_rows = with_database(lambda url: correct(url, first, corrected, config_dir, (), rows))
            by_bulk = (with_database(lambda url: correct(url, first, corrected, config_dir, ("postgresql",), rows))
                       if has_bulk else None)
            copy = with_database(lambda url: bare_copy(url, corrected))
            rounds.append((by_rows, by_bulk, copy))
            versus = f", feeds.bulk {by_bulk:.2f} s, ratio {by_rows / by_bulk:.2f}" if by_bulk else ""
            say(f"  round {number}: row by row {by_rows:.2f} s{versus}; bare COPY {copy:.2f} s "
                f"(load average {os.getloadavg()[0]:.2f})")
    rounds.sort(key=lambda figures: figures[0] / (figures[1] or figures[2]))
    by_rows, by_bulk, copy = rounds[len(rounds) // 2]
    if by_bulk is None:
        say("feeds.bulk is gone: the row-by-row path is the only one that takes corrections")
        say(f"RESULT rows={rows} rows_seconds={by_rows:.2f} bulk_seconds=n/a ratio_rows_vs_bulk=n/a "
            f"copy_seconds={copy:.2f}")
        return 0
    ratio = by_rows / by_bulk
    say(f"goal (issue 15, item 4): row by row within {GOAL_RATIO:g}x of feeds.bulk: "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}")
    say(f"RESULT rows={rows} rows_seconds={by_rows:.2f} bulk_seconds={by_bulk:.2f} ratio_rows_vs_bulk={ratio:.2f} "
        f"copy_seconds={copy:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
