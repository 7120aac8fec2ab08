"""A first delivery of a long CSV, streamed straight into observation_value: the fast path for big files.

The file is read once, by the same CSV reader as the row-by-row path. Each *distinct* text of a column (a feed
repeats a few practice, KPI, period and segment names on every row) is judged once, by the functions the
in-database check uses (feeds.bulk, which calls the row-by-row ones), and each row becomes one narrow line of a
COPY into observation_value: series id, period, value. PostgreSQL inserts them on its own core while Python reads
on the other, so the two overlap.

Only a first delivery is stored here: the primary key (series, period) refuses any value already stored, and the
file is then handed to the paths that merge (`KeysStored`). Only a file proven clean is stored here: on any doubt
(a cell that does not pass, a row of the wrong width, bytes that do not decode) the savepoint is rolled back and
the row-by-row path runs (`NotProven`), which reads the file again and names every problem with its row and column.
So this path never writes an error message (tests/test_stream_ingest.py compares it with the row-by-row path).

Series ids: the series a file names are looked up per (practice, vendor) on a second connection, which sees only
committed rows; a new series gets an id from the series sequence there (sequences are not transactional) and its
row is written after the values, in this transaction. Should another file create the same series meanwhile, that
row's unique key refuses ours and the file goes to the merging paths.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, text

from config import Config
from feeds.bulk import (
    GROUP_COLUMNS,
    PERIOD_COLUMNS,
    LongLayout,
    NotProven,
    judge_group,
    judge_period,
    judge_segment,
    judge_value,
    long_layout,
)
from feeds.parse import Fingerprint
from feeds.validate import FeedOrigin, RowValidator

log = logging.getLogger(__name__)

ROWS_PER_WRITE = 8192
# New series ids are fetched in blocks, each twice the last: a round trip costs far more than an id, and ids left
# unused are only a gap in the sequence.
FIRST_ID_BLOCK, LAST_ID_BLOCK = 64, 16384
MAX_REMEMBERED_VALUES = 50_000  # distinct value texts per group judged once; past this, further ones per row
VALUE_COPY = "COPY observation_value (series_id, period_start, period_end, period, value, feed_file_id) FROM STDIN"
SERIES_COPY = "COPY series (id, practice_id, vendor_id, kpi, segment) FROM STDIN"
SERIES_OF = "SELECT kpi, segment, id FROM series WHERE practice_id = :practice AND vendor_id = :vendor"
# One row, an array: a row per id costs more to fetch than the id costs to make.
NEW_IDS = "SELECT array_agg(nextval(pg_get_serial_sequence('series', 'id'))) FROM generate_series(1, :count)"
STORED = ("SELECT 1 FROM observation_value WHERE series_id = :series AND period_start = :start"
          " AND period_end = :end")


class KeysStored(Exception):
    """A value of this file is stored already: not a first delivery; leave it to the paths that merge."""


@dataclass(frozen=True)
class Streamed:
    """A first delivery proven clean and stored: how many rows, for which practices."""

    rows: int
    practices: list[str]


@dataclass(eq=False)  # hashed by identity
class Group:
    """The verdict on one (practice, vendor, KPI, unit) text: the stored ids, scales and bounds, and each value text
    of it already judged (as its COPY text, scaled)."""

    practice_id: str
    vendor_id: str
    kpi: str
    scale_plain: float
    scale_percent: float
    low: float | None
    high: float | None
    values: dict[str, str] = field(default_factory=dict)

    def value(self, cell: str) -> str:
        """The COPY text of a value cell of this group, remembered; NotProven if it does not pass."""
        _, number, had_percent = judge_value(cell)
        value = float(number) * (self.scale_percent if had_percent else self.scale_plain)  # type: ignore[arg-type]
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise NotProven("a value outside its KPI's bounds")
        shown = repr(value)
        if len(self.values) < MAX_REMEMBERED_VALUES:
            self.values[cell] = shown
        return shown


def store_first_delivery(connection: Connection, path: Path, fp: Fingerprint, config: Config, origin: FeedOrigin,
                         today: dt.date, feed_file_id: int) -> Streamed | None:
    """Store the file's rows in observation_value if it is a clean first delivery; None, with nothing changed,
    otherwise. Raises KeysStored when some value is already stored (the caller then merges)."""
    layout = long_layout(path, fp, origin)
    if layout is None:
        return None
    try:
        with connection.engine.connect() as side, connection.begin_nested():
            streamer = Streamer(connection, side.execution_options(isolation_level="AUTOCOMMIT"), layout,
                                RowValidator(config, origin, today))
            return streamer.store(path, fp.encoding, feed_file_id)
    except psycopg.errors.UniqueViolation as exc:
        raise KeysStored(path.name) from exc
    except (NotProven, UnicodeDecodeError, csv.Error, psycopg.DataError) as exc:
        log.info("%s: not streamed (%s: %s)", path.name, type(exc).__name__, exc)
        return None


class Streamer:
    """One file's rows, judged text by text, turned into observation_value lines."""

    def __init__(self, connection: Connection, side: Connection, layout: LongLayout, validator: RowValidator):
        self.connection, self.side, self.layout, self.validator = connection, side, layout, validator
        self.width = width = len(layout.columns)

        def picker(names: tuple[str, ...]) -> Any:
            # A column the file lacks reads as '' (as in the row-by-row path): each record gets one '' appended.
            return itemgetter(*(layout.columns.index(n) if n in layout.columns else width for n in names))

        self.series_of, self.period_of = picker((*GROUP_COLUMNS, "segment")), picker(PERIOD_COLUMNS)
        self.value_at = layout.columns.index("value") if "value" in layout.columns else width
        self.groups: dict[tuple[str, ...], Group] = {}
        self.periods: dict[tuple[str, ...], str] = {}
        self.segments: dict[str, str] = {}
        # (practice, vendor, KPI, unit, segment) texts -> "series id<TAB>" and the group's verdict
        self.series: dict[tuple[str, ...], tuple[str, Group]] = {}
        self.known: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        self.new_series: list[tuple[int, str, str, str, str]] = []
        self.free_ids: list[int] = []
        self.id_block = FIRST_ID_BLOCK

    def store(self, path: Path, encoding: str, feed_file_id: int) -> Streamed:
        raw = self.connection.connection.driver_connection
        rows = 0
        with raw.cursor() as cursor, cursor.copy(VALUE_COPY) as copy:  # type: ignore[union-attr]
            for lines in self.lines(path, encoding, f"\t{feed_file_id}\n"):
                copy.write("".join(lines))
                rows += len(lines)
        if rows == 0:
            raise NotProven("no data rows")
        if self.new_series:
            with raw.cursor() as cursor, cursor.copy(SERIES_COPY) as copy:  # type: ignore[union-attr]
                for series in self.new_series:
                    copy.write_row(series)
        return Streamed(rows, sorted({group.practice_id for group in self.groups.values()}))

    def lines(self, path: Path, encoding: str, ending: str) -> Iterator[list[str]]:
        """The file's rows as observation_value COPY lines, in batches. Per row: three lookups of texts judged
        before; a text not seen yet is judged (and may end the stream with NotProven or KeysStored)."""
        series_of, period_of, value_at, width = self.series_of, self.period_of, self.value_at, self.width
        series, periods = self.series, self.periods
        batch: list[str] = []
        with path.open("r", encoding=encoding, newline="") as stream:
            reader = csv.reader(stream, delimiter=self.layout.delimiter)
            next(reader, None)  # the header, judged by long_layout
            for record in reader:
                if len(record) != width:
                    if any(cell.strip() for cell in record):
                        raise NotProven("a row with more or fewer cells than the header")
                    continue
                record.append("")
                found = series.get(series_key := series_of(record))
                if found is None:
                    if not any(cell.strip() for cell in record):
                        continue  # a row of empty cells: skipped, as the row-by-row path skips it
                    found = self.find_series(series_key, period_of(record))
                prefix, group = found
                period = periods.get(period_key := period_of(record)) or self.judge_period(period_key)
                shown = group.values.get(value_text := record[value_at]) or group.value(value_text)
                batch.append(f"{prefix}{period}\t{shown}{ending}")
                if len(batch) >= ROWS_PER_WRITE:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def judge_period(self, texts: tuple[str, ...]) -> str:
        label, start, end = judge_period(self.validator, self.layout, texts)[len(texts):]
        if not isinstance(label, str) or any(mark in label for mark in "\t\n\\"):
            raise NotProven("period label")
        self.periods[texts] = line = f"{start}\t{end}\t{label}"
        return line

    def find_series(self, texts: tuple[str, ...], period_key: tuple[str, ...]) -> tuple[str, Group]:
        """The series a row's (practice, vendor, KPI, unit, segment) texts name, found or made, remembered."""
        group_texts, segment_text = texts[:-1], texts[-1]
        group = self.groups.get(group_texts)
        if group is None:
            group = self.groups[group_texts] = Group(*judge_group(self.validator, self.layout,  # type: ignore[arg-type]
                                                                   group_texts)[len(group_texts):])
        segment = self.segments.get(segment_text)
        if segment is None:
            segment = self.segments[segment_text] = str(judge_segment(self.validator, self.layout,
                                                                      (segment_text,))[1])
        stored = self.known_series(group, segment, period_key)
        series_id = stored.get((group.kpi, segment))
        if series_id is None:
            series_id = self.next_id()
            stored[(group.kpi, segment)] = series_id
            self.new_series.append((series_id, group.practice_id, group.vendor_id, group.kpi, segment))
        self.series[texts] = found = (f"{series_id}\t", group)
        return found

    def known_series(self, group: Group, segment: str, period_key: tuple[str, ...]) -> dict[tuple[str, str], int]:
        """The stored series of the group's practice and vendor, read once. The first time, the row's own value
        is looked for too: a re-delivery is found here, before its first line is sent."""
        owner = (group.practice_id, group.vendor_id)
        stored = self.known.get(owner)
        if stored is None:
            result = self.side.execute(text(SERIES_OF), {"practice": owner[0], "vendor": owner[1]})
            stored = self.known[owner] = {(kpi, segment): series_id for kpi, segment, series_id in result}
            if (group.kpi, segment) in stored:
                self.probe(stored[(group.kpi, segment)], period_key)
        return stored

    def probe(self, series_id: int, period_key: tuple[str, ...]) -> None:
        start, end, _label = (self.periods.get(period_key) or self.judge_period(period_key)).split("\t")
        if self.side.execute(text(STORED), {"series": series_id, "start": start, "end": end}).first() is not None:
            raise KeysStored(f"series {series_id} has a value for {start}..{end}")

    def next_id(self) -> int:
        if not self.free_ids:
            self.free_ids = list(self.side.execute(text(NEW_IDS), {"count": self.id_block}).scalar_one())[::-1]
            self.id_block = min(2 * self.id_block, LAST_ID_BLOCK)
        return self.free_ids.pop()
