"""A first delivery of a long CSV, streamed straight into observation_value: the fast path for big files.

The file is read once, in blocks of some 50,000 rows, by Apache Arrow's CSV reader, which splits cells as
Python's CSV reader does (quotes, doubled quotes, a quoted cell over several lines, any line ending); a row of the
wrong width is an error there, and the file then goes row by row. Each block arrives as columns that name each
*distinct* text once (a feed repeats a few practice, KPI, period and segment names on every row). Every rule of
feeds.rules.RULES judges each distinct text, or distinct combination of texts for a rule across columns, once, in
Python: the very rule objects the row-by-row check asks (a rule on a series' columns when such texts are first
met, on period columns when a period is, on the value once per (alike, value text), any other on its columns'
distinct combinations in each block). numpy then spreads the values over the rows and packs them as PostgreSQL
binary COPY rows (series id, the period's days, value), sorted by the primary key, so the server parses nothing
and mostly appends to the key. Python reads the next block while PostgreSQL inserts the last one on the other
core. The labels of the periods named go to period_label at the end, a row per period.

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
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Connection, text

from feeds import rules
from feeds.parse import Fingerprint, Table, is_blank, is_json_feed, normalise_header, sniff_delimiter
from feeds.rules import PERIOD_COLUMNS, Context, Rule, ValueKind, Verdicts, scaled
from feeds.validate import FeedOrigin, check_long_columns, is_wide
from storage.uploads import Upload

log = logging.getLogger(__name__)

GROUP_COLUMNS = ("practice", "vendor", "kpi", "unit")  # what a value's kind depends on
SERIES_COLUMNS = (*GROUP_COLUMNS, "segment")
BLOCK_BYTES = 1 << 22  # some 50,000 rows of a typical feed: sorted at a time, and the memory a block needs
# Arrow's names for the encodings feeds.parse detects (the BOM is in the header line, which Arrow skips).
ARROW_ENCODINGS = {"utf-8-sig": "utf8", "cp1252": "cp1252"}
# New series ids are fetched in blocks, each twice the last: a round trip costs far more than an id, and ids left
# unused are only a gap in the sequence.
FIRST_ID_BLOCK, LAST_ID_BLOCK = 64, 16384
MAX_REMEMBERED_VALUES = 200_000  # (value kind, value text) readings kept; past this the memo starts again
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


class NotProven(Exception):
    """This file is not provably clean here: leave it to the row-by-row path."""


class KeysStored(Exception):
    """A value of this file is stored already: not a first delivery; leave it to the paths that merge."""


@dataclass(frozen=True)
class Streamed:
    """A first delivery proven clean and stored: how many rows, for which practices."""

    rows: int
    practices: list[str]


@dataclass(frozen=True)
class LongLayout:
    columns: tuple[str, ...]  # normalised header names, in file order
    delimiter: str


def long_layout(path: Path, fp: Fingerprint, origin: FeedOrigin) -> LongLayout | None:
    """The header of a long CSV this path can read, or None."""
    if fp.encoding not in ARROW_ENCODINGS or is_json_feed(path, fp):
        return None
    with path.open("r", encoding=fp.encoding, errors="replace", newline="") as stream:
        first_line = stream.readline().removesuffix("\n").removesuffix("\r")
    if not first_line or any(mark in first_line for mark in '"\r\n'):
        return None  # a quoted or multi-line header: left to the CSV reader of the row-by-row path
    delimiter = sniff_delimiter(first_line)
    columns = [normalise_header(name) for name in first_line.removeprefix("\ufeff").split(delimiter)]
    table = Table(columns=columns, rows=[])
    if is_wide(table) or check_long_columns(table, origin):  # a column twice is one of its problems
        return None
    return LongLayout(tuple(columns), delimiter)


@dataclass(frozen=True)
class Group:
    """What one (practice, vendor, KPI, unit) text names: the stored ids and how its values are scaled."""

    practice_id: str
    vendor_id: str
    kpi: str
    kind: ValueKind
    texts: tuple[str, ...]  # as the rules read them
    alike: int  # groups alike in what the value rules' verdicts and the value's reading depend on share it


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
                                Context(upload.config, origin.practice_id, origin.vendor_id, upload.today))
            return streamer.store(path, fp.encoding, feed_file_id)
    except psycopg.errors.UniqueViolation as exc:
        raise KeysStored(path.name) from exc
    except (NotProven, UnicodeDecodeError, pa.ArrowException, psycopg.DataError) as exc:
        log.info("%s: not streamed (%s: %s)", path.name, type(exc).__name__, exc)
        return None


class Streamer:
    """One file's rows, judged text by text, turned into observation_value rows block by block."""

    def __init__(self, connection: Connection, side: Connection, layout: LongLayout, context: Context):
        self.connection, self.side, self.layout, self.context = connection, side, layout, context
        self.series_texts = Picker(layout.columns, SERIES_COLUMNS)
        self.period_texts = Picker(layout.columns, PERIOD_COLUMNS)
        if "value" not in layout.columns:
            raise NotProven("no value column")
        # Each rule of the list (as it is when the file's check starts) is judged where its texts are first met:
        # on a new (practice, vendor, KPI, unit), segment, series or period; on a new (alike, value text) if it
        # judges the value and group columns; else on each distinct combination of its columns in each block.
        self.verdicts = Verdicts(rules.RULES, context)
        remaining = list(self.verdicts.rules)
        self.group_rules = RulesOn(GROUP_COLUMNS, remaining, self.verdicts)
        self.segment_rules = RulesOn(("segment",), remaining, self.verdicts)
        self.series_rules = RulesOn(SERIES_COLUMNS, remaining, self.verdicts)
        self.period_rules = RulesOn(PERIOD_COLUMNS, remaining, self.verdicts)
        self.value_rules = RulesOn((*GROUP_COLUMNS, "value"), remaining, self.verdicts, last="value")
        self.block_rules = [(rule, Picker(layout.columns, rule.columns, allow_none=True)) for rule in remaining]
        self.segments: dict[str, str] = {}
        self.groups: dict[tuple[str, ...], Group] = {}
        self.series: dict[tuple[str, ...], tuple[int, Group]] = {}  # the series columns' texts -> id, group
        self.periods: dict[tuple[str, ...], tuple[int, int]] = {}  # texts -> first, last day (since 2000-01-01)
        self.labels: dict[tuple[dt.date, dt.date], str] = {}
        self.alike: dict[tuple[Hashable, ...], int] = {}
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
        self.judge_block(cells)
        periods, period_of_row, _ = distinct([cells[name] for name in self.period_texts.present])
        series, series_of_row, first_row = distinct([cells[name] for name in self.series_texts.present])
        series_ids, alike = np.empty(len(series), np.int32), np.empty(len(series), np.int64)
        for index, texts in enumerate(series):
            found = self.series.get(texts)
            if found is None:
                first_period = periods[period_of_row[first_row[index]]]
                found = self.series[texts] = self.find_series(self.series_texts.full(texts), first_period)
            series_ids[index], group = found
            alike[index] = group.alike
        starts, ends = (np.array(days, np.int32) for days in zip(
            *(self.period_days(self.period_texts.full(texts)) for texts in periods), strict=True))
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

    def judge_block(self, cells: dict[str, Cells]) -> None:
        """Every rule judged nowhere else, on each distinct combination of its columns' texts in the block;
        NotProven at the first refusal."""
        for rule, picker in self.block_rules:
            combinations = distinct([cells[name] for name in picker.present])[0] if picker.present else [()]
            for texts in combinations:
                if self.verdicts.of(rule, stripped(picker.full(texts))) is not None:
                    raise NotProven(rule.name)

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
        """Each row's value, scaled: each distinct (groups alike, value text) judged by the value rules and read
        once."""
        pairs, pair_of_row, first_row = distinct([Cells.of_codes(alike_of_row), column])
        if len(self.values) > MAX_REMEMBERED_VALUES:
            self.values.clear()
        judged = np.empty(len(pairs), np.float64)
        for index, (alike, cell) in enumerate(pairs):
            value = self.values.get((int(alike), cell))
            if value is None:
                group = self.series[series[series_of_row[first_row[index]]]][1]
                self.value_rules.judge((*group.texts, cell.strip()))
                value = self.values[(int(alike), cell)] = self.value(group.kind, cell)
            judged[index] = value
        return judged[pair_of_row]

    def value(self, kind: ValueKind, cell: str) -> float:
        number = self.context.number(cell.strip())
        if isinstance(number, str):
            raise NotProven("value")  # the value rule refuses it first; this only guards a list without it
        return scaled(kind, number)

    def period_days(self, texts: tuple[str, ...]) -> tuple[int, int]:
        """A period's first and last day (as days since 2000-01-01), remembered, and its label noted."""
        judged = self.periods.get(texts)
        if judged is None:
            self.period_rules.judge(stripped(texts))
            period = self.context.period(*stripped(texts))
            if isinstance(period, str):
                raise NotProven("period")
            self.labels[(period.start, period.end)] = period.label
            judged = self.periods[texts] = ((period.start - DAY_ZERO).days, (period.end - DAY_ZERO).days)
        return judged

    def find_series(self, texts: tuple[str, ...], first_period: tuple[str, ...]) -> tuple[int, Group]:
        """The series the (practice, vendor, KPI, unit, segment) texts name, found or made."""
        group_texts, segment_text = texts[:-1], texts[-1]
        group = self.groups.get(group_texts)
        if group is None:
            group = self.groups[group_texts] = self.group(stripped(group_texts))
        segment = self.segments.get(segment_text)
        if segment is None:
            self.segment_rules.judge((segment_text.strip(),))
            segment = self.segments[segment_text] = self.context.segment(segment_text.strip())[0]
        if self.series_rules.rules:
            self.series_rules.judge(stripped(texts))
        stored = self.known_series(group, segment, first_period)
        series_id = stored.get((group.kpi, segment))
        if series_id is None:
            series_id = self.next_id()
            stored[(group.kpi, segment)] = series_id
            self.new_series.append((series_id, group.practice_id, group.vendor_id, group.kpi, segment))
        return series_id, group

    def group(self, texts: tuple[str, ...]) -> Group:
        self.group_rules.judge(texts)
        practice, vendor_id, _ = self.context.owner(texts[0], texts[1])
        kpi, kind = self.context.kpi(texts[2]), self.context.value_kind(*texts)
        if practice is None or vendor_id is None or kpi is None or kind is None:
            raise NotProven("practice, vendor or KPI")  # their rules refuse them first
        alike = self.alike.setdefault((kind, *self.value_rules.alike_of(texts)), len(self.alike))
        return Group(practice.id, vendor_id, kpi[0], kind, texts, alike)

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
        start, end = (DAY_ZERO + dt.timedelta(days=days) for days in self.period_days(period_key))
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
        return np.array([is_blank((cell,)) for cell in self.texts], bool)[self.codes]

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

    def __init__(self, columns: tuple[str, ...], names: tuple[str, ...], allow_none: bool = False):
        self.names = names
        self.present = [name for name in names if name in columns]
        if not self.present and not allow_none:
            raise NotProven(f"none of the columns {', '.join(names)}")
        missing = len(self.present)  # where full() puts the '' it adds
        self.spread = itemgetter(*(self.present.index(name) if name in self.present else missing for name in names))

    def full(self, picked: tuple[str, ...]) -> tuple[str, ...]:
        """One text per name, '' for a column the file does not have (as a missing cell reads row by row)."""
        return self.spread((*picked, ""))


def stripped(texts: tuple[str, ...]) -> tuple[str, ...]:
    """The texts as the row-by-row path reads the cells (feeds.parse strips each)."""
    return tuple(text.strip() for text in texts)


class RulesOn:
    """The rules, taken from `remaining`, whose columns are all among `columns` (a group's, a series', a
    period's; with `last`, those naming it last): judged when such texts are first met, each on its own columns'
    texts."""

    def __init__(self, columns: tuple[str, ...], remaining: list[Rule], verdicts: Verdicts, last: str | None = None):
        self.verdicts = verdicts
        self.rules = [rule for rule in remaining if set(rule.columns) <= set(columns)
                      and (last is None or rule.columns[-1] == last)]
        for rule in self.rules:
            remaining.remove(rule)
        self.picks = [(rule, [columns.index(name) for name in rule.columns]) for rule in self.rules]

    def judge(self, texts: tuple[str, ...]) -> None:
        """NotProven if a rule refuses these texts (one per column, in `columns` order)."""
        for rule, picks in self.picks:
            if self.verdicts.of(rule, tuple(texts[index] for index in picks)) is not None:
                raise NotProven(rule.name)

    def alike_of(self, texts: tuple[str, ...]) -> tuple[Hashable, ...]:
        """Per rule, what its verdict depends on in these texts of `columns` but the last."""
        return tuple(self.verdicts.alike_of(rule, tuple(texts[index] for index in picks[:-1]))
                     for rule, picks in self.picks)
