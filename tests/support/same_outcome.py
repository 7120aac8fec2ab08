"""One file through a fast path and through the row-by-row path, into two databases that see the same files in the
same order: outcome, problems and stored rows must be equal (`assert_same_outcome`). And generated long CSVs in the
shapes real exports take (whitespace, case, %, $, thousands, ratio units, week and day periods, BOM, cp1252,
semicolons, tabs, CRLF, quoted cells, blank rows) and with the damage they suffer (unknown names, future periods,
bad numbers, repeated keys), for tests/test_stream_ingest.py."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck
from hypothesis import strategies as st
from sqlalchemy import select, text

from config import Config
from intake.ingest import ingest_path
from storage.db import engine_for, session_scope, upgrade
from storage.models import Observation, ObservationRevision
from storage.uploads import IngestResult
from tests.support.services import drop_postgres_database, fresh_postgres_database

TODAY = dt.date(2026, 11, 23)
PRACTICE, VENDOR = "oakridge-fm", "acme-billing"
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


def database(name: str) -> Iterator[str]:
    url = fresh_postgres_database(name)
    upgrade(url)
    yield url
    engine_for(url).dispose()
    drop_postgres_database(url)


_names = itertools.count()


def ingest(data: bytes, config: Config, url: str, directory: Path, fast: tuple[str, ...]) -> IngestResult:
    """Ingest `data` as a new file, trying only the `fast` checks before the row-by-row one."""
    path = directory / f"feed-{next(_names)}.csv"
    path.write_bytes(data)
    try:
        return ingest_path(path, config, today=TODAY, database_url=url, fast=fast)
    finally:
        path.unlink()


def stored(url: str) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    with session_scope(url) as session:
        observations = {(o.practice_id, o.vendor_id, o.kpi, o.period, o.period_start, o.period_end, o.segment,
                         o.value) for o in session.scalars(select(Observation))}
        revisions = {(r.old_value, r.new_value) for r in session.scalars(select(ObservationRevision))}
    return observations, revisions


def assert_same_outcome(data: bytes, config: Config, fast_url: str, rows_url: str, directory: Path,
                        fast_checks: tuple[str, ...] = ("streamed",)) -> IngestResult:
    """Ingest `data` into `fast_url` trying `fast_checks` first, and into `rows_url` row by row only; both must
    end the same way and leave the same rows."""
    fast = ingest(data, config, fast_url, directory, fast_checks)
    slow = ingest(data, config, rows_url, directory, ())
    assert slow.checked_in in (None, "python")
    assert (fast.status, fast.rows, fast.counts, fast.problems, fast.problem_count) == (
        slow.status, slow.rows, slow.counts, slow.problems, slow.problem_count)
    assert stored(fast_url) == stored(rows_url)
    assert orphans(fast_url) == orphans(rows_url) == 0, "every observation names the feed file it came from"
    assert series_rows(fast_url) == series_rows(rows_url)
    return fast


def series_rows(url: str) -> list[tuple[str, ...]]:
    """Every series row by its names: one each, whichever path made it."""
    with session_scope(url) as session:
        query = text("SELECT practice_id, vendor_id, kpi, segment FROM series ORDER BY 1, 2, 3, 4")
        return [tuple(row) for row in session.execute(query)]


def orphans(url: str) -> int:
    """Observations whose feed_file row does not exist (no foreign key checks this since migration 0007)."""
    query = text("SELECT count(*) FROM observation o LEFT JOIN feed_file f ON f.id = o.feed_file_id"
                 " WHERE f.id IS NULL")
    with session_scope(url) as session:
        return int(session.execute(query).scalar_one())


# -- generated feeds ------------------------------------------------------------------------------------------------

PRACTICES = [PRACTICE, f" {PRACTICE} ", "oakridge", ""]
VENDORS = [VENDOR, "acme", " acme-billing"]
KPIS = {"days_in_ar": ["days_in_ar", "Days_In_AR"], "denial_rate": [" denial_rate ", "DENIAL_RATE"],
        "net_collection_rate": ["net_collection_rate"], "clean_claim_rate": ["clean_claim_rate"]}
PERIODS = {"2026-03": ["2026-03", "2026-3", " 2026-03 "], "2025-12": ["2025-12"], "2026-W10": ["2026-W10", "2026W10"],
           "2026-03-15": ["2026-03-15"]}
SEGMENTS = {"all": ["all", "ALL", ""], "payer:Aetna": ["payer:Aetna"], "provider:p0001": [" provider:p0001"],
            "location:Main St": ["location:Main St"], "provider:Dr Müller": ["provider:Dr Müller"]}
VALUES = ["41", "41.5", " 41 ", "5.5%", "0", "100", "7", "12.345678901234567", "$12.50", "1e1", "99.9%", "0.000"]
RATIOS = ["0.055", "0.5", "1", "0", ".25"]
UNITS = ["", "percent", "%", "ratio", "Ratio"]
DAMAGED = {"practice": ["oakridge", ""], "vendor": ["acme"], "kpi": ["denials", ""], "unit": ["bogus"],
           "period": ["2027-01", "2026-13", "", "March", "1999-12"], "segment": ["bad", "payer:"],
           "value": ["", "abc", "9,8", "(12)", "-3", "nan", "101", "1,234", "4_1", "4 1", "1e308"]}


@st.composite
def clean_rows(draw: st.DrawFn, columns: list[str]) -> list[dict[str, str]]:
    """Rows whose keys are all different, each key written in one of the ways exports write it."""
    keys = draw(st.lists(st.tuples(st.sampled_from(sorted(KPIS)), st.sampled_from(sorted(PERIODS)),
                                   st.sampled_from(sorted(SEGMENTS))), unique=True, min_size=1, max_size=25))
    rows = []
    for kpi, period, segment in keys:
        unit = draw(st.sampled_from(UNITS)) if "unit" in columns else ""
        rows.append({
            "practice": draw(st.sampled_from(PRACTICES[:2])), "vendor": VENDOR,
            "kpi": draw(st.sampled_from(KPIS[kpi])), "period": draw(st.sampled_from(PERIODS[period])),
            "segment": draw(st.sampled_from(SEGMENTS[segment])), "unit": unit,
            "value": draw(st.sampled_from(RATIOS if unit.lower() == "ratio" else VALUES)),
        })
    return rows


@st.composite
def long_csv(draw: st.DrawFn) -> bytes:
    columns = ["practice", "vendor", "kpi", "period", "value", "segment", *(["unit"] if draw(st.booleans()) else [])]
    columns = draw(st.permutations(columns))
    rows = draw(clean_rows(columns))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):  # damage: a bad cell, or a key given twice
        bad_cell: bool = draw(st.booleans())
        if rows and bad_cell:
            row = dict(draw(st.sampled_from(rows)))
            column = draw(st.sampled_from(columns))
            row[column] = draw(st.sampled_from(DAMAGED[column]))
            rows.append(row)
        elif rows:
            rows.append(draw(st.sampled_from(rows)))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    quote_all = draw(st.booleans())
    lines = [delimiter.join(draw(st.sampled_from([name, name.upper(), f" {name.title()} "])) for name in columns)]
    for row in draw(st.permutations(rows)):
        cells = [row[name] for name in columns]
        lines.append(delimiter.join(f'"{cell}"' if quote_all or delimiter in cell else cell for cell in cells))
        if draw(st.integers(0, 15)) == 0:
            lines.append(draw(st.sampled_from(["", delimiter * (len(columns) - 1)])))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + draw(st.sampled_from([newline, ""]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    return text.encode(encoding)


CLEAN_MESSY = (
    "\ufeffPractice;Vendor;KPI;Period;Value;Segment;Unit\r\n"
    f" {PRACTICE} ;{VENDOR};Days_In_AR;2026-3;41;all;\r\n"
    f"{PRACTICE};{VENDOR};denial_rate;2026-W10;0.055;payer:Aetna;ratio\r\n"
    f"{PRACTICE};{VENDOR};denial_rate;2026-03-15;5.5%;payer:Aetna;RATIO\r\n"
    f'{PRACTICE};{VENDOR};days_in_ar;2026-04;" 1,234 ";"location:Main St";\r\n'
).encode()

CLEAN_CP1252 = CLEAN_MESSY.decode("utf-8").removeprefix("\ufeff").replace("Main St", "Café Müller").encode("cp1252")
