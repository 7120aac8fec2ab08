"""Evaluation benchmark: every practice's alerts evaluated through the real path, against a bare SELECT of the same
observations in the same run.

    .venv/bin/python -m bench.evaluate [--practices N] [--profile] [--every-vendor-all-kpis]

For N practices (default 2,000) and again for N/10 (default 200), each in its own fresh PostgreSQL database:

1. Writes a config directory into a temp dir: practices.yaml (N practices p0001.., each with 3 vendors: billing,
   reminders, eligibility; go-live 2025-11-01, monthly), channels.yaml (dry run, no URLs, no routes); the bundled
   KPI catalog. Loaded with config.load_config.
2. Creates a fresh database (tests.support.services), migrates it (storage.db.upgrade) and COPYs straight into
   `feed_file` (one per practice and vendor), `series` and `observation_value`: 25 non-pulse catalog KPIs (11
   billing, 7 on the reminders vendor, 7 on the eligibility vendor; with --every-vendor-all-kpis all 25 on each
   vendor, 3x the rows)
   x 24 months, 2024-11..2026-10 (12 before go-live: the baseline; 12 after), segment `all`. Rows go in month
   by month, as monthly feeds would land them. Values are deterministic per practice (practice p0001 holds the
   same numbers at every size); a few percent of series turn bad in their last 1-6 months (past warn or crit, or
   15-40% worse than the baseline), so alerts fire. Then VACUUM ANALYZE and CHECKPOINT.
3. Baseline: `SELECT practice_id, vendor_id, kpi, segment, period, period_start, period_end, value FROM
   observation` fetched fully with SQLAlchemy `Connection.execute(...).fetchall()` on the same engine the
   evaluation uses (storage.db.engine_for); wall clock. A psycopg cursor fetchall is shown as a diagnostic.
4. Measured: `alerts.evaluate.evaluate_practices(config, as_of=2026-11-23, now=<fixed>, database_url=url)`, the
   first evaluation (it creates the alerts), on a freshly disposed pool; wall clock. A second evaluation (steady
   state: nothing changes) is a diagnostic. Each timed phase also reports this process's CPU time, the
   PostgreSQL backends' CPU time (/proc) and the load average, since the machine may be shared.

With --profile, a diagnostic run at N/10 practices in a third database: the first evaluation with timers around
the phases of alerts.lifecycle and every SQL statement timed, then (alerts deleted) again under cProfile.

The last line is `RESULT practices=N seconds=S select_seconds=Q ratio_vs_select=R scaling_2000_vs_200=K`, with
K = seconds(N) / seconds(N/10). Goal (issue 18, with SPC charting every series): R <= 2, K <= 10.5.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import hashlib
import os
import pstats
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
import yaml

AS_OF = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC)
GO_LIVE = dt.date(2025, 11, 1)
UPDATED_AT = "2026-11-10 06:00:00+00"
GOAL_RATIO = 2.0  # issue 18: with SPC on every series (was 3, issue 13)
GOAL_SCALING = 10.5
SEED = 20261123
BAD_SHARE = 0.03  # share of series that turn bad in their last months
BARE_SELECT = ("SELECT practice_id, vendor_id, kpi, segment, period, period_start, period_end, value "
               "FROM observation")
COPY_CHUNK_ROWS = 20_000
TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
REGIONS = ("northeast", "midwest", "mountain", "west")
# One slot per vendor a practice has: (service, [(vendor id, name), ...]); practices rotate through the companies.
VENDOR_SLOTS = (
    ("billing", (("acme-billing", "Acme Billing"), ("summit-rcm", "Summit RCM"), ("clearpath", "ClearPath"))),
    ("reminders", (("remindly", "Remindly"), ("ping-health", "Ping Health"))),
    ("eligibility", (("verifyrx", "VerifyRx"), ("eligible-now", "Eligible Now"), ("coverwise", "CoverWise"))),
)


def month_list() -> list[tuple[str, dt.date, dt.date]]:
    months = []
    for index in range(24):
        year, month = 2024 + (10 + index) // 12, (10 + index) % 12 + 1
        start = dt.date(year, month, 1)
        end = (dt.date(year + month // 12, month % 12 + 1, 1)) - dt.timedelta(days=1)
        months.append((f"{year:04d}-{month:02d}", start, end))
    return months


MONTHS = month_list()  # 2024-11 .. 2026-10
FIRST_AFTER_GO_LIVE = next(index for index, (_, start, _) in enumerate(MONTHS) if start >= GO_LIVE)


@dataclass(frozen=True)
class KpiSpec:
    """How one KPI's synthetic series looks: a level in [low, high], noise as a fraction of the level, and, for a
    bad series, either an absolute range past the catalog's bounds (`bad` "abs") or a relative worsening (`bad`
    "rel": 15-40% worse than the level, which the baseline rule's 10%/20% tolerance catches)."""

    key: str
    slot: int
    low: float
    high: float
    noise: float
    decimals: int
    bad: str = "rel"
    bad_low: float = 0.15
    bad_high: float = 0.40
    floor: float = 0.0
    ceiling: float = 100.0


KPIS = (
    # billing vendor: 11
    KpiSpec("days_in_ar", 0, 30, 40, 0.025, 1, "abs", 46, 56, ceiling=365),
    KpiSpec("denial_rate", 0, 3, 6, 0.06, 2, "abs", 8.5, 12.5),
    KpiSpec("clean_claim_rate", 0, 96.5, 99, 0.003, 2, "abs", 88, 94.5),
    KpiSpec("net_collection_rate", 0, 97, 99.5, 0.003, 2, "abs", 90, 95.5),
    KpiSpec("ar_over_60_pct", 0, 15, 28, 0.025, 2),
    KpiSpec("ar_over_90_pct", 0, 5, 11, 0.05, 2, "abs", 16, 28),
    KpiSpec("charge_lag_days", 0, 0.8, 2.2, 0.06, 1, "abs", 3.2, 6.5, ceiling=365),
    KpiSpec("payment_posting_lag_days", 0, 0.5, 1.5, 0.06, 2, "abs", 2.2, 6, ceiling=365),
    KpiSpec("denial_turnaround_days", 0, 5, 11, 0.05, 1, "abs", 15, 35, ceiling=365),
    KpiSpec("cost_to_collect_pct", 0, 3, 6.5, 0.03, 2, "abs", 8.2, 11),
    KpiSpec("net_collections", 0, 30_000, 120_000, 0.03, 2, ceiling=1e9),
    # reminders vendor: 7
    KpiSpec("no_show_rate", 1, 5, 14, 0.04, 2),
    KpiSpec("reminder_reach_rate", 1, 80, 94, 0.01, 2),
    KpiSpec("follow_up_completion_rate", 1, 60, 88, 0.02, 2),
    KpiSpec("survey_response_rate", 1, 12, 35, 0.03, 2),
    KpiSpec("patient_satisfaction", 1, 75, 92, 0.01, 1),
    KpiSpec("patient_complaints", 1, 0.5, 3, 0.04, 2, ceiling=1000),
    KpiSpec("intake_accuracy_rate", 1, 85, 97, 0.008, 2),
    # eligibility vendor: 7
    KpiSpec("eligibility_verified_rate", 2, 98.4, 99.8, 0.001, 2, "abs", 92, 97.8),
    KpiSpec("check_in_surprises", 2, 1, 5, 0.04, 2),
    KpiSpec("referral_completion_rate", 2, 50, 85, 0.02, 2),
    KpiSpec("transcription_turnaround_hours", 2, 6, 18, 0.04, 1, "abs", 26, 60, ceiling=1000),
    KpiSpec("prior_auth_turnaround_days", 2, 2, 9, 0.04, 1, ceiling=365),
    KpiSpec("enps", 2, 15, 50, 0.03, 0, floor=-100),
    KpiSpec("readiness_score", 2, 22, 28, 0.03, 0, "abs", 12, 17, floor=6, ceiling=30),
)


# -- data --------------------------------------------------------------------------------------------------------
def practice_id(index: int) -> str:
    return f"p{index + 1:04d}"


def vendor_of(index: int, slot: int) -> tuple[str, str, str]:
    service, companies = VENDOR_SLOTS[slot]
    vendor_id, name = companies[index % len(companies)]
    return vendor_id, name, service


def practice_list(count: int) -> list[dict[str, Any]]:
    practices = []
    for index in range(count):
        vendors = []
        for slot in range(len(VENDOR_SLOTS)):
            vendor_id, name, service = vendor_of(index, slot)
            vendors.append({"id": vendor_id, "name": name, "service": service, "go_live": GO_LIVE,
                            "cadence": "monthly", "due_day": 10, "grace_days": 3})
        practices.append({"id": practice_id(index), "name": f"Clinic {index + 1:04d}",
                          "timezone": TIMEZONES[index % len(TIMEZONES)], "region": REGIONS[index % len(REGIONS)],
                          "vendors": vendors})
    return practices


def write_config(directory: Path, count: int) -> None:
    """practices.yaml and channels.yaml (dry run, no targets, no routes); kpis.yaml: the bundled catalog with SPC
    charting every series (spc_catalog); surveys.yaml: bundled."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "practices.yaml").write_text(yaml.safe_dump({"practices": practice_list(count)}, sort_keys=False))
    (directory / "channels.yaml").write_text("dry_run: true\nurls: []\nroutes: []\n")
    write_spc_catalog(directory)


def write_spc_catalog(directory: Path) -> None:
    """The bundled kpis.yaml with SPC's baseline window before go-live. With the default (the 12 points after
    the learning period) no series of this data (12 months after go-live, 2 of them learning) has a full window
    yet, so SPC would cost nothing here; before go-live every series has its 12, so every one is charted."""
    from config import BUNDLED_DIR

    catalog = yaml.safe_load((BUNDLED_DIR / "kpis.yaml").read_text())
    catalog["defaults"]["spc"] = {**(catalog["defaults"].get("spc") or {}), "baseline": "pre_go_live"}
    (directory / "kpis.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))


@dataclass(frozen=True)
class Series:
    series_id: int
    names: str  # "practice\tvendor\tkpi\tall" for the series COPY line
    feed_file_id: int
    level: float
    noise: float  # absolute
    decimals: int
    floor: float
    ceiling: float
    bad_from: int  # month index from which the series is bad; 24 = never
    bad_level: float


def series_keys(every_vendor: bool) -> list[tuple[int, KpiSpec]]:
    """(vendor slot, KPI) of each series of a practice: each KPI on its own vendor (25 series), or, with
    `every_vendor`, every KPI on every vendor (75 series)."""
    if every_vendor:
        return [(slot, spec) for slot in range(len(VENDOR_SLOTS)) for spec in KPIS]
    return [(spec.slot, spec) for spec in KPIS]


def plan_practice(index: int, every_vendor: bool) -> tuple[random.Random, list[Series]]:
    """The series of one practice, from its own seeded generator (so a practice's data does not depend on N)."""
    rng = random.Random(f"{SEED}:{index}")
    pid = practice_id(index)
    series: list[Series] = []
    for slot, spec in series_keys(every_vendor):
        vendor_id = vendor_of(index, slot)[0]
        level = rng.uniform(spec.low, spec.high)
        bad_from, bad_level = len(MONTHS), level
        if rng.random() < BAD_SHARE:
            bad_from = len(MONTHS) - rng.randint(1, 6)
            better = better_of(spec.key)
            if spec.bad == "abs":
                bad_level = rng.uniform(spec.bad_low, spec.bad_high)
            else:
                worse = rng.uniform(spec.bad_low, spec.bad_high)
                bad_level = level * (1 + worse) if better == "lower" else level * (1 - worse)
        series.append(Series(index * len(KPIS) * len(VENDOR_SLOTS) + len(series) + 1,
                             f"{pid}\t{vendor_id}\t{spec.key}\tall", index * len(VENDOR_SLOTS) + slot + 1, level,
                             abs(level) * spec.noise, spec.decimals, spec.floor, spec.ceiling, bad_from, bad_level))
    return rng, series


_BETTER: dict[str, str] = {}


def better_of(key: str) -> str:
    """The catalog's `better` for a KPI (read once from the bundled kpis.yaml)."""
    if not _BETTER:
        from config import BUNDLED_DIR

        catalog = yaml.safe_load((BUNDLED_DIR / "kpis.yaml").read_text())
        _BETTER.update({name: kpi["better"] for name, kpi in catalog["kpis"].items()})
    return _BETTER[key]


def observation_lines(count: int, every_vendor: bool) -> Iterator[str]:
    """COPY text lines for `observation_value`, month by month (as monthly feeds land), practice by practice."""
    plans = [plan_practice(index, every_vendor) for index in range(count)]
    for month, (_label, start, end) in enumerate(MONTHS):
        period = f"\t{start.isoformat()}\t{end.isoformat()}\t"
        for rng, series in plans:
            lines = []
            for s in series:
                base = s.bad_level if month >= s.bad_from else s.level
                value = min(s.ceiling, max(s.floor, base + s.noise * (2 * rng.random() - 1)))
                lines.append(f"{s.series_id}{period}{value:.{s.decimals}f}\t{s.feed_file_id}\n")
            yield "".join(lines)


def libpq_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def load_observations(url: str, count: int, every_vendor: bool) -> dict[str, float]:
    """COPY feed_file rows (one per practice and vendor) and every observation; then VACUUM ANALYZE."""
    series = len(series_keys(every_vendor))
    per_vendor = len(MONTHS) * series // len(VENDOR_SLOTS)
    start = time.perf_counter()
    rows = 0
    with psycopg.connect(libpq_url(url)) as conn:
        with conn.cursor() as cursor:
            with cursor.copy("COPY feed_file (id, sha256, filename, source, practice_id, vendor_id, rows, "
                             "received_at) FROM STDIN") as copy:
                for index in range(count):
                    for slot in range(len(VENDOR_SLOTS)):
                        pid, vendor_id = practice_id(index), vendor_of(index, slot)[0]
                        digest = hashlib.sha256(f"{pid}/{vendor_id}".encode()).hexdigest()
                        copy.write(f"{index * len(VENDOR_SLOTS) + slot + 1}\t{digest}\t{pid}-{vendor_id}.csv\t"
                                   f"bench\t{pid}\t{vendor_id}\t{per_vendor}\t{UPDATED_AT}\n")
            with cursor.copy("COPY series (id, practice_id, vendor_id, kpi, segment) FROM STDIN") as copy:
                for index in range(count):
                    copy.write("".join(f"{s.series_id}\t{s.names}\n" for s in plan_practice(index, every_vendor)[1]))
            with cursor.copy("COPY period_label (period_start, period_end, label) FROM STDIN") as copy:
                for label, first, last in MONTHS:
                    copy.write_row((first, last, label))
            with cursor.copy("COPY observation_value (series_id, period_start, period_end, value, feed_file_id)"
                             " FROM STDIN") as copy:
                buffer: list[str] = []
                for chunk in observation_lines(count, every_vendor):
                    buffer.append(chunk)
                    if len(buffer) * series >= COPY_CHUNK_ROWS:
                        copy.write("".join(buffer))
                        buffer.clear()
                copy.write("".join(buffer))
            rows = cursor.rowcount
            for table in ("feed_file", "series"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}))")
        conn.commit()
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return {"rows": rows, "load_seconds": loaded, "vacuum_seconds": time.perf_counter() - start}


# -- measurement helpers -----------------------------------------------------------------------------------------
def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backend_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a local PostgreSQL backend has used so far; 0 when /proc cannot tell."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_select(url: str) -> dict[str, float]:
    """The baseline: every observation's evaluated columns through SQLAlchemy, fetched fully."""
    from storage.db import engine_for

    gc.collect()
    load = os.getloadavg()[0]
    cpu = own_cpu()
    start = time.perf_counter()
    with engine_for(url).connect() as conn:
        pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        pg_start = backend_cpu(pid)
        rows = conn.execute(sqlalchemy.text(BARE_SELECT)).fetchall()
        pg_cpu = backend_cpu(pid) - pg_start
    seconds = time.perf_counter() - start
    cpu = own_cpu() - cpu
    count = len(rows)
    del rows
    gc.collect()
    start = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as raw_conn, raw_conn.cursor() as cursor:
        cursor.execute(BARE_SELECT)
        raw = cursor.fetchall()
    raw_seconds = time.perf_counter() - start
    assert len(raw) == count
    del raw
    gc.collect()
    return {"seconds": seconds, "rows": count, "cpu": cpu, "pg_cpu": pg_cpu, "load": load,
            "psycopg_seconds": raw_seconds}


def time_evaluation(config: Any, url: str) -> dict[str, Any]:
    """evaluate_practices on a fresh pool; wall clock, this process's CPU and its PostgreSQL backends' CPU."""
    from sqlalchemy import event

    from alerts.evaluate import evaluate_practices
    from storage.db import engine_for

    engine = engine_for(url)
    engine.dispose()
    backends: dict[int, float] = {}

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        pid = dbapi_connection.info.backend_pid
        backends[pid] = backend_cpu(pid)

    event.listen(engine, "connect", on_connect)
    gc.collect()
    load = os.getloadavg()[0]
    cpu = own_cpu()
    start = time.perf_counter()
    try:
        results = evaluate_practices(config, as_of=AS_OF, now=NOW, database_url=url)
        seconds = time.perf_counter() - start
        cpu = own_cpu() - cpu
        pg_cpu = sum(backend_cpu(pid) - at_connect for pid, at_connect in backends.items())
    finally:
        event.remove(engine, "connect", on_connect)
    changes = [change for result in results for change in result.changes]
    return {"seconds": seconds, "cpu": cpu, "pg_cpu": pg_cpu, "load": load, "practices": len(results),
            "changes": len(changes),
            "notifications": sum(1 for result in results if result.notification_id is not None)}


def cpu_note(run: dict[str, Any]) -> str:
    """Where the wall clock went; the two CPUs can overlap (client and server work in parallel), so the rest is a
    lower bound of the time neither side was running: round trips, fsync, waiting for a CPU on a busy machine."""
    rest = max(0.0, run["seconds"] - run["cpu"] - run["pg_cpu"])
    return (f"python CPU {run['cpu']:.2f} s, PostgreSQL backend CPU {run['pg_cpu']:.2f} s, rest {rest:.2f} s; "
            f"load average {run['load']:.1f} at start")


def alert_counts(url: str) -> dict[str, Any]:
    with psycopg.connect(libpq_url(url)) as conn:
        by_rule = conn.execute("SELECT rule, state, count(*) FROM alert GROUP BY rule, state ORDER BY rule, state")
        counts = {"by_rule": [(rule, state, n) for rule, state, n in by_rule]}
        for table in ("alert", "alert_event", "notification"):
            counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        counts["series_alerting"] = conn.execute(
            "SELECT count(DISTINCT (practice_id, vendor_id, kpi, segment)) FROM alert"
            " WHERE rule NOT IN ('freshness', 'pulse_overdue')"
        ).fetchone()[0]  # type: ignore[index]
    return counts


def with_database(work: Callable[[str], Any]) -> Any:
    """Run `work(url)` against a fresh, migrated database; dispose the engine and drop it afterwards."""
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


def say(text: str = "") -> None:
    print(text, flush=True)


# -- one size ----------------------------------------------------------------------------------------------------
def run_size(count: int, directory: Path, every_vendor: bool) -> dict[str, Any]:
    from config import load_config
    from storage.db import engine_for

    config_dir = directory / f"config-{count}"
    write_config(config_dir, count)
    start = time.perf_counter()
    config = load_config(config_dir)
    say(f"[{count:,} practices] config loaded in {time.perf_counter() - start:.2f} s "
        f"({len(config.practices):,} practices, {sum(len(p.vendors) for p in config.practices):,} vendors)")

    def measured(url: str) -> dict[str, Any]:
        loaded = load_observations(url, count, every_vendor)
        series = count * len(series_keys(every_vendor))
        expected = series * len(MONTHS)
        assert loaded["rows"] == expected, (loaded["rows"], expected)
        say(f"  loaded {loaded['rows']:,} observations + {count * len(VENDOR_SLOTS):,} feed files with COPY in "
            f"{loaded['load_seconds']:.2f} s; VACUUM ANALYZE + CHECKPOINT {loaded['vacuum_seconds']:.2f} s")
        select = time_select(url)
        assert select["rows"] == expected
        say(f"  bare SELECT, SQLAlchemy Connection.execute().fetchall(): {select['seconds']:.2f} s "
            f"({select['rows'] / select['seconds']:,.0f} rows/s); psycopg cursor fetchall (diagnostic): "
            f"{select['psycopg_seconds']:.2f} s")
        say(f"    {cpu_note(select)}")
        engine_for(url).dispose()
        first = time_evaluation(config, url)
        counts = alert_counts(url)
        say(f"  evaluate_practices, first run: {first['seconds']:.2f} s, "
            f"{1000 * first['seconds'] / count:.2f} ms per practice; ratio vs bare SELECT "
            f"{first['seconds'] / select['seconds']:.2f}")
        say(f"    {cpu_note(first)}")
        say(f"    alerts created: {counts['alert']:,} ({counts['series_alerting']:,} of {series:,} series, "
            f"{counts['series_alerting'] / series:.1%}); alert events {counts['alert_event']:,}; notified changes "
            f"{first['changes']:,}; notifications {counts['notification']:,} (no routes)")
        say("    by rule: " + ", ".join(f"{rule}/{state} {n:,}" for rule, state, n in counts["by_rule"]))
        steady = time_evaluation(config, url)
        after = alert_counts(url)
        say(f"  evaluate_practices, second run (steady state, diagnostic): {steady['seconds']:.2f} s, "
            f"{1000 * steady['seconds'] / count:.2f} ms per practice; changes {steady['changes']}, new alert events "
            f"{after['alert_event'] - counts['alert_event']}")
        say(f"    {cpu_note(steady)}")
        return {"select": select, "first": first, "steady": steady, "counts": counts}

    return with_database(measured)


# -- diagnostics -------------------------------------------------------------------------------------------------
# Timed when alerts.lifecycle has them; apply_event runs inside evaluate_kpi and the other evaluate_* phases.
# Reads: a batch's values (psycopg's own cursor, so not among the SQL statements timed) and alerts.
PHASES = ("Reads", "active_silences", "evaluate_kpi", "apply_event", "record", "evaluate_freshness",
          "evaluate_pulse_overdue", "enqueue_message")
NESTED = ("apply_event",)


def split_run(config: Any, url: str) -> dict[str, Any]:
    """The first evaluation with timers around alerts.lifecycle's phases and every SQL statement timed."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    import alerts.lifecycle as lifecycle
    from storage.db import engine_for

    phases = [name for name in PHASES if callable(getattr(lifecycle, name, None))]
    totals: dict[str, list[float]] = {name: [0, 0.0] for name in phases}
    statements: dict[str, list[float]] = {}
    originals = {name: getattr(lifecycle, name) for name in phases}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[name][0] += 1
                totals[name][1] += time.perf_counter() - start
        return wrapper

    def before(conn: Any, _cursor: Any, _statement: str, _parameters: Any, _context: Any, _many: bool) -> None:
        conn.info.setdefault("bench_start", []).append(time.perf_counter())

    def after(conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool) -> None:
        elapsed = time.perf_counter() - conn.info["bench_start"].pop()
        label = " ".join(statement.split())[:80]
        entry = statements.setdefault(label, [0, 0.0])
        entry[0] += 1
        entry[1] += elapsed

    def on_commit(_conn: Any) -> None:  # the engine's "commit" fires just before the DBAPI commit
        pending["commit"] = time.perf_counter()

    def after_commit(_session: Any) -> None:  # the session's "after_commit" fires just after it
        if "commit" in pending:
            entry = statements.setdefault("COMMIT", [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - pending.pop("commit")

    pending: dict[str, float] = {}
    engine = engine_for(url)
    listeners = (("before_cursor_execute", before), ("after_cursor_execute", after), ("commit", on_commit))
    for name, function in listeners:
        event.listen(engine, name, function)
    event.listen(Session, "after_commit", after_commit)
    for name in phases:
        setattr(lifecycle, name, timed(name, originals[name]))
    try:
        result = time_evaluation(config, url)
    finally:
        for name in phases:
            setattr(lifecycle, name, originals[name])
        for name, function in listeners:
            event.remove(engine, name, function)
        event.remove(Session, "after_commit", after_commit)
    return {"result": result, "phases": totals, "statements": statements}


def profile_run(config: Any, url: str, top: int = 15) -> tuple[float, list[str]]:
    from alerts.evaluate import evaluate_practices

    gc.collect()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    evaluate_practices(config, as_of=AS_OF, now=NOW, database_url=url)
    profiler.disable()
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    lines = []
    for title, column in (("cumulative", 3), ("own time (tottime)", 2)):
        lines.append(f"  top {top} by {title}:")
        lines.append(f"    {'ncalls':>10} {'tottime':>8} {'cumtime':>8}  function")
        for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in sorted(
                stats.items(), key=lambda item: -item[1][column])[:top]:
            lines.append(f"    {calls:>10,} {tottime:8.2f} {cumtime:8.2f}  {function} ({short_path(filename)}:{line})")
    return seconds, lines


def short_path(filename: str) -> str:
    for marker in ("site-packages/", str(Path(__file__).resolve().parent.parent) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def reset_alerts(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("DELETE FROM alert_event")
        conn.execute("DELETE FROM notification")
        conn.execute("DELETE FROM alert")
        conn.execute("VACUUM ANALYZE alert_event, notification, alert")


def diagnose(count: int, directory: Path, every_vendor: bool) -> None:
    from config import load_config
    from storage.db import engine_for

    config = load_config(directory / f"config-{count}")

    def work(url: str) -> None:
        load_observations(url, count, every_vendor)
        engine_for(url).dispose()
        split = split_run(config, url)
        total = split["result"]["seconds"]
        say(f"  first evaluation with phase timers ({count:,} practices, fresh database): {total:.2f} s; "
            f"{cpu_note(split['result'])}")
        say(f"    {'phase (alerts.lifecycle)':<28} {'calls':>9} {'seconds':>8} {'share':>6}")
        for name, (calls, seconds) in split["phases"].items():
            note = "  (inside the evaluate_* phases)" if name in NESTED else ""
            say(f"    {name:<28} {int(calls):>9,} {seconds:8.2f} {seconds / total:6.0%}{note}")
        outside = total - sum(seconds for name, (_, seconds) in split["phases"].items() if name not in NESTED)
        say(f"    {'rest (locks, remits, settle, commit)':<38} {outside:8.2f} {outside / total:6.0%}")
        say("    SQL statements (count, total s, mean ms):")
        for label, (calls, seconds) in sorted(split["statements"].items(), key=lambda item: -item[1][1])[:8]:
            say(f"      {int(calls):>7,} {seconds:7.2f} s {1000 * seconds / calls:6.2f} ms  {label}")
        reset_alerts(url)
        engine_for(url).dispose()
        seconds, lines = profile_run(config, url)
        say(f"  first evaluation under cProfile (alerts deleted, same data): {seconds:.2f} s")
        for line in lines:
            say(line)

    with_database(work)


# -- main --------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--practices", type=int, default=2000, help="practices in the big run (default 2,000); "
                        "the scaling run uses a tenth of it")
    parser.add_argument("--profile", action="store_true",
                        help="diagnostic: phase timers and cProfile of a first evaluation at the small size")
    parser.add_argument("--every-vendor-all-kpis", action="store_true",
                        help="each of the 3 vendors reports all 25 KPIs (75 series per practice, 3.6M rows at "
                             "2,000) instead of the 25 KPIs spread 11 + 7 + 7 over the vendors")
    args = parser.parse_args(argv)
    if args.practices < 1:
        parser.error("--practices must be at least 1")
    big, small = args.practices, max(1, args.practices // 10)

    spread = " + ".join(str(sum(1 for k in KPIS if k.slot == slot)) for slot in range(len(VENDOR_SLOTS)))
    kpis = f"{len(KPIS)} KPIs on each vendor" if args.every_vendor_all_kpis else f"{len(KPIS)} KPIs ({spread})"
    say(f"bench.evaluate: {big:,} and {small:,} practices x {len(VENDOR_SLOTS)} vendors "
        f"({', '.join(service for service, _ in VENDOR_SLOTS)}) x {kpis} x {len(MONTHS)} months "
        f"({MONTHS[0][0]}..{MONTHS[-1][0]}), segment all; go-live {GO_LIVE}, as_of {AS_OF}, now {NOW.isoformat()}")
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as conn:
        settings = ", ".join(f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
                             for name in ("shared_buffers", "work_mem", "synchronous_commit"))
        server = conn.info.server_version // 10000
    say(f"  python {sys.version.split()[0]}, SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__} "
        f"({psycopg.pq.__impl__}), {os.cpu_count()} CPU(s); PostgreSQL {server}, {settings}")

    with tempfile.TemporaryDirectory(prefix="vw-bench-") as temp:
        directory = Path(temp)
        every = args.every_vendor_all_kpis
        small_run = run_size(small, directory, every)
        big_run = run_size(big, directory, every)
        if args.profile:
            say(f"diagnostics at {small:,} practices (not part of the RESULT):")
            diagnose(small, directory, every)

    seconds, select_seconds = big_run["first"]["seconds"], big_run["select"]["seconds"]
    ratio = seconds / select_seconds
    scaling = seconds / small_run["first"]["seconds"]
    say(f"{big:,} practices: evaluation {seconds:.2f} s ({1000 * seconds / big:.2f} ms/practice), bare SELECT "
        f"{select_seconds:.2f} s; {small:,} practices: evaluation {small_run['first']['seconds']:.2f} s "
        f"({1000 * small_run['first']['seconds'] / small:.2f} ms/practice)")
    say(f"goal: ratio_vs_select <= {GOAL_RATIO:g} ({'met' if ratio <= GOAL_RATIO else 'NOT met'}), "
        f"scaling_2000_vs_200 <= {GOAL_SCALING:g} ({'met' if scaling <= GOAL_SCALING else 'NOT met'})")
    say(f"RESULT practices={big} seconds={seconds:.2f} select_seconds={select_seconds:.2f} "
        f"ratio_vs_select={ratio:.2f} scaling_2000_vs_200={scaling:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
