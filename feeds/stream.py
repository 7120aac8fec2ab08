"""A first delivery of a long CSV, streamed straight into observation_value: the fast path for big files.

The file is read once, by the same CSV reader as the row-by-row path. Each *distinct* text of a column (a feed
repeats a few practice, KPI, period and segment names on every row) is judged once, by the functions the
in-database check uses (feeds.bulk, which calls the row-by-row ones), and each row becomes one narrow row of a
binary COPY into observation_value: series id, period, value, each field packed once per distinct text, so the
server parses nothing. PostgreSQL inserts them on its own core while Python reads on the other, so the two overlap.
A line with no quote is split on the delimiter, which is what the CSV reader makes of it, at less than half the
cost; a line with a quote goes to the CSV reader.

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
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

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
FIELDS_PER_ROW = 4  # the parts of a row's bytes: series id, period, value, feed file
FIELDS_PER_WRITE = ROWS_PER_WRITE * FIELDS_PER_ROW
# New series ids are fetched in blocks, each twice the last: a round trip costs far more than an id, and ids left
# unused are only a gap in the sequence.
FIRST_ID_BLOCK, LAST_ID_BLOCK = 64, 16384
MAX_REMEMBERED_VALUES = 50_000  # distinct value texts per group judged once; past this, further ones per row
VALUE_COPY = ("COPY observation_value (series_id, period_start, period_end, period, value, feed_file_id) FROM STDIN"
              " WITH (FORMAT binary)")
# PostgreSQL's binary COPY: a signature, then per row the number of fields and each field as its length and bytes
# (big-endian integers and float, dates as days since 2000-01-01), then -1. The server parses no text at all.
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
BINARY_TRAILER = b"\xff\xff"
# The fields' types are the columns' (integer ids, dates, varchar, double precision): the server checks each
# length and refuses a row that does not fit, and the file then goes row by row.
SERIES_FIELD = struct.Struct("!hii")  # 6 fields follow; series_id
PERIOD_FIELDS = struct.Struct("!iiiii")  # period_start, period_end; the length of the period label that follows
VALUE_FIELD = struct.Struct("!id")
FEED_FILE_FIELD = struct.Struct("!ii")
DAY_ZERO = dt.date(2000, 1, 1)
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
    already judged (as its COPY field, scaled). Groups with the same scales and bounds share that memo: 400 KPI
    groups of one MSO file judge a value text like "41.5" once, not 400 times."""

    practice_id: str
    vendor_id: str
    kpi: str
    scale_plain: float
    scale_percent: float
    low: float | None
    high: float | None
    values: dict[str, bytes] = field(default_factory=dict)

    @property
    def judged_alike(self) -> tuple[float, float, float | None, float | None]:
        """What a value's verdict and COPY text depend on."""
        return (self.scale_plain, self.scale_percent, self.low, self.high)

    def value(self, cell: str) -> bytes:
        """The COPY field of a value cell of this group, remembered; NotProven if it does not pass."""
        _, number, had_percent = judge_value(cell)
        value = float(number) * (self.scale_percent if had_percent else self.scale_plain)  # type: ignore[arg-type]
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise NotProven("a value outside its KPI's bounds")
        field = VALUE_FIELD.pack(8, value)
        if len(self.values) < MAX_REMEMBERED_VALUES:
            self.values[cell] = field
        return field


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
    """One file's rows, judged text by text, turned into observation_value rows."""

    def __init__(self, connection: Connection, side: Connection, layout: LongLayout, validator: RowValidator):
        self.connection, self.side, self.layout, self.validator = connection, side, layout, validator
        self.width = len(layout.columns)
        # Per row, only the cells the file has are picked (one text, not a tuple, for a one-column period); the
        # texts of a column the file lacks read as '' (as in the row-by-row path) when a new key is judged.
        self.series_of, self.series_texts = Picker(layout.columns, (*GROUP_COLUMNS, "segment")).parts()
        self.period_of, self.period_texts = Picker(layout.columns, PERIOD_COLUMNS).parts()
        if "value" not in layout.columns:
            raise NotProven("no value column")
        self.value_at = layout.columns.index("value")
        self.groups: dict[tuple[str, ...], Group] = {}
        self.value_memos: dict[tuple[float, float, float | None, float | None], dict[str, bytes]] = {}
        self.periods: dict[Any, bytes] = {}
        self.period_dates: dict[Any, tuple[dt.date, dt.date]] = {}
        self.segments: dict[str, str] = {}
        # the (practice, vendor, KPI, unit, segment) texts a file has -> the series id's COPY fields, the group
        self.series: dict[Any, tuple[bytes, Group]] = {}
        self.known: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        self.new_series: list[tuple[int, str, str, str, str]] = []
        self.free_ids: list[int] = []
        self.id_block = FIRST_ID_BLOCK

    def store(self, path: Path, encoding: str, feed_file_id: int) -> Streamed:
        raw = cast(psycopg.Connection[Any], self.connection.connection.driver_connection)
        rows = 0
        with raw.cursor() as cursor, cursor.copy(VALUE_COPY) as copy:
            copy.write(BINARY_SIGNATURE)
            for fields in self.fields(path, encoding, FEED_FILE_FIELD.pack(4, feed_file_id)):
                copy.write(b"".join(fields))
                rows += len(fields) // FIELDS_PER_ROW
            copy.write(BINARY_TRAILER)
        if rows == 0:
            raise NotProven("no data rows")
        if self.new_series:
            with raw.cursor() as cursor, cursor.copy(SERIES_COPY) as copy:
                for series in self.new_series:
                    copy.write_row(series)
        return Streamed(rows, sorted({group.practice_id for group in self.groups.values()}))

    def fields(self, path: Path, encoding: str, feed_file: bytes) -> Iterator[list[bytes]]:
        """The file's rows as observation_value binary COPY rows, in batches of FIELDS_PER_ROW parts a row. Per
        row: three lookups of texts judged before; a text not seen yet is judged (and may end the stream with
        NotProven or KeysStored)."""
        series_of, period_of, value_at, width = self.series_of, self.period_of, self.value_at, self.width
        series, periods, delimiter = self.series, self.periods, self.layout.delimiter
        batch: list[bytes] = []
        with path.open("r", encoding=encoding, newline="") as stream:
            next(stream, None)  # the header, one line (long_layout refuses a quoted one), judged by long_layout
            for line in stream:
                # A line with no quote splits as the CSV reader would split it, in a fraction of the time.
                record = (line.rstrip("\r\n").split(delimiter) if '"' not in line
                          else quoted_record(line, stream, delimiter))
                if len(record) != width:
                    if any(cell.strip() for cell in record):
                        raise NotProven("a row with more or fewer cells than the header")
                    continue
                found = series.get(series_key := series_of(record))
                if found is None:
                    if not any(cell.strip() for cell in record):
                        continue  # a row of empty cells: skipped, as the row-by-row path skips it
                    found = self.find_series(series_key, period_of(record))
                series_field, group = found
                period_fields = periods.get(period_key := period_of(record)) or self.judge_period(period_key)
                value_field = group.values.get(value_text := record[value_at]) or group.value(value_text)
                batch += (series_field, period_fields, value_field, feed_file)
                if len(batch) >= FIELDS_PER_WRITE:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def judge_period(self, key: Any) -> bytes:
        """The COPY fields of a period's texts (start, end, label), remembered, and its dates for `probe`."""
        texts = self.period_texts(key)
        label, start, end = judge_period(self.validator, self.layout, texts)[len(texts):]
        if not isinstance(label, str) or not label.isascii() or not isinstance(start, dt.date) \
                or not isinstance(end, dt.date):
            raise NotProven("period label")  # a label is ASCII, so its bytes are the same in any client encoding
        self.period_dates[key] = (start, end)
        self.periods[key] = fields = (PERIOD_FIELDS.pack(4, (start - DAY_ZERO).days, 4, (end - DAY_ZERO).days,
                                                         len(label)) + label.encode("ascii"))
        return fields

    def find_series(self, key: Any, period_key: Any) -> tuple[bytes, Group]:
        """The series a row's (practice, vendor, KPI, unit, segment) texts name, found or made, remembered."""
        texts = self.series_texts(key)
        group_texts, segment_text = texts[:-1], texts[-1]
        group = self.groups.get(group_texts)
        if group is None:
            group = self.groups[group_texts] = Group(*judge_group(self.validator, self.layout,  # type: ignore[arg-type]
                                                                   group_texts)[len(group_texts):])
            group.values = self.value_memos.setdefault(group.judged_alike, group.values)
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
        self.series[key] = found = (SERIES_FIELD.pack(6, 4, series_id), group)
        return found

    def known_series(self, group: Group, segment: str, period_key: Any) -> dict[tuple[str, str], int]:
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

    def probe(self, series_id: int, period_key: Any) -> None:
        if period_key not in self.period_dates:
            self.judge_period(period_key)
        start, end = self.period_dates[period_key]
        if self.side.execute(text(STORED), {"series": series_id, "start": start, "end": end}).first() is not None:
            raise KeysStored(f"series {series_id} has a value for {start}..{end}")

    def next_id(self) -> int:
        if not self.free_ids:
            self.free_ids = list(self.side.execute(text(NEW_IDS), {"count": self.id_block}).scalar_one())[::-1]
            self.id_block = min(2 * self.id_block, LAST_ID_BLOCK)
        return self.free_ids.pop()


def quoted_record(line: str, stream: Iterator[str], delimiter: str) -> list[str]:
    """The record a line with a quote starts, read by the CSV reader, which takes the following lines of the
    stream as well when a quoted cell spans them."""
    return next(csv.reader(chain((line,), stream), delimiter=delimiter))


class Picker:
    """Picks the cells of some columns out of a record, and turns what it picked back into one text per column."""

    def __init__(self, columns: tuple[str, ...], names: tuple[str, ...]):
        self.names = names
        self.present = [name for name in names if name in columns]
        if not self.present:
            raise NotProven(f"none of the columns {', '.join(names)}")
        self.indexes = [columns.index(name) for name in self.present]

    def parts(self) -> tuple[Callable[[list[str]], Any], Callable[[Any], tuple[str, ...]]]:
        return itemgetter(*self.indexes), self.texts

    def texts(self, picked: Any) -> tuple[str, ...]:
        """One text per name, '' for a column the file does not have."""
        cells = dict(zip(self.present, (picked,) if len(self.present) == 1 else picked, strict=True))
        return tuple(cells.get(name, "") for name in self.names)
