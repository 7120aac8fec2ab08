"""A first delivery streamed into observation_value (feeds.stream) stores what the row-by-row check stores.

Every file goes to two fresh PostgreSQL databases: one where the streamed path may run first, one where only the
row-by-row path runs. Status, counts, problems and the stored rows must be equal. Then the cases only the streamed
path has: a re-delivery found before its first line is sent, one found by the primary key at the end, a key the
file repeats, and a series another file creates at the same moment.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import example, given, settings
from sqlalchemy import text

import feeds.stream
from config import BUNDLED_DIR, Config, load_config
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.uploads import IngestResult
from tests.support.same_outcome import (
    CLEAN_CP1252,
    CLEAN_MESSY,
    PRACTICE,
    SETTINGS,
    TODAY,
    VENDOR,
    database,
    long_csv,
    stored,
)
from tests.support.same_outcome import assert_same_outcome as same_outcome

STREAMED = ("streamed",)


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


@pytest.fixture(scope="module")
def stream_url() -> Iterator[str]:
    yield from database("vw_stream")


@pytest.fixture(scope="module")
def rows_url() -> Iterator[str]:
    yield from database("vw_rows")


def assert_same_outcome(data: bytes, config: Config, stream_url: str, rows_url: str, directory: Path) -> IngestResult:
    return same_outcome(data, config, stream_url, rows_url, directory, STREAMED)


def scalar(url: str, query: str) -> object:
    with session_scope(url) as session:
        return session.execute(text(query)).scalar_one()


@settings(max_examples=120, **SETTINGS)
@given(data=long_csv())
@example(data=CLEAN_MESSY)
@example(data=CLEAN_CP1252)
def test_the_streamed_path_stores_the_same_rows_and_names_the_same_problems(
    data: bytes, config: Config, stream_url: str, rows_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert_same_outcome(data, config, stream_url, rows_url, tmp_path_factory.mktemp("stream"))


def test_a_clean_file_in_the_messy_shapes_of_real_exports_is_streamed(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    data = CLEAN_MESSY.replace(b"2026-", b"2019-")  # keys of their own: not a correction of the example above
    result = assert_same_outcome(data, config, stream_url, rows_url, tmp_path)

    assert (result.status, result.rows, result.checked_in) == ("accepted", 4, "streamed")


@pytest.mark.parametrize("damage, problem", [
    (b"denials;2026-W10;0.055;payer:Aetna;ratio", "unknown KPI"),
    (b"denial_rate;2027-W10;0.055;payer:Aetna;ratio", "period is in the future"),
    (b"denial_rate;2026-W10;abc;payer:Aetna;ratio", "not a number"),
    (b"denial_rate;2026-W10;0.055;payer:Aetna;bogus", "unit must be percent or ratio"),
    (b"denial_rate;2026-W10;1.055;payer:Aetna;ratio", "percent outside 0-100"),
    (b"denial_rate;2026-W10;0.055;Aetna;ratio", "segment must be"),
])
def test_a_file_with_a_problem_is_left_to_the_row_by_row_check_which_names_it(
    damage: bytes, problem: str, config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    data = CLEAN_MESSY.replace(b"denial_rate;2026-W10;0.055;payer:Aetna;ratio", damage)
    assert data != CLEAN_MESSY

    result = assert_same_outcome(data, config, stream_url, rows_url, tmp_path)

    assert result.status == "rejected"
    assert [p.row for p in result.problems] == [3] and problem in result.problems[0].message


@pytest.mark.parametrize("ending", [b"\n\n", b"\n\n\n", b"\r\n\r\n"])
def test_a_file_ending_in_blank_lines_is_still_streamed(
    ending: bytes, config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    data = feed("days_in_ar,2025-01,38.5,all", "days_in_ar,2025-01,41,payer:Aetna", "denial_rate,2025-01,6.2%,all")
    data = data.replace(b"\n", b"\r\n" if b"\r" in ending else b"\n").rstrip(b"\r\n") + ending
    data = data.replace(b"2025-01", f"2021-0{len(ending)}".encode())  # keys of their own for each ending

    result = assert_same_outcome(data, config, stream_url, rows_url, tmp_path)

    assert (result.status, result.rows, result.checked_in) == ("accepted", 3, "streamed")


def feed(*rows: str) -> bytes:
    return ("practice,vendor,kpi,period,value,segment\n"
            + "".join(f"{PRACTICE},{VENDOR},{row}\n" if row else "\n" for row in rows)).encode()


def test_quoted_cells_even_one_spanning_lines_are_read_as_the_csv_reader_reads_them(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    """Lines with no quote are split on the delimiter; a line with one goes to the CSV reader, which reads on into
    the next line when a quoted cell spans it. Both paths must then agree, and a clean file is still streamed."""
    clean = ("practice;vendor;kpi;period;value;segment\r\n"
             f'{PRACTICE};{VENDOR};days_in_ar;2024-07;" 1,234 ";"location:Main St"\r\n'
             f"{PRACTICE};{VENDOR};days_in_ar;2024-08;41;location:Main St\r\n"
             f'"{PRACTICE}";{VENDOR};denial_rate;2024-08;5.5%;all\r\n').encode()
    result = assert_same_outcome(clean, config, stream_url, rows_url, tmp_path)
    assert (result.status, result.checked_in, result.rows) == ("accepted", "streamed", 3)
    days_in_ar = {(row[3], row[6], row[7]) for row in stored(stream_url)[0] if row[2] == "days_in_ar"}
    assert {("2024-07", "location:Main St", 1234.0), ("2024-08", "location:Main St", 41.0)} <= days_in_ar

    spanning = clean.replace(b"2024-0", b"2023-0").replace(b'"location:Main St"', b'"location:Main\r\nSt"')
    refused = assert_same_outcome(spanning, config, stream_url, rows_url, tmp_path)
    assert refused.status == "rejected"
    assert [(problem.row, problem.column) for problem in refused.problems] == [(2, "segment")]


def test_a_file_read_in_many_small_blocks_stores_every_row_once(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of 300 bytes: series, periods (of three kinds) and value texts recur across blocks, a quoted value
    cell holds a line break, two rows have only empty cells; every block is judged and sorted on its own."""
    monkeypatch.setattr(feeds.stream, "BLOCK_BYTES", 300)
    blocks: list[int] = []
    copy_rows = feeds.stream.Streamer.copy_rows

    def counted(self: feeds.stream.Streamer, block: Any, feed_file_id: int) -> Any:
        blocks.append(len(block))
        return copy_rows(self, block, feed_file_id)

    monkeypatch.setattr(feeds.stream.Streamer, "copy_rows", counted)
    periods = ["2023-01", "2023-02", "2023-W05", "2023-W06", "2023-02-14"]
    rows = [f"{kpi},{period},{value}{index % 10},{segment}"
            for index, (kpi, value, period, segment) in enumerate(
                (kpi, value, period, segment) for kpi, value in (("days_in_ar", "3"), ("denial_rate", "0.0"))
                for period in periods for segment in ("all", "payer:Aetna", '"location:North, Suite 2"'))]
    rows.append('days_in_ar,2023-03,"41\n",all')
    lines = feed(*rows).splitlines(keepends=True)
    data = b"".join([*lines[:5], b",,,,,\n", b" , ,,, ,\n", *lines[5:]])
    result = assert_same_outcome(data, config, stream_url, rows_url, tmp_path)

    assert (result.status, result.checked_in, result.rows) == ("accepted", "streamed", len(rows)), \
        "rows of empty cells are skipped, as row by row, not a reason to leave the streamed path"
    assert len(blocks) >= 4 and sum(blocks) == len(rows) + 2, blocks
    stored_here = {(row[3], row[4], row[5], row[6], row[7]) for row in stored(stream_url)[0]
                   if row[3] in (*periods, "2023-03")}
    assert len(stored_here) == len(rows)
    assert ("2023-W05", dt.date(2023, 1, 30), dt.date(2023, 2, 5), "location:North, Suite 2", 38.0) in stored_here
    assert ("2023-03", dt.date(2023, 3, 1), dt.date(2023, 3, 31), "all", 41.0) in stored_here


def test_a_file_naming_neither_practice_nor_vendor_with_start_and_end_columns_is_streamed(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    """The practice and vendor come from the operator (or the inbox folder); the period from two date columns.
    Each span gets the label storage.periods gives it, stored once in period_label."""
    data = (b"KPI,Period_Start,Period_End,Value\n"
            b"days_in_ar,2022-01-01,2022-01-31,40\n"
            b"days_in_ar,2022-01-03,2022-01-09,41\n"
            b"days_in_ar,2022-01-01,2022-01-15,42\n"
            b"denial_rate,2022-01-01,2022-01-31,7.5%\n")
    path = tmp_path / "spans.csv"
    path.write_bytes(data)
    results = [ingest_path(path, config, today=TODAY, database_url=url, practice=PRACTICE, vendor=VENDOR,
                           fast=fast) for url, fast in ((stream_url, STREAMED), (rows_url, ()))]

    assert [(r.status, r.checked_in, r.rows) for r in results] == [("accepted", "streamed", 4),
                                                                   ("accepted", "python", 4)]
    assert stored(stream_url) == stored(rows_url)
    spans = {(row[3], str(row[4]), str(row[5]), row[7]) for row in stored(stream_url)[0] if row[2] == "days_in_ar"
             and row[4].year == 2022}
    assert spans == {("2022-01", "2022-01-01", "2022-01-31", 40.0), ("2022-W01", "2022-01-03", "2022-01-09", 41.0),
                     ("2022-01-01..2022-01-15", "2022-01-01", "2022-01-15", 42.0)}
    assert scalar(stream_url, "SELECT count(*) FROM period_label WHERE period_start = '2022-01-01'"
                              " AND period_end = '2022-01-31'") == 1, "one label per period, however many values"


def test_a_first_delivery_is_streamed_and_a_correction_found_before_sending_is_merged(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    first = assert_same_outcome(feed("days_in_ar,2025-07,38.5,all", "days_in_ar,2025-07,41,payer:Aetna",
                                     "", "denial_rate,2025-07,6.2%,all"), config, stream_url, rows_url, tmp_path)
    assert (first.status, first.checked_in, first.rows, first.practices) == ("accepted", "streamed", 3, [PRACTICE])

    corrected = assert_same_outcome(feed("days_in_ar,2025-07,39.5,all", "days_in_ar,2025-07,41,payer:Aetna"),
                                    config, stream_url, rows_url, tmp_path)
    assert corrected.counts is not None and (corrected.counts.inserted, corrected.counts.revised) == (0, 1)
    assert corrected.checked_in == "python", "stored values: merged"
    assert (38.5, 39.5) in stored(stream_url)[1]


def test_a_stored_value_late_in_the_file_is_found_by_the_primary_key_and_the_file_merged(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    assert_same_outcome(feed("days_in_ar,2025-05,38.5,all"), config, stream_url, rows_url, tmp_path)
    # The first row is new (a new series, so nothing to look up); the last one revises the stored value.
    mixed = assert_same_outcome(feed("clean_claim_rate,2025-05,96.1,all", "days_in_ar,2025-05,40.5,all"),
                                config, stream_url, rows_url, tmp_path)

    assert mixed.counts is not None and (mixed.counts.inserted, mixed.counts.revised) == (1, 1)
    assert mixed.checked_in == "python"


def test_a_first_delivery_that_repeats_a_key_stores_nothing_and_the_repeat_is_named(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    before = scalar(stream_url, "SELECT count(*) FROM series")
    result = assert_same_outcome(feed("days_in_ar,2025-04,38.5,provider:p0042", "days_in_ar,2025-04,39,all",
                                      "days_in_ar,2025-04,38.5,provider:p0042"), config, stream_url, rows_url,
                                 tmp_path)

    assert result.status == "rejected"
    assert [(p.row, p.column) for p in result.problems] == [(4, "period")]
    assert "already given in row 2" in result.problems[0].message
    assert scalar(stream_url, "SELECT count(*) FROM series") == before, "the new series went with the file"


def test_a_bad_cell_stores_nothing_and_the_row_by_row_check_names_it(
    config: Config, stream_url: str, rows_url: str, tmp_path: Path
) -> None:
    result = assert_same_outcome(feed("days_in_ar,2025-03,38.5,all", "denial_rate,2025-03,146%,all"), config,
                                 stream_url, rows_url, tmp_path)

    assert result.status == "rejected"
    assert [(p.row, p.column, p.value) for p in result.problems] == [(3, "value", "146%")]
    assert scalar(stream_url, "SELECT count(*) FROM observation WHERE period = '2025-03'") == 0


def test_a_series_another_file_creates_meanwhile_is_shared_not_repeated(
    config: Config, stream_url: str, tmp_path: Path
) -> None:
    """The other file's transaction holds the new series when this one streams; this one then waits at the
    series' unique key, finds it taken once the other commits, and merges instead."""
    url = stream_url.replace("postgresql+psycopg://", "postgresql://", 1)
    path = tmp_path / "race.csv"
    path.write_bytes(feed("days_in_ar,2025-02,38.5,location:North", "days_in_ar,2025-03,37.5,location:North"))
    outcome: list[IngestResult] = []
    with psycopg.connect(url) as other:
        other.execute("INSERT INTO series (practice_id, vendor_id, kpi, segment) VALUES (%s, %s, 'days_in_ar',"
                      " 'location:North')", (PRACTICE, VENDOR))
        worker = threading.Thread(target=lambda: outcome.append(
            ingest_path(path, config, today=TODAY, database_url=stream_url, fast=STREAMED)))
        worker.start()
        time.sleep(1.5)
        assert worker.is_alive(), "the ingest waits on the other transaction's series row"
        other.commit()
    worker.join(timeout=60)

    [result] = outcome
    assert (result.status, result.rows, result.checked_in) == ("accepted", 2, "python")
    series = scalar(stream_url, "SELECT count(*) FROM series WHERE segment = 'location:North'")
    values = scalar(stream_url, "SELECT count(*) FROM observation WHERE segment = 'location:North'")
    assert (series, values) == (1, 2)
