"""A first delivery of a long CSV, streamed straight into observation_value: the fast path for big files.

The file is read once, in blocks of some 50,000 rows, by Apache Arrow's CSV reader, which splits cells as
Python's CSV reader does (quotes, doubled quotes, a quoted cell over several lines, any line ending); a row of the
wrong width is an error there, and the file then goes row by row. Each block arrives as columns that name each
*distinct* text once (a feed repeats a few practice, KPI, period and segment names on every row). Only those
distinct texts are judged in Python, by the functions the in-database check uses (feeds.bulk, which calls the
row-by-row ones); numpy then spreads each verdict over the rows and packs them as PostgreSQL binary COPY rows
(series id, the period's days, value), sorted by the primary key, so the server parses nothing and mostly appends
to the key. Python reads the next block while PostgreSQL inserts the last one on the other core. The labels of
the periods named go to period_label at the end, a row per period.

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

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Connection, text

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
from feeds.validate import RowValidator
from storage.uploads import Upload

log = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 22  # some 50,000 rows of a typical feed: sorted at a time, and the memory a block needs
# Arrow's names for the encodings feeds.parse detects (the BOM is in the header line, which Arrow skips).
ARROW_ENCODINGS = {"utf-8-sig": "utf8", "cp1252": "cp1252"}
# New series ids are fetched in blocks, each twice the last: a round trip costs far more than an id, and ids left
# unused are only a gap in the sequence.
FIRST_ID_BLOCK, LAST_ID_BLOCK = 64, 16384
MAX_REMEMBERED_VALUES = 200_000  # (scale and bounds, value text) verdicts kept; past this the memo starts again
VALUE_COPY = ("COPY observation_value (series_id, period_start, period_end, value, feed_file_id) FROM STDIN"
              " WITH (FORMAT binary)")
# PostgreSQL's binary COPY: a signature, then per row the number of fields and each field as its length and bytes
# (big-endian integers and float, dates as days since 2000-01-01), then -1. The fields' types are the columns'
# (integer ids, dates, double precision); the server checks each length and refuses a row that does not fit, and
# the file then goes row by row.
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
BINARY_TRAILER = b"\xff\xff"
DAY_ZERO = dt.date(2000, 1, 1)
SERIES_COPY = "COPY series (id, practice_id, vendor_id, kpi, segment) FROM STDIN"
ADD_PERIOD_LABEL = ("INSERT INTO period_label (period_start, period_end, label) VALUES (%s, %s, %s)"
                    " ON CONFLICT (period_start, period_end) DO NOTHING")  # another file added it meanwhile
SERIES_OF = "SELECT kpi, segment, id FROM series WHERE practice_id = :practice AND vendor_id = :vendor"
# One row, an array: a row per id costs more to fetch than the id costs to make.
NEW_IDS = "SELECT array_agg(nextval(pg_get_serial_sequence('series', 'id'))) FROM generate_series(1, :count)"
STORED = ("SELECT 1 FROM observation_value WHERE series_id = :series AND period_start = :start"
          " AND period_end = :end")


ROW = np.dtype([  # one binary COPY row of observation_value
    ("fields", ">i2"), ("series_length", ">i4"), ("series_id", ">i4"),
    ("start_length", ">i4"), ("start", ">i4"), ("end_length", ">i4"), ("end", ">i4"),
    ("value_length", ">i4"), ("value", ">f8"), ("feed_file_length", ">i4"), ("feed_file_id", ">i4"),
])


class KeysStored(Exception):
    """A value of this file is stored already: not a first delivery; leave it to the paths that merge."""


@dataclass(frozen=True)
class Streamed:
    """A first delivery proven clean and stored: how many rows, for which practices."""

    rows: int
    practices: list[str]


@dataclass(frozen=True)
class Group:
    """The verdict on one (practice, vendor, KPI, unit) text: the stored ids, the scale for each kind of value and
    the bounds."""

    practice_id: str
    vendor_id: str
    kpi: str
    scale_plain: float
    scale_percent: float
    low: float | None
    high: float | None

    @property
    def judged_alike(self) -> tuple[float, float, float | None, float | None]:
        """What a value's verdict depends on: groups alike share the verdicts on value texts."""
        return (self.scale_plain, self.scale_percent, self.low, self.high)

    def value(self, cell: str) -> float:
        """A value cell of this group, scaled; NotProven if it does not pass."""
        _, number, had_percent = judge_value(cell)
        value = float(number) * (self.scale_percent if had_percent else self.scale_plain)  # type: ignore[arg-type]
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise NotProven("a value outside its KPI's bounds")
        return value


def store_first_delivery(connection: Connection, upload: Upload, feed_file_id: int) -> Streamed | None:
    """Store the file's rows in observation_value if it is a clean first delivery; None, with nothing changed,
    otherwise. Raises KeysStored when some value is already stored (the caller then merges)."""
    path, fp, origin = upload.path, upload.fingerprint, upload.origin
    layout = long_layout(path, fp, origin)
    if layout is None:
        return None
    try:
        with connection.engine.connect() as side, connection.begin_nested():
            streamer = Streamer(connection, side.execution_options(isolation_level="AUTOCOMMIT"), layout,
                                RowValidator(upload.config, origin, upload.today))
            return streamer.store(path, fp.encoding, feed_file_id)
    except psycopg.errors.UniqueViolation as exc:
        raise KeysStored(path.name) from exc
    except (NotProven, UnicodeDecodeError, pa.ArrowException, psycopg.DataError) as exc:
        log.info("%s: not streamed (%s: %s)", path.name, type(exc).__name__, exc)
        return None


class Streamer:
    """One file's rows, judged text by text, turned into observation_value rows block by block."""

    def __init__(self, connection: Connection, side: Connection, layout: LongLayout, validator: RowValidator):
        self.connection, self.side, self.layout, self.validator = connection, side, layout, validator
        self.series_texts = Picker(layout.columns, (*GROUP_COLUMNS, "segment"))
        self.period_texts = Picker(layout.columns, PERIOD_COLUMNS)
        if "value" not in layout.columns:
            raise NotProven("no value column")
        self.groups: dict[tuple[str, ...], Group] = {}
        self.segments: dict[str, str] = {}
        self.series: dict[tuple[str, ...], tuple[int, Group]] = {}  # the series columns' texts -> id, group
        self.periods: dict[tuple[str, ...], tuple[int, int]] = {}  # texts -> first, last day (since 2000-01-01)
        self.labels: dict[tuple[dt.date, dt.date], str] = {}
        self.alike: dict[tuple[float, float, float | None, float | None], int] = {}
        self.values: dict[tuple[int, str], float] = {}  # (groups alike, value text) -> value
        self.known: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        self.new_series: list[tuple[int, str, str, str, str]] = []
        self.free_ids: list[int] = []
        self.id_block = FIRST_ID_BLOCK
        self.room = np.empty(0, ROW)  # binary COPY rows, reused block after block

    def store(self, path: Path, encoding: str, feed_file_id: int) -> Streamed:
        raw = cast(psycopg.Connection[Any], self.connection.connection.driver_connection)
        rows = 0
        with raw.cursor() as cursor, cursor.copy(VALUE_COPY) as copy:
            copy.write(BINARY_SIGNATURE)
            for block in self.blocks(path, encoding):
                packed = self.copy_rows(block, feed_file_id)
                copy.write(packed.tobytes())
                rows += len(packed)
            copy.write(BINARY_TRAILER)
        if rows == 0:
            raise NotProven("no data rows")
        with raw.cursor() as cursor:
            cursor.executemany(ADD_PERIOD_LABEL, [(*dates, label) for dates, label in self.labels.items()])
        if self.new_series:
            with raw.cursor() as cursor, cursor.copy(SERIES_COPY) as copy:
                for series in self.new_series:
                    copy.write_row(series)
        return Streamed(rows, sorted({group.practice_id for group in self.groups.values()}))

    def blocks(self, path: Path, encoding: str) -> Iterator[pa.RecordBatch]:
        """The file's data rows, a block at a time, every column as distinct texts and an index per row."""
        columns = list(self.layout.columns)
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES, skip_rows=1, column_names=columns,
                                            use_threads=False, encoding=ARROW_ENCODINGS[encoding]),
            parse_options=pa_csv.ParseOptions(delimiter=self.layout.delimiter, newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.dictionary(pa.int32(), pa.string()) for name in columns},
                strings_can_be_null=False, quoted_strings_can_be_null=False))
        try:
            yield from reader
        finally:
            reader.close()

    def copy_rows(self, block: pa.RecordBatch, feed_file_id: int) -> np.ndarray[Any, Any]:
        """A block's rows as binary COPY rows, sorted by series and period (none for a block of blank rows)."""
        cells = {name: Cells.of_column(block.column(index)) for index, name in enumerate(self.layout.columns)}
        kept = ~np.logical_and.reduce([column.blank() for column in cells.values()])  # the row-by-row path skips
        if not kept.any():
            return self.packing(0)
        cells = {name: column.only(kept) for name, column in cells.items()}
        periods, period_of_row, _ = distinct([cells[name] for name in self.period_texts.present])
        series, series_of_row, first_row = distinct([cells[name] for name in self.series_texts.present])
        series_ids, alike = np.empty(len(series), np.int32), np.empty(len(series), np.int64)
        for index, texts in enumerate(series):
            found = self.series.get(texts)
            if found is None:
                first_period = periods[period_of_row[first_row[index]]]
                found = self.series[texts] = self.find_series(self.series_texts.full(texts), first_period)
            series_ids[index], group = found
            alike[index] = self.alike.setdefault(group.judged_alike, len(self.alike))
        starts, ends = (np.array(days, np.int32) for days in zip(
            *(self.judge_period(self.period_texts.full(texts)) for texts in periods), strict=True))
        values = self.row_values(cells["value"], alike[series_of_row], series, series_of_row)
        # Key order: in file order each row lands far from the last in the primary key (a feed lists every series
        # of a practice month by month); in key order the server mostly appends, a third less work.
        key = series_ids[series_of_row].astype(np.int64) << 32 | starts[period_of_row].astype(np.int64) + 2**31
        rows = np.argsort(key, kind="stable")  # stable: timsort, fast on a feed's ascending runs
        row_series, row_period = series_of_row[rows], period_of_row[rows]
        packed = self.packing(len(rows))
        packed["series_id"] = series_ids[row_series]
        packed["start"] = starts[row_period]
        packed["end"] = ends[row_period]
        packed["value"] = values[rows]
        packed["feed_file_id"] = feed_file_id
        return packed

    def packing(self, rows: int) -> np.ndarray[Any, Any]:
        """Room for this many binary COPY rows, the fields' counts and lengths filled in; valid until the next
        block (the caller sends each block before asking for the next)."""
        if len(self.room) < rows:
            self.room = np.empty(rows, ROW)
            self.room["fields"], self.room["series_length"], self.room["start_length"] = 5, 4, 4
            self.room["end_length"], self.room["value_length"], self.room["feed_file_length"] = 4, 8, 4
        return self.room[:rows]

    def row_values(self, column: Cells, alike_of_row: np.ndarray[Any, Any], series: list[tuple[str, ...]],
                   series_of_row: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Each row's value, scaled: each distinct (groups alike, value text) judged once."""
        pairs, pair_of_row, first_row = distinct([Cells.of_codes(alike_of_row), column])
        if len(self.values) > MAX_REMEMBERED_VALUES:
            self.values.clear()
        judged = np.empty(len(pairs), np.float64)
        for index, (alike, cell) in enumerate(pairs):
            value = self.values.get((int(alike), cell))
            if value is None:
                group = self.series[series[series_of_row[first_row[index]]]][1]
                value = self.values[(int(alike), cell)] = group.value(cell)
            judged[index] = value
        return judged[pair_of_row]

    def judge_period(self, texts: tuple[str, ...]) -> tuple[int, int]:
        """A period's first and last day (as days since 2000-01-01), remembered, and its label noted."""
        judged = self.periods.get(texts)
        if judged is None:
            label, start, end = judge_period(self.validator, self.layout, texts)[len(texts):]
            if not isinstance(label, str) or not isinstance(start, dt.date) or not isinstance(end, dt.date):
                raise NotProven("period")
            self.labels[(start, end)] = label
            judged = self.periods[texts] = ((start - DAY_ZERO).days, (end - DAY_ZERO).days)
        return judged

    def find_series(self, texts: tuple[str, ...], first_period: tuple[str, ...]) -> tuple[int, Group]:
        """The series the (practice, vendor, KPI, unit, segment) texts name, found or made."""
        group_texts, segment_text = texts[:-1], texts[-1]
        group = self.groups.get(group_texts)
        if group is None:
            group = self.groups[group_texts] = Group(*judge_group(self.validator, self.layout,  # type: ignore[arg-type]
                                                                   group_texts)[len(group_texts):])
        segment = self.segments.get(segment_text)
        if segment is None:
            segment = self.segments[segment_text] = str(judge_segment(self.validator, self.layout,
                                                                      (segment_text,))[1])
        stored = self.known_series(group, segment, first_period)
        series_id = stored.get((group.kpi, segment))
        if series_id is None:
            series_id = self.next_id()
            stored[(group.kpi, segment)] = series_id
            self.new_series.append((series_id, group.practice_id, group.vendor_id, group.kpi, segment))
        return series_id, group

    def known_series(self, group: Group, segment: str, first_period: tuple[str, ...]) -> dict[tuple[str, str], int]:
        """The stored series of the group's practice and vendor, read once. The first time, the value of the
        series' first row (its period as the file's period columns give it) is looked for too: a re-delivery is
        found here, before its first row is sent."""
        owner = (group.practice_id, group.vendor_id)
        stored = self.known.get(owner)
        if stored is None:
            result = self.side.execute(text(SERIES_OF), {"practice": owner[0], "vendor": owner[1]})
            stored = self.known[owner] = {(kpi, segment): series_id for kpi, segment, series_id in result}
            if (group.kpi, segment) in stored:
                self.probe(stored[(group.kpi, segment)], self.period_texts.full(first_period))
        return stored

    def probe(self, series_id: int, period_key: tuple[str, ...]) -> None:
        start, end = (DAY_ZERO + dt.timedelta(days=days) for days in self.judge_period(period_key))
        if self.side.execute(text(STORED), {"series": series_id, "start": start, "end": end}).first() is not None:
            raise KeysStored(f"series {series_id} has a value for {start}..{end}")

    def next_id(self) -> int:
        if not self.free_ids:
            self.free_ids = list(self.side.execute(text(NEW_IDS), {"count": self.id_block}).scalar_one())[::-1]
            self.id_block = min(2 * self.id_block, LAST_ID_BLOCK)
        return self.free_ids.pop()


@dataclass(frozen=True)
class Cells:
    """One column of a block: its distinct texts, and per row the index of its text."""

    texts: Sequence[Any]
    codes: np.ndarray[Any, Any]

    @classmethod
    def of_column(cls, column: Any) -> Cells:
        """An Arrow dictionary column as the CSV reader gives it."""
        return cls(column.dictionary.to_pylist(), column.indices.to_numpy(zero_copy_only=False))

    @classmethod
    def of_codes(cls, codes: np.ndarray[Any, Any]) -> Cells:
        """Numbers as a column: each row's number is its own text."""
        return cls(range(int(codes.max()) + 1 if len(codes) else 0), codes)

    def blank(self) -> np.ndarray[Any, Any]:
        """Per row: is the cell empty or only spaces (what the row-by-row path calls blank)."""
        return np.array([not cell.strip() for cell in self.texts], bool)[self.codes]

    def only(self, rows: np.ndarray[Any, Any]) -> Cells:
        return Cells(self.texts, self.codes[rows])


def distinct(columns: list[Cells]) -> tuple[list[tuple[Any, ...]], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The distinct combinations of the columns' texts, in a block, as tuples; per row the index of its
    combination; and the first row of each combination."""
    combined, span = np.zeros(len(columns[0].codes), np.int64), 1
    for column in columns:
        size = max(len(column.texts), 1)
        if span * size >= 2**62:  # numbered densely again, so the product stays below 2**63
            _, combined = np.unique(combined, return_inverse=True)
            span = int(combined.max()) + 1
        combined, span = combined * size + column.codes, span * size
    _, first, of_row = np.unique(combined, return_index=True, return_inverse=True)
    combinations = list(zip(*(np.asarray(column.texts, dtype=object)[column.codes[first]] for column in columns),
                            strict=True))
    return combinations, of_row, first


class Picker:
    """The columns of some names a file has, and the texts of all those names from the ones it has."""

    def __init__(self, columns: tuple[str, ...], names: tuple[str, ...]):
        self.names = names
        self.present = [name for name in names if name in columns]
        if not self.present:
            raise NotProven(f"none of the columns {', '.join(names)}")
        missing = len(self.present)  # where full() puts the '' it adds
        self.spread = itemgetter(*(self.present.index(name) if name in self.present else missing for name in names))

    def full(self, picked: tuple[str, ...]) -> tuple[str, ...]:
        """One text per name, '' for a column the file does not have (as a missing cell reads row by row)."""
        return self.spread((*picked, ""))
