"""Ingest benchmark: a big MSO-style long CSV through the real ingest path, against a bare PostgreSQL COPY.

    .venv/bin/python -m bench.ingest [--rows N] [--rounds K] [--quick]

1. Writes, deterministically, a long CSV of exactly N rows (40 practices x 1 billing vendor x 10 billing KPIs x
   25 months x segments `all`, `provider:p0001`, ...) and a matching config directory, into a temp dir.
2. Creates a fresh PostgreSQL database (tests.support.services) and migrates it (storage.db.upgrade).
3. Baseline: `COPY bare FROM STDIN WITH (FORMAT csv, HEADER true)` of the same file into a bare table, streamed
   through psycopg in 1 MiB chunks; wall clock around connect, COPY and commit.
4. Measured: `intake.ingest.ingest_path(...)` in a spawned child process (so the generator's memory does not
   count); wall clock around the call; the child reports its own peak RSS (ru_maxrss).
   Steps 2 to 4 run --rounds times (default 3), each on a fresh database; the RESULT is the round with the median
   ratio (this machine's speed drifts from minute to minute; a round's two timings drift together), and the peak
   RSS the highest of all rounds.
5. Diagnostics (not part of the result): fingerprint, parse and parse+validate passes alone, in this process; and,
   unless --quick, the floor (the rows already resolved and sorted, COPYed into a table shaped like
   `observation_value` with its primary key: what PostgreSQL alone needs for this schema) and a second ingest
   into a second fresh database with timers wrapped around the phases of feeds.ingest (nothing in production
   code changes).

The last line is `RESULT rows=N seconds=S copy_seconds=C ratio_vs_copy=R peak_rss_mb=M`. Goal: R <= 2, M <= 300.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import yaml

TODAY = dt.date(2026, 11, 23)
GOAL_RATIO = 2.0
GOAL_RSS_MB = 300
CHUNK = 1 << 20
SEED = 20261123
PRACTICES = 40
VENDORS = ("acme-billing", "summit-rcm", "clearpath-billing", "meridian-rcm")
TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
REGIONS = ("northeast", "midwest", "mountain", "west")
# Billing KPIs of the bundled catalog: (key, low, high, decimals); percents in percent points.
KPIS = (
    ("days_in_ar", 28.0, 58.0, 1),
    ("denial_rate", 3.0, 14.0, 2),
    ("clean_claim_rate", 86.0, 99.0, 2),
    ("net_collection_rate", 90.0, 99.5, 2),
    ("ar_over_60_pct", 15.0, 35.0, 2),
    ("ar_over_90_pct", 5.0, 15.0, 2),
    ("charge_lag_days", 1.0, 8.0, 1),
    ("payment_posting_lag_days", 1.0, 6.0, 1),
    ("denial_turnaround_days", 5.0, 30.0, 1),
    ("cost_to_collect_pct", 2.0, 8.0, 2),
)
PERIODS = tuple(f"{2024 + (9 + i) // 12}-{(9 + i) % 12 + 1:02d}" for i in range(25))  # 2024-10 .. 2026-10
BARE_DDL = "CREATE TABLE bare (practice text, vendor text, kpi text, period text, value double precision, segment text)"
# The least any store that keeps one value per key could cost: the rows already resolved to an integer series key
# and dates, sorted by that key, COPYed with no parsing of names, no checks and no Python into a table shaped like
# observation_value, with its primary key (and, for contrast, without any index).
NARROW_ROWS = (
    "COPY (SELECT dense_rank() OVER (ORDER BY practice, vendor, kpi, segment), start, (start + interval '1 month"
    " - 1 day')::date, value, 0 FROM (SELECT *, to_date(period || '-01', 'YYYY-MM-DD') AS start"
    " FROM bare) b ORDER BY 1, 2) TO STDOUT"
)
NARROW_DDL = "CREATE TABLE {name} (LIKE observation_value INCLUDING DEFAULTS{key})"
NARROW_KEY = " INCLUDING INDEXES"


# -- data --------------------------------------------------------------------------------------------------------
def practice_list() -> list[dict[str, Any]]:
    practices = []
    for index in range(1, PRACTICES + 1):
        vendor = VENDORS[index % len(VENDORS)]
        practices.append({
            "id": f"practice-{index:02d}",
            "name": f"MSO Clinic {index:02d}",
            "timezone": TIMEZONES[index % len(TIMEZONES)],
            "region": REGIONS[index % len(REGIONS)],
            "annual_net_collectible": 400000 + 25000 * index,
            "staff_count": 6 + index % 15,
            "vendors": [{
                "id": vendor,
                "name": vendor.replace("-", " ").title(),
                "service": "billing",
                "go_live": dt.date(2025, 1 + index % 12, 1),
                "fee_pct": round(5.0 + (index % 5) * 0.5, 1),
                "cadence": "monthly",
                "due_day": 10,
                "grace_days": 3,
            }],
        })
    return practices


def write_config(directory: Path, practices: list[dict[str, Any]]) -> None:
    """practices.yaml and channels.yaml (dry run, no targets); kpis.yaml and surveys.yaml: the bundled ones."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "practices.yaml").write_text(yaml.safe_dump({"practices": practices}, sort_keys=False))
    (directory / "channels.yaml").write_text("dry_run: true\nurls: []\nroutes: []\n")


def segment_name(index: int) -> str:
    return "all" if index == 0 else f"provider:p{index:04d}"


def write_csv(path: Path, rows: int, practices: list[dict[str, Any]]) -> int:
    """Exactly `rows` data rows: every (practice, period, KPI) gets `rows // combos` segments, the first
    `rows % combos` of them one more. Returns the number of rows written."""
    rng = random.Random(SEED)
    combos = len(practices) * len(PERIODS) * len(KPIS)
    base, extra = divmod(rows, combos)
    written = combo = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("practice,vendor,kpi,period,value,segment\n")
        for practice in practices:
            practice_id, vendor_id = practice["id"], practice["vendors"][0]["id"]
            levels = {key: rng.uniform(low + (high - low) * 0.2, high - (high - low) * 0.2)
                      for key, low, high, _ in KPIS}
            for period in PERIODS:
                for key, low, high, decimals in KPIS:
                    segments = base + (1 if combo < extra else 0)
                    combo += 1
                    if not segments:
                        continue
                    level, spread = levels[key], (high - low) * 0.2
                    prefix = f"{practice_id},{vendor_id},{key},{period},"
                    lines = []
                    for segment in range(segments):
                        value = min(high, max(low, level + spread * (2 * rng.random() - 1)))
                        lines.append(f"{prefix}{value:.{decimals}f},{segment_name(segment)}\n")
                    out.write("".join(lines))
                    written += segments
    return written


# -- measurement helpers -----------------------------------------------------------------------------------------
def libpq_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def backend_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a local PostgreSQL backend has used so far; 0 when /proc cannot tell."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def checkpoint(url: str) -> None:
    """Start each timed phase with no dirty buffers left over from the previous one."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row else None


def time_copy(csv_path: Path, url: str) -> dict[str, float]:
    """The baseline: the file streamed into the bare table with COPY, in one transaction."""
    start = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn:
        pid = conn.info.backend_pid
        pg_start = backend_cpu(pid)
        with conn.cursor() as cursor:
            with cursor.copy("COPY bare FROM STDIN WITH (FORMAT csv, HEADER true)") as copy, \
                    csv_path.open("rb") as stream:
                while chunk := stream.read(CHUNK):
                    copy.write(chunk)
            rows = cursor.rowcount
        conn.commit()
        pg_cpu = backend_cpu(pid) - pg_start
    return {"seconds": time.perf_counter() - start, "rows": rows, "pg_cpu": pg_cpu}


def time_narrow_copies(url: str, csv_path: Path) -> dict[str, float]:
    """Seconds to COPY the resolved, sorted rows (NARROW_ROWS) into a narrow heap, and into one keyed by them."""
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(BARE_DDL)
    time_copy(csv_path, url)  # the bare table, filled (untimed), to resolve the rows from
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cursor:
        with cursor.copy(NARROW_ROWS) as copy:
            chunks = [bytes(chunk) for chunk in copy]
        cursor.execute(NARROW_DDL.format(name="narrow_heap", key=""))
        cursor.execute(NARROW_DDL.format(name="narrow_keyed", key=NARROW_KEY))
    seconds = {}
    for name in ("narrow_heap", "narrow_keyed"):
        checkpoint(url)
        start = time.perf_counter()
        with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cursor, \
                cursor.copy(f"COPY {name} FROM STDIN") as copy:
            for chunk in chunks:
                copy.write(chunk)
        seconds[name] = time.perf_counter() - start
    return seconds


# -- the measured ingest (runs in a spawned child) ----------------------------------------------------------------
def instrument(phases: list[tuple[str, float, float, float]], statements: dict[str, list[float]],
               marks: dict[str, float]) -> None:
    """Wrap the phases feeds.ingest calls with timers (wall, this process's CPU, the backend's CPU) and time
    every SQL statement; used only by the diagnostic split run."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import feeds.ingest as ingest_module
    import intake.ingest as intake_module

    backend: dict[str, int] = {}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall, cpu, pg = time.perf_counter(), own_cpu(), backend_cpu(backend.get("pid"))
            try:
                return function(*args, **kwargs)
            finally:
                phases.append((name, time.perf_counter() - wall, own_cpu() - cpu,
                               backend_cpu(backend.get("pid")) - pg))
        return wrapper

    intake_module.fingerprint = timed("fingerprint", intake_module.fingerprint)
    for name in ("claim_file", "store_first_delivery", "prepare_staging", "stage_row_by_row", "merge",
                 "staged_practices"):
        setattr(ingest_module, name, timed(name, getattr(ingest_module, name)))

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        backend["pid"] = dbapi_connection.info.backend_pid

    def before(conn: Any, _cursor: Any, _statement: str, _parameters: Any, context: Any, _many: bool) -> None:
        conn.info.setdefault("bench_start", []).append(time.perf_counter())

    def after(conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool) -> None:
        elapsed = time.perf_counter() - conn.info["bench_start"].pop()
        label = " ".join(statement.split())[:90]
        statements.setdefault(label, []).append(elapsed)

    def on_commit(_conn: Any) -> None:
        marks["commit_start"] = time.perf_counter()
        marks["commit_pg"] = backend_cpu(backend.get("pid"))
        marks["pid"] = backend.get("pid") or 0

    event.listen(Engine, "connect", on_connect)
    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    event.listen(Engine, "commit", on_commit)


def measure_ingest(csv_path: str, config_dir: str, url: str, split: bool = False) -> dict[str, Any]:
    """Child process: load the config, run the real ingest path once, report time, counts and peak RSS."""
    from config import load_config
    from intake.ingest import ingest_path
    from storage.db import engine_for

    phases: list[tuple[str, float, float, float]] = []
    statements: dict[str, list[float]] = {}
    marks: dict[str, float] = {}
    if split:
        instrument(phases, statements, marks)
    config = load_config(config_dir)
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_start = own_cpu()
    start = time.perf_counter()
    result = ingest_path(Path(csv_path), config, source="bench", today=TODAY, database_url=url)
    seconds = time.perf_counter() - start
    cpu = own_cpu() - cpu_start
    commit = (time.perf_counter() - marks["commit_start"]) if "commit_start" in marks else None
    engine_for(url).dispose()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    return {
        "status": result.status,
        "checked_in": result.checked_in,
        "rows": result.rows,
        "inserted": result.counts.inserted if result.counts else None,
        "revised": result.counts.revised if result.counts else None,
        "unchanged": result.counts.unchanged if result.counts else None,
        "practices": len(result.practices),
        "problems": [str(problem) for problem in result.problems[:5]],
        "seconds": seconds,
        "cpu": cpu,
        "rss_before_mb": rss_before_kb / 1024,
        "peak_rss_mb": peak_kb / 1024,
        "phases": phases,
        "statements": {label: (len(times), sum(times)) for label, times in statements.items()},
        "commit": commit,
    }


def checkpoint_then_ingest(url: str, csv_path: Path, config_dir: Path) -> dict[str, Any]:
    checkpoint(url)
    return in_child(csv_path, config_dir, url, split=True)


def in_child(csv_path: Path, config_dir: Path, url: str, split: bool = False) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_ingest, str(csv_path), str(config_dir), url, split).result()


# -- diagnostics ---------------------------------------------------------------------------------------------------
def diagnose_passes(csv_path: Path, config_dir: Path) -> list[tuple[str, float, int]]:
    """The Python-side work alone, no database: fingerprint, parse, parse+validate, +staging tuples."""
    from config import load_config
    from feeds.parse import fingerprint, stream_table
    from feeds.validate import FeedOrigin, ProblemLog, RowValidator, canonical_rows, validate_stream
    from storage.observations import staging_tuple

    config = load_config(config_dir)
    results = []
    start = time.perf_counter()
    fp = fingerprint(csv_path)
    results.append(("fingerprint (sha256 + utf-8 check)", time.perf_counter() - start, 0))

    def passes() -> Any:
        with csv_path.open("r", encoding=fp.encoding, errors="replace", newline="") as stream:
            yield stream_table(stream)

    start = time.perf_counter()
    for table in passes():
        count = sum(1 for _ in table.rows)
    results.append(("parse only (stream_table rows)", time.perf_counter() - start, count))

    for label, to_tuple in (("parse + validate (validate_stream)", False),
                            ("parse + validate + staging_tuple", True)):
        start = time.perf_counter()
        problems = ProblemLog()
        for table in passes():
            origin = FeedOrigin()
            rows = validate_stream(canonical_rows(table, config, origin).rows,
                                   RowValidator(config, origin, TODAY), problems)
            count = sum(1 for _ in (map(staging_tuple, rows) if to_tuple else rows))
        if problems.total:
            raise SystemExit(f"validation found {problems.total} problem(s): {problems[:3]}")
        results.append((label, time.perf_counter() - start, count))
    return results


def with_database(work: Callable[[str], Any]) -> Any:
    """Run `work(url)` against a fresh, migrated database; dispose every engine and drop it afterwards."""
    from storage.db import engine_for, upgrade
    from tests.support.services import drop_postgres_database, fresh_postgres_database

    url = fresh_postgres_database("vw_bench")
    try:
        upgrade(url)
        engine_for(url).dispose()
        return work(url)
    finally:
        engine_for(url).dispose()
        drop_postgres_database(url)


# -- report --------------------------------------------------------------------------------------------------------
def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "n/a"


def say(text: str = "") -> None:
    print(text, flush=True)


def print_split(split: dict[str, Any], passes: list[tuple[str, float, int]]) -> None:
    total = split["seconds"]
    say(f"  diagnostic ingest (second fresh database, timers around feeds.ingest phases): {total:.2f} s, "
        f"python CPU {split['cpu']:.2f} s")
    say(f"    {'phase':<26} {'wall s':>8} {'share':>6} {'python cpu s':>13} {'pg backend cpu s':>17}")
    accounted = 0.0
    for name, wall, cpu, pg in split["phases"]:
        accounted += wall
        say(f"    {name:<26} {wall:8.2f} {wall / total:6.0%} {cpu:13.2f} {pg:17.2f}")
    if split["commit"] is not None:
        accounted += split["commit"]
        say(f"    {'commit':<26} {split['commit']:8.2f} {split['commit'] / total:6.0%}")
    say(f"    {'other (session, config)':<26} {total - accounted:8.2f} {(total - accounted) / total:6.0%}")
    validate = next((seconds for label, seconds, _ in passes if label.startswith("parse + validate (")), None)
    stage = next((wall for name, wall, _, _ in split["phases"] if name == "stage_row_by_row"), None)
    if validate is not None and stage is not None:
        say(f"    stage {stage:.2f} s vs parse + validate alone {validate:.2f} s: streaming COPY into the staging "
            f"table adds ~{max(0.0, stage - validate):.2f} s (the server side runs on another core)")
    say("    SQL statements over 0.05 s (count x, total s):")
    for label, (count, seconds) in sorted(split["statements"].items(), key=lambda item: -item[1][1]):
        if seconds >= 0.05:
            say(f"      {seconds:8.2f} s  x{count:<3} {label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows in the CSV (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="baseline and ingest pairs, each on a fresh database; the median ratio is the RESULT")
    parser.add_argument("--quick", action="store_true",
                        help="skip the diagnostics that use the database again (indexed-insert floor, phase split)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rows = args.rows

    with tempfile.TemporaryDirectory(prefix="vw-bench-") as temp:
        directory = Path(temp)
        practices = practice_list()
        config_dir, csv_path = directory / "config", directory / "mso-billing.csv"
        write_config(config_dir, practices)
        start = time.perf_counter()
        written = write_csv(csv_path, rows, practices)
        assert written == rows, (written, rows)
        size = csv_path.stat().st_size
        say(f"bench.ingest: {rows:,} rows, {PRACTICES} practices x 1 billing vendor x {len(KPIS)} KPIs x "
            f"{len(PERIODS)} months ({PERIODS[0]}..{PERIODS[-1]}) x {-(-rows // (PRACTICES * len(KPIS) * 25))} "
            f"segment(s) at most")
        say(f"  generated {csv_path.name}: {size / 1e6:.1f} MB in {time.perf_counter() - start:.2f} s; "
            f"python {sys.version.split()[0]}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), "
            f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}")

        def measured(url: str, round_number: int) -> tuple[dict[str, Any], dict[str, Any]]:
            with psycopg.connect(libpq_url(url)) as conn:
                conn.execute(BARE_DDL)
                if round_number == 1:
                    say(f"  database: PostgreSQL {conn.info.server_version // 10000}, "
                        + ", ".join(f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
                                    for name in ("shared_buffers", "work_mem", "temp_buffers",
                                                 "synchronous_commit")))
            checkpoint(url)
            copy = time_copy(csv_path, url)
            assert copy["rows"] == rows, f"COPY loaded {copy['rows']} rows, expected {rows}"
            checkpoint(url)
            result = in_child(csv_path, config_dir, url)
            if result["problems"]:
                say("    first problems: " + "; ".join(result["problems"]))
            assert result["status"] == "accepted", f"ingest status {result['status']}"
            assert result["rows"] == rows, f"ingest stored {result['rows']} rows, expected {rows}"
            stored = scalar(url, "SELECT count(*) FROM observation")
            assert stored == rows, f"observation holds {stored} rows, expected {rows}"
            say(f"  round {round_number}: baseline COPY into bare table {copy['seconds']:.2f} s "
                f"({rate(rows, copy['seconds'])}, backend CPU {copy['pg_cpu']:.2f} s)")
            say(f"    ingest_path in a child process {result['seconds']:.2f} s ({rate(rows, result['seconds'])}, "
                f"python CPU {result['cpu']:.2f} s), checked_in={result['checked_in']} "
                f"inserted={result['inserted']}, observation holds {stored:,} rows; RSS "
                f"{result['rss_before_mb']:.0f} MB after imports and config, peak {result['peak_rss_mb']:.0f} MB")
            say(f"    ratio {result['seconds'] / copy['seconds']:.2f}")
            return copy, result

        measured_rounds = [with_database(lambda url, number=number: measured(url, number))  # type: ignore[misc]
                           for number in range(1, args.rounds + 1)]
        # The round with the median ratio: this machine's speed drifts by a third from minute to minute, and
        # both sides of one round drift together.
        measured_rounds.sort(key=lambda pair: pair[1]["seconds"] / pair[0]["seconds"])
        copy, result = measured_rounds[len(measured_rounds) // 2]
        seconds, copy_seconds = result["seconds"], copy["seconds"]
        peak = max(result["peak_rss_mb"] for _, result in measured_rounds)
        ratio = seconds / copy_seconds
        narrow = None if args.quick else with_database(lambda url: time_narrow_copies(url, csv_path))

        say("diagnostics (not part of the RESULT):")
        passes = diagnose_passes(csv_path, config_dir)
        for label, elapsed, count in passes:
            counted = f", {rate(count, elapsed)}" if count else f", {size / 1e6 / elapsed:,.0f} MB/s"
            say(f"  {label:<38} {elapsed:7.2f} s{counted}")
        if narrow is not None:
            say(f"  floor: the rows already resolved to (series id, period dates, value) and sorted, COPYed into "
                f"tables shaped like observation_value: {narrow['narrow_heap']:.2f} s with no index "
                f"({narrow['narrow_heap'] / copy_seconds:.2f}x the bare COPY), {narrow['narrow_keyed']:.2f} s with "
                f"that key as primary key ({narrow['narrow_keyed'] / copy_seconds:.2f}x)")
        if not args.quick:
            split = with_database(lambda url: checkpoint_then_ingest(url, csv_path, config_dir))
            assert split["status"] == "accepted" and split["rows"] == rows, split["status"]
            print_split(split, passes)

    say(f"load average at the end {os.getloadavg()[0]:.2f} (other processes on this machine skew the timings)")
    say(f"goal: ratio_vs_copy <= {GOAL_RATIO:g} ({'met' if ratio <= GOAL_RATIO else 'NOT met'}), "
        f"peak_rss_mb <= {GOAL_RSS_MB} ({'met' if peak <= GOAL_RSS_MB else 'NOT met'})")
    say(f"RESULT rows={rows} seconds={seconds:.2f} copy_seconds={copy_seconds:.2f} ratio_vs_copy={ratio:.2f} "
        f"peak_rss_mb={round(peak)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
