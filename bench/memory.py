"""Memory benchmark: one practice's very long CSV ingested, then evaluated, each in a fresh child process, with the
peak RSS of each against the RSS of a child that only imports the code and loads the config.

    .venv/bin/python -m bench.memory [--rows N]     # default 5,100,000 rows (issue 13, item 6)

1. Writes, deterministically, a long CSV of exactly N rows for ONE practice (bench.ingest's generator and config:
   `practice-01`, 1 billing vendor going live 2025-02-01, 10 billing KPIs x 25 months 2024-10..2026-10 x
   N / 250 segments), so the whole file is one practice's evaluation.
2. Creates a fresh PostgreSQL database (tests.support.services) and migrates it (storage.db.upgrade).
3. Baselines, in the same run: the floor, a spawned child that imports intake.ingest and alerts.evaluate and
   loads the config, then does nothing (its peak RSS is what every child below pays before any work); the bare
   COPY of the file into an unindexed table (as bench.ingest); a bare read of the practice's observations through
   the `observation` view, streamed (server-side cursor) and counted, in a child of its own.
4. Measured, each in a fresh child (multiprocessing `spawn`, so neither the generator's nor the other step's
   memory counts): `intake.ingest.ingest_path(...)`, then `alerts.evaluate.evaluate_practices(config,
   practice_id=practice-01, as_of=2026-11-23, now=<fixed>)`, the first evaluation (it creates the alerts), then
   the same again (steady state: every alert of the practice is read, none is new).
   Each child reports its own peak RSS (`VmHWM` of /proc/self/status: the high-water mark of its memory; not
   `ru_maxrss`, which after fork and exec starts from the parent's).
5. Unless --quick: ingest and evaluation one after the other in one child on a second fresh database, as one
   worker process may run `ingest.file` and then `alerts.evaluate`; its peak counts towards the goal.

The last line is `RESULT rows=N ingest_seconds=S ingest_peak_rss_mb=M evaluate_seconds=E evaluate_peak_rss_mb=P
steady_peak_rss_mb=T floor_rss_mb=F copy_seconds=C select_seconds=Q`. Goal: every peak (M, P, T and, unless
--quick, ingest and evaluation in one process) at most 500 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from bench.ingest import (
    BARE_DDL,
    KPIS,
    PERIODS,
    TODAY,
    checkpoint,
    libpq_url,
    practice_list,
    rate,
    say,
    time_copy,
    with_database,
    write_config,
    write_csv,
)

GOAL_RSS_MB = 500
NOW = dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC)
BARE_SELECT = ("SELECT vendor_id, kpi, segment, period, period_start, period_end, value FROM observation"
               " WHERE practice_id = %(practice)s")


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: after fork and exec, ru_maxrss starts from the parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def loaded(config_dir: str) -> Any:
    """What every child does first: import the code it runs and load the config."""
    import alerts.evaluate  # noqa: F401
    import intake.ingest  # noqa: F401
    from config import load_config

    return load_config(config_dir)


def child_floor(config_dir: str, _url: str, _csv: str) -> dict[str, Any]:
    loaded(config_dir)
    return {"seconds": 0.0, "peak_rss_mb": peak_rss_mb()}


def child_select(config_dir: str, url: str, _csv: str) -> dict[str, Any]:
    """Every observation of the practice read once and dropped: what any reader of them must at least pay."""
    config = loaded(config_dir)
    start = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor(name="bench_select") as cursor:
        cursor.itersize = 10_000
        cursor.execute(BARE_SELECT, {"practice": config.practices[0].id})
        rows = sum(1 for _ in cursor)
    return {"seconds": time.perf_counter() - start, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def child_ingest(config_dir: str, url: str, csv_path: str) -> dict[str, Any]:
    from intake.ingest import ingest_path
    from storage.db import engine_for

    config = loaded(config_dir)
    before = peak_rss_mb()
    start = time.perf_counter()
    result = ingest_path(Path(csv_path), config, source="bench", today=TODAY, database_url=url)
    seconds = time.perf_counter() - start
    engine_for(url).dispose()
    return {"seconds": seconds, "status": result.status, "rows": result.rows, "checked_in": result.checked_in,
            "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


def child_evaluate(config_dir: str, url: str, _csv: str) -> dict[str, Any]:
    from alerts.evaluate import evaluate_practices
    from storage.db import engine_for

    config = loaded(config_dir)
    before = peak_rss_mb()
    start = time.perf_counter()
    results = evaluate_practices(config, practice_id=config.practices[0].id, as_of=TODAY, now=NOW,
                                 database_url=url)
    seconds = time.perf_counter() - start
    engine_for(url).dispose()
    return {"seconds": seconds, "changes": sum(len(result.changes) for result in results),
            "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


def child_both(config_dir: str, url: str, csv_path: str) -> dict[str, Any]:
    ingested = child_ingest(config_dir, url, csv_path)
    evaluated = child_evaluate(config_dir, url, csv_path)
    return {"ingest": ingested, "evaluate": evaluated, "peak_rss_mb": peak_rss_mb()}


def in_child(work: Callable[[str, str, str], dict[str, Any]], config_dir: Path, url: str,
             csv_path: Path) -> dict[str, Any]:
    """`work` in a freshly spawned process: its peak RSS is its own, nothing inherited from this one."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(work, str(config_dir), url, str(csv_path)).result()


def measure(url: str, config_dir: Path, csv_path: Path, rows: int) -> dict[str, Any]:
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(BARE_DDL)
    checkpoint(url)
    copy = time_copy(csv_path, url)
    assert copy["rows"] == rows, f"COPY loaded {copy['rows']} rows, expected {rows}"
    floor = in_child(child_floor, config_dir, url, csv_path)
    checkpoint(url)
    ingest = in_child(child_ingest, config_dir, url, csv_path)
    assert ingest["status"] == "accepted" and ingest["rows"] == rows, (ingest["status"], ingest["rows"])
    checkpoint(url)
    select = in_child(child_select, config_dir, url, csv_path)
    assert select["rows"] == rows, f"the view holds {select['rows']} rows of the practice, expected {rows}"
    evaluate = in_child(child_evaluate, config_dir, url, csv_path)
    steady = in_child(child_evaluate, config_dir, url, csv_path)
    return {"copy": copy, "floor": floor, "ingest": ingest, "select": select, "evaluate": evaluate, "steady": steady}


def report(figures: dict[str, Any], rows: int) -> None:
    floor, copy, select = figures["floor"], figures["copy"], figures["select"]
    ingest, evaluate = figures["ingest"], figures["evaluate"]
    say(f"  floor (imports + config, no work): peak RSS {floor['peak_rss_mb']:.0f} MB")
    say(f"  baseline COPY into a bare table: {copy['seconds']:.2f} s ({rate(rows, copy['seconds'])})")
    say(f"  ingest_path: {ingest['seconds']:.2f} s ({ingest['seconds'] / copy['seconds']:.2f}x the COPY), "
        f"checked_in={ingest['checked_in']}; peak RSS {ingest['peak_rss_mb']:.0f} MB "
        f"({ingest['peak_rss_mb'] / floor['peak_rss_mb']:.2f}x the floor)")
    say(f"  baseline streamed SELECT of the practice's {select['rows']:,} observations: {select['seconds']:.2f} s, "
        f"peak RSS {select['peak_rss_mb']:.0f} MB")
    say(f"  evaluate_practices: {evaluate['seconds']:.2f} s ({evaluate['seconds'] / select['seconds']:.2f}x the "
        f"SELECT), {evaluate['changes']:,} alert changes; peak RSS {evaluate['peak_rss_mb']:.0f} MB "
        f"({evaluate['peak_rss_mb'] / floor['peak_rss_mb']:.2f}x the floor)")
    steady = figures["steady"]
    say(f"  evaluate_practices again (every alert now stored): {steady['seconds']:.2f} s, {steady['changes']:,} "
        f"alert changes; peak RSS {steady['peak_rss_mb']:.0f} MB ({steady['peak_rss_mb'] / floor['peak_rss_mb']:.2f}x"
        " the floor)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_100_000, help="data rows of the one practice (default 5.1M)")
    parser.add_argument("--quick", action="store_true", help="skip ingest + evaluation in one process")
    args = parser.parse_args(argv)
    if args.rows < len(KPIS) * len(PERIODS):
        parser.error(f"--rows must be at least {len(KPIS) * len(PERIODS)} (one segment)")
    rows = args.rows
    with tempfile.TemporaryDirectory(prefix="vw-bench-") as temp:
        directory = Path(temp)
        practices = practice_list()[:1]
        config_dir, csv_path = directory / "config", directory / "one-practice.csv"
        write_config(config_dir, practices)
        start = time.perf_counter()
        assert write_csv(csv_path, rows, practices) == rows
        say(f"bench.memory: {rows:,} rows of one practice ({len(KPIS)} KPIs x {len(PERIODS)} months x "
            f"{-(-rows // (len(KPIS) * len(PERIODS))):,} segments at most), {csv_path.stat().st_size / 1e6:.0f} MB "
            f"generated in {time.perf_counter() - start:.1f} s; load average {os.getloadavg()[0]:.2f}")
        figures = with_database(lambda url: measure(url, config_dir, csv_path, rows))
        report(figures, rows)
        peaks = [figures[step]["peak_rss_mb"] for step in ("ingest", "evaluate", "steady")]
        if not args.quick:
            both = with_database(lambda url: in_child(child_both, config_dir, url, csv_path))
            say(f"  diagnostic: ingest then evaluation in one child: {both['ingest']['seconds']:.2f} s + "
                f"{both['evaluate']['seconds']:.2f} s, peak RSS {both['peak_rss_mb']:.0f} MB")
            peaks.append(both["peak_rss_mb"])
    ingest, evaluate = figures["ingest"], figures["evaluate"]
    met = max(peaks) <= GOAL_RSS_MB
    say(f"load average at the end {os.getloadavg()[0]:.2f}")
    say(f"goal: ingest, evaluations (and both in one process) each peak at most {GOAL_RSS_MB} MB "
        f"({'met' if met else 'NOT met'})")
    say(f"RESULT rows={rows} ingest_seconds={ingest['seconds']:.2f} ingest_peak_rss_mb={ingest['peak_rss_mb']:.0f} "
        f"evaluate_seconds={evaluate['seconds']:.2f} evaluate_peak_rss_mb={evaluate['peak_rss_mb']:.0f} "
        f"steady_peak_rss_mb={figures['steady']['peak_rss_mb']:.0f} "
        f"floor_rss_mb={figures['floor']['peak_rss_mb']:.0f} copy_seconds={figures['copy']['seconds']:.2f} "
        f"select_seconds={figures['select']['seconds']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
