"""Long CSV feeds checked inside PostgreSQL: the fast path for big files.

The row-by-row path (feeds.validate) spends about 15 us of Python on every row; a million-row feed waits 15 s
for it. Here the file's bytes go to a temporary table with COPY, as text. Each *distinct* text of a column (a
feed repeats a few practice, KPI, period and segment names on every row) is judged in Python by the very
functions the row-by-row path uses, the verdicts go back as small lookup tables, and one set-based INSERT builds
the staged observations from them.

Only a file proven clean is staged here. On any doubt (a problem in any cell, a row that does not join, a row
repeated, bytes COPY refuses, or a shape this path does not read: JSON, wide, a quoted header) the savepoint is
rolled back and the caller runs the row-by-row path, which reads the file again and names every problem with
its row and column. So this path never writes an error message, and for every file both paths store the same
observations (tests/test_bulk_ingest.py compares them on generated files).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.exc import DataError

from feeds.parse import CHUNK, Fingerprint, Table, is_json_feed, normalise_header, sniff_delimiter
from feeds.validate import (
    INVALID_UNIT,
    SIGNED_KPIS,
    FeedOrigin,
    Problem,
    RowValidator,
    check_long_columns,
    is_wide,
    read_number,
    unit_scale,
    value_bounds,
    value_unit,
)
from storage.observations import STAGING_COLUMNS
from storage.uploads import Upload

log = logging.getLogger(__name__)

# Texts PostgreSQL's float8 input and Python's float() read to the same double (both round correctly); any other
# value text is read by Python, once per distinct text. Unbounded repeats: PostgreSQL's regex engine takes twice
# as long over a million cells with counted ones ({1,15}); the length keeps float8's range out of reach.
PLAIN_NUMBER = r"^-?[0-9]+(\.[0-9]+)?$"
PLAIN_LENGTH = 40
MAX_DISTINCT_VALUES = 200_000  # beyond this, judging distinct texts saves nothing and holds them all in memory
ENCODINGS = {"utf-8-sig": "UTF8", "cp1252": "WIN1252"}
GROUP_COLUMNS = ("practice", "vendor", "kpi", "unit")
PERIOD_COLUMNS = ("period", "period_start", "period_end")


def is_plain(cell: str) -> str:
    """SQL: is this value cell a plain number?"""
    return f"(length({cell}) <= {PLAIN_LENGTH} AND {cell} ~ '{PLAIN_NUMBER}')"


class NotProven(Exception):
    """This file is not provably clean here: leave it to the row-by-row path."""


@dataclass(frozen=True)
class LongLayout:
    columns: tuple[str, ...]  # normalised header names, in file order
    delimiter: str
    encoding: str  # PostgreSQL's name for it

    def cell(self, name: str) -> str:
        """The SQL for this row's cell of a column, or '' for a column the file does not have (as a missing
        cell reads in the row-by-row path)."""
        return f"r.c{self.columns.index(name)}" if name in self.columns else "''"


def long_layout(path: Path, fp: Fingerprint, origin: FeedOrigin) -> LongLayout | None:
    """The header of a long CSV this path can read, or None."""
    encoding = ENCODINGS.get(fp.encoding)
    if encoding is None or is_json_feed(path, fp):
        return None
    with path.open("r", encoding=fp.encoding, errors="replace", newline="") as stream:
        first_line = stream.readline().removesuffix("\n").removesuffix("\r")
    if not first_line or any(mark in first_line for mark in '"\r\n'):
        return None  # a quoted or multi-line header: COPY's HEADER skips one line, which may not be one record
    delimiter = sniff_delimiter(first_line)
    columns = [normalise_header(name) for name in first_line.removeprefix("\ufeff").split(delimiter)]
    table = Table(columns=columns, rows=[])
    if is_wide(table) or check_long_columns(table, origin):  # a column twice is one of its problems
        return None
    return LongLayout(tuple(columns), delimiter, encoding)


def stage_in_database(connection: Connection, upload: Upload) -> int | None:
    """Stage the file into feed_staging (already created and empty) if it is provably clean, and say how many
    rows; None with nothing changed otherwise (the caller then runs the row-by-row path)."""
    path, origin = upload.path, upload.origin
    layout = long_layout(path, upload.fingerprint, origin)
    if layout is None:
        return None
    try:
        with connection.begin_nested():
            return check_proven(connection, path, layout, RowValidator(upload.config, origin, upload.today))
    except (NotProven, DataError, psycopg.DataError) as exc:
        log.info("%s: checked row by row instead (%s)", path.name, type(exc).__name__)
        return None


def check_proven(connection: Connection, path: Path, layout: LongLayout, validator: RowValidator) -> int:
    copy_raw(connection, path, layout)
    rows = connection.execute(text(f"SELECT count(*) FROM feed_raw r WHERE {not_blank(layout)}")).scalar_one()
    if rows == 0:
        raise NotProven("no data rows")
    load_verdicts(connection, layout, validator)
    # The planner cannot know that every raw row finds exactly one verdict; misjudging the joins as selective it
    # picks nested loops, one pass over a lookup table per row. Every lookup table is small: hash them all.
    connection.execute(text("SET LOCAL enable_nestloop = off"))
    try:
        return stage_proven(connection, layout, rows)
    finally:
        connection.execute(text("SET LOCAL enable_nestloop = on"))


def stage_proven(connection: Connection, layout: LongLayout, rows: int) -> int:
    staged = connection.execute(text(STAGE_SQL.format(select=SELECT_SQL.format(**stage_parts(layout))))).rowcount
    if staged != rows:
        raise NotProven(f"{rows - staged} row(s) did not pass")
    connection.execute(text("ANALYZE feed_staging"))
    if connection.execute(text(REPEATED_KEY_SQL)).first() is not None:
        raise NotProven("a key given twice")
    return int(staged)


def copy_raw(connection: Connection, path: Path, layout: LongLayout) -> None:
    cells = [f"c{index}" for index in range(len(layout.columns))]
    connection.execute(text(
        f"CREATE TEMPORARY TABLE feed_raw (line BIGINT GENERATED ALWAYS AS IDENTITY,"
        f" {', '.join(f'{cell} TEXT' for cell in cells)}) ON COMMIT DROP"
    ))
    delimiter = "E'\\t'" if layout.delimiter == "\t" else f"'{layout.delimiter}'"
    statement = (f"COPY feed_raw ({', '.join(cells)}) FROM STDIN WITH (FORMAT csv, HEADER true,"
                 f" DELIMITER {delimiter}, ENCODING '{layout.encoding}', FORCE_NOT_NULL ({', '.join(cells)}))")
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy, path.open("rb") as stream:  # type: ignore[union-attr]
        for chunk in without_trailing_blank_lines(stream):
            copy.write(chunk)


def without_trailing_blank_lines(stream: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes in chunks, its line breaks at the very end cut to one. COPY reads a blank line as a row
    with too few cells and refuses the file; many exports end with one, and the row-by-row path skips it."""
    held = b""  # line breaks at the end of what was read so far: written only if more than breaks follows
    while chunk := stream.read(size):
        body = chunk.rstrip(b"\r\n")
        if body:
            yield held + body
            held = b""
        held += chunk[len(body):]
    if held:
        yield b"\r\n" if held.startswith(b"\r\n") else held[:1]


def not_blank(layout: LongLayout) -> str:
    """A row of nothing but empty cells is skipped, as the row-by-row path skips it."""
    return "NOT (" + " AND ".join(f"r.c{index} = ''" for index in range(len(layout.columns))) + ")"


def distinct(connection: Connection, layout: LongLayout, names: Sequence[str], where: str = "true",
             limit: int | None = None) -> list[tuple[str, ...]]:
    cells = ", ".join(layout.cell(name) for name in names)
    bound = f" LIMIT {limit + 1}" if limit is not None else ""
    query = f"SELECT DISTINCT {cells} FROM feed_raw r WHERE {not_blank(layout)} AND {where}{bound}"
    return [tuple(row) for row in connection.execute(text(query))]


def as_row(names: Sequence[str], texts: Sequence[str], layout: LongLayout) -> dict[str, str]:
    """The row dict the row-by-row path would build: the file's own columns only, each cell stripped."""
    return {name: cell.strip() for name, cell in zip(names, texts, strict=True) if name in layout.columns}


def load_verdicts(connection: Connection, layout: LongLayout, validator: RowValidator) -> None:
    groups = [judge_group(validator, layout, texts) for texts in distinct(connection, layout, GROUP_COLUMNS)]
    periods = [judge_period(validator, layout, texts) for texts in distinct(connection, layout, PERIOD_COLUMNS)]
    segments = [judge_segment(validator, layout, texts) for texts in distinct(connection, layout, ("segment",))]
    value_texts = distinct(connection, layout, ("value",), f"NOT {is_plain(layout.cell('value'))}",
                           MAX_DISTINCT_VALUES)
    if len(value_texts) > MAX_DISTINCT_VALUES:
        raise NotProven("too many distinct value texts")
    values = [judge_value(texts[0]) for texts in value_texts]
    load_table(connection, "verdict_group", GROUP_TABLE, groups)
    load_table(connection, "verdict_period", PERIOD_TABLE, periods)
    load_table(connection, "verdict_segment", SEGMENT_TABLE, segments)
    load_table(connection, "verdict_value", VALUE_TABLE, values)


def judge_group(validator: RowValidator, layout: LongLayout, texts: tuple[str, ...]) -> tuple[object, ...]:
    """(practice, vendor, kpi, unit) texts -> the stored ids, the scale for each kind of value and the bounds."""
    row = as_row(GROUP_COLUMNS, texts, layout)
    problems: list[Problem] = []
    practice, vendor_id = validator.check_practice_and_vendor(0, row, problems)
    kpi = validator.check_kpi(0, row, problems)
    if problems or practice is None or vendor_id is None or kpi is None:
        raise NotProven("practice, vendor or KPI")
    unit = value_unit(row, validator.vendor_unit(practice, vendor_id))
    if unit is INVALID_UNIT:
        raise NotProven("unit")
    low, high = value_bounds(kpi[1], signed=kpi[0] in SIGNED_KPIS)
    return (*texts, practice.id, vendor_id, kpi[0], unit_scale(kpi[1], unit, False), unit_scale(kpi[1], unit, True),
            low, high)


def judge_period(validator: RowValidator, layout: LongLayout, texts: tuple[str, ...]) -> tuple[object, ...]:
    problems: list[Problem] = []
    period = validator.check_period(0, as_row(PERIOD_COLUMNS, texts, layout), problems)
    if problems or period is None:
        raise NotProven("period")
    return (*texts, period.label, period.start, period.end)


def judge_segment(validator: RowValidator, layout: LongLayout, texts: tuple[str, ...]) -> tuple[object, ...]:
    problems: list[Problem] = []
    segment = validator.check_segment(0, as_row(("segment",), texts, layout), problems)
    if problems:
        raise NotProven("segment")
    return (texts[0], segment)


def judge_value(cell: str) -> tuple[object, ...]:
    number = read_number(cell.strip())
    if isinstance(number, str):
        raise NotProven("value")
    return (cell, *number)


GROUP_TABLE = ("practice TEXT, vendor TEXT, kpi TEXT, unit TEXT, practice_id TEXT, vendor_id TEXT, kpi_key TEXT,"
               " scale_plain DOUBLE PRECISION, scale_percent DOUBLE PRECISION, low DOUBLE PRECISION,"
               " high DOUBLE PRECISION")
PERIOD_TABLE = "period TEXT, period_start TEXT, period_end TEXT, label TEXT, first_day DATE, last_day DATE"
SEGMENT_TABLE = "segment TEXT, canonical TEXT"
VALUE_TABLE = "cell TEXT, value DOUBLE PRECISION, had_percent BOOLEAN"


def load_table(connection: Connection, name: str, columns: str, rows: Iterable[tuple[object, ...]]) -> None:
    connection.execute(text(f"CREATE TEMPORARY TABLE {name} ({columns}) ON COMMIT DROP"))
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(f"COPY {name} FROM STDIN") as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row(row)
    connection.execute(text(f"ANALYZE {name}"))


def stage_parts(layout: LongLayout) -> dict[str, str]:
    cell = layout.cell
    return {
        "practice": cell("practice"), "vendor": cell("vendor"), "kpi": cell("kpi"), "unit": cell("unit"),
        "period": cell("period"), "period_start": cell("period_start"), "period_end": cell("period_end"),
        "segment": cell("segment"), "value": cell("value"), "not_blank": not_blank(layout),
        "is_plain": is_plain(cell("value")),
    }


# Every row joins its verdicts by its raw texts; a row whose value is neither a plain number nor a judged text, or
# whose scaled value falls outside its KPI's bounds, is left out, and the caller counts what came through.
SELECT_SQL = """
SELECT line, practice_id, vendor_id, kpi_key AS kpi, label AS period, first_day AS period_start,
    last_day AS period_end, canonical AS segment, value FROM (
    SELECT r.line, g.practice_id, g.vendor_id, g.kpi_key, p.label, p.first_day, p.last_day, s.canonical, g.low,
        g.high, CASE
            WHEN v.cell IS NOT NULL THEN v.value * CASE WHEN v.had_percent THEN g.scale_percent ELSE g.scale_plain END
            WHEN {is_plain} THEN {value}::double precision * g.scale_plain
        END AS value
    FROM feed_raw r
    JOIN verdict_group g ON g.practice = {practice} AND g.vendor = {vendor} AND g.kpi = {kpi} AND g.unit = {unit}
    JOIN verdict_period p ON p.period = {period} AND p.period_start = {period_start}
        AND p.period_end = {period_end}
    JOIN verdict_segment s ON s.segment = {segment}
    LEFT JOIN verdict_value v ON v.cell = {value}
    WHERE {not_blank}
    OFFSET 0  -- not flattened: each row's value is worked out once, not once per condition below
) x
WHERE value IS NOT NULL AND (low IS NULL OR value >= low) AND (high IS NULL OR value <= high)
"""
STAGE_SQL = f"INSERT INTO feed_staging ({STAGING_COLUMNS}) {{select}}"
REPEATED_KEY_SQL = (
    "SELECT 1 FROM feed_staging GROUP BY practice_id, vendor_id, kpi, period, segment HAVING count(*) > 1 LIMIT 1"
)
