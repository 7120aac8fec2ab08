"""Write one file's observations atomically, streaming.

Rows are staged in a temporary table (PostgreSQL COPY, SQLite batched inserts) inside the file's transaction,
checked there for duplicates, then merged: a `series` row for each new (practice, vendor, KPI, segment), then one
INSERT ... ON CONFLICT into `observation_value`: new keys are inserted, changed values are superseded and their old
values kept in `observation_revision`. (A first delivery of a long CSV on PostgreSQL usually never gets here:
feeds.stream stores it unstaged.) The feed_file row
goes in first: its unique key (sha256, and the practice and vendor the delivery named) makes a second copy of the
same bytes for the same practice and vendor (even from a second worker at the same moment) fail, and that
transaction writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice

from sqlalchemy import BindParameter, Connection, bindparam, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import FeedFile, UTCDateTime
from storage.periods import Period

BATCH = 5000
SERIES_MATCH = "r.practice_id = s.practice_id AND r.vendor_id = s.vendor_id AND r.kpi = s.kpi AND r.segment = s.segment"
VALUE_MATCH = "o.series_id = r.id AND o.period_start = s.period_start AND o.period_end = s.period_end"
VALUE_COLUMNS = "series_id, period_start, period_end, value, feed_file_id"
# The staged rows as observation_value rows (the staging table `s` joined to its series `r`).
SELECT_VALUES = (f"SELECT r.id, s.period_start, s.period_end, s.value, :feed"
                 f" FROM feed_staging s JOIN series r ON {SERIES_MATCH}")
STAGING_DDL = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS feed_staging (line INTEGER NOT NULL, practice_id VARCHAR(100) NOT NULL, "
    "vendor_id VARCHAR(100) NOT NULL, kpi VARCHAR(100) NOT NULL, period VARCHAR(32) NOT NULL, "
    "period_start DATE NOT NULL, period_end DATE NOT NULL, segment VARCHAR(200) NOT NULL, "
    "value DOUBLE PRECISION NOT NULL)"
)
STAGING_COLUMNS = "line, practice_id, vendor_id, kpi, period, period_start, period_end, segment, value"


# What feeds/ and pulse/ hand the writer: rows, and what is wrong with a file (stored with its rejection).
MAX_QUOTED = 80  # characters of a cell an error message repeats


def quoted(cell: str | None) -> str | None:
    """A cell as an error may repeat it: cut to MAX_QUOTED characters. Errors are stored, mailed and logged, so a
    file (or whatever it turned out to be) must never travel whole inside one."""
    if cell is None or len(cell) <= MAX_QUOTED:
        return cell
    return cell[:MAX_QUOTED] + "…"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file. `column` and `value` come from the file (a header, a cell) and are cut short
    here, once, for every reader (feeds, pulse exports, the inbox)."""

    row: int
    column: str | None
    value: str | None
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "column", quoted(self.column))
        object.__setattr__(self, "value", quoted(self.value))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        column = f", column {self.column}" if self.column else ""
        value = f" ({self.value!r})" if self.value not in (None, "") else ""
        return f"row {self.row}{column}{value}: {self.message}"


@dataclass(frozen=True)
class ObservationIn:
    practice_id: str
    vendor_id: str
    kpi: str
    period: Period
    segment: str
    value: float
    row: int


@dataclass(frozen=True)
class StoreCounts:
    inserted: int
    revised: int
    unchanged: int


class DuplicateFile(Exception):
    """These exact bytes were accepted before for the same practice and vendor."""


def claim_file(session: Session, *, sha256: str, filename: str, source: str, practice_id: str | None,
               vendor_id: str | None) -> FeedFile:
    """The file's row, keyed by its bytes and the practice and vendor its delivery named (None: the file names
    them itself); DuplicateFile if that key was stored before."""
    feed = FeedFile(sha256=sha256, filename=filename, source=source, practice_id=practice_id,
                    vendor_id=vendor_id, practice_key=practice_id or "", vendor_key=vendor_id or "", rows=0)
    session.add(feed)
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateFile(sha256) from exc
    return feed


def prepare_staging(connection: Connection) -> None:
    """An empty staging table for this file, on this connection."""
    connection.execute(text(STAGING_DDL))
    if connection.dialect.name != "postgresql":
        connection.execute(text("DELETE FROM feed_staging"))
        return
    # TRUNCATE, not DELETE: a temporary table is never vacuumed, so deleted rows would pile up per connection.
    # The duplicate check groups the whole file: give this transaction the memory to do it without disk sorts.
    connection.execute(text("TRUNCATE feed_staging"))
    connection.execute(text("SET LOCAL work_mem = '256MB'"))


def stage(connection: Connection, observations: Iterable[ObservationIn]) -> int:
    """Load observations into the connection's (prepared) staging table; returns how many."""
    if connection.dialect.name != "postgresql":
        return insert_rows(connection, observations)
    count = copy_rows(connection, observations)
    connection.execute(text("ANALYZE feed_staging"))
    return count


def staging_tuple(o: ObservationIn) -> tuple[object, ...]:
    return (o.row, o.practice_id, o.vendor_id, o.kpi, o.period.label, o.period.start, o.period.end, o.segment,
            o.value)


def copy_rows(connection: Connection, observations: Iterable[ObservationIn]) -> int:
    raw = connection.connection.driver_connection
    count = 0
    with raw.cursor() as cursor, cursor.copy(f"COPY feed_staging ({STAGING_COLUMNS}) FROM STDIN") as copy:  # type: ignore[union-attr]
        for observation in observations:
            copy.write_row(staging_tuple(observation))
            count += 1
    return count


def insert_rows(connection: Connection, observations: Iterable[ObservationIn]) -> int:
    statement = f"INSERT INTO feed_staging ({STAGING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    raw = connection.connection.driver_connection
    iterator: Iterator[ObservationIn] = iter(observations)
    count = 0
    while batch := list(islice(iterator, BATCH)):
        rows = [(o.row, o.practice_id, o.vendor_id, o.kpi, o.period.label, o.period.start.isoformat(),
                 o.period.end.isoformat(), o.segment, o.value) for o in batch]
        raw.executemany(statement, rows)  # type: ignore[union-attr]
        count += len(rows)
    return count


def staged_duplicates(connection: Connection, limit: int, period_column: str = "period") -> list[Problem]:
    """Each repeat of a (practice, vendor, kpi, period, segment) already given earlier in the same file."""
    query = text(
        "SELECT s.line, s.kpi, s.period, d.first_line FROM feed_staging s JOIN ("
        " SELECT practice_id, vendor_id, kpi, period, segment, min(line) AS first_line FROM feed_staging"
        " GROUP BY practice_id, vendor_id, kpi, period, segment HAVING count(*) > 1) d"
        " ON s.practice_id = d.practice_id AND s.vendor_id = d.vendor_id AND s.kpi = d.kpi"
        " AND s.period = d.period AND s.segment = d.segment"
        " WHERE s.line <> d.first_line ORDER BY s.line LIMIT :limit"
    )
    return [Problem(line, period_column, period, f"{kpi} for this period and segment already given in row {first}")
            for line, kpi, period, first in connection.execute(query, {"limit": limit})]


def stamped(now: dt.datetime) -> BindParameter[dt.datetime]:
    return bindparam("now", value=now, type_=UTCDateTime())


def merge(connection: Connection, feed_file_id: int, now: dt.datetime) -> StoreCounts:
    """Insert new keys, supersede changed values (keeping the old ones as revisions), leave equal ones alone."""
    at = stamped(now)
    add_series(connection)
    add_period_labels(connection)
    total = connection.execute(text("SELECT count(*) FROM feed_staging")).scalar_one()
    inserted = connection.execute(text(
        f"SELECT count(*) FROM feed_staging s JOIN series r ON {SERIES_MATCH}"
        f" WHERE NOT EXISTS (SELECT 1 FROM observation_value o WHERE {VALUE_MATCH})"
    )).scalar_one()
    first_delivery = inserted == total and connection.dialect.name == "postgresql"
    if first_delivery and insert_new(connection, feed_file_id) is not None:
        return StoreCounts(inserted=int(total), revised=0, unchanged=0)
    revised = connection.execute(text(
        "INSERT INTO observation_revision (series_id, period_start, period_end, old_value, new_value,"
        " old_feed_file_id, new_feed_file_id, revised_at)"
        " SELECT o.series_id, o.period_start, o.period_end, o.value, s.value, o.feed_file_id, :feed, :now"
        f" FROM feed_staging s JOIN series r ON {SERIES_MATCH} JOIN observation_value o ON {VALUE_MATCH}"
        " WHERE o.value <> s.value"
    ).bindparams(at), {"feed": feed_file_id}).rowcount
    connection.execute(text(
        f"INSERT INTO observation_value ({VALUE_COLUMNS}) {SELECT_VALUES} WHERE true"
        " ON CONFLICT (series_id, period_start, period_end) DO UPDATE SET value = excluded.value,"
        " feed_file_id = excluded.feed_file_id"
        " WHERE observation_value.value <> excluded.value"
    ), {"feed": feed_file_id})
    return StoreCounts(inserted=int(inserted), revised=int(revised), unchanged=int(total - inserted - revised))


def add_series(connection: Connection) -> None:
    """A series row for each (practice, vendor, KPI, segment) staged that has none yet."""
    connection.execute(text(
        "INSERT INTO series (practice_id, vendor_id, kpi, segment)"
        " SELECT DISTINCT practice_id, vendor_id, kpi, segment FROM feed_staging s"
        f" WHERE NOT EXISTS (SELECT 1 FROM series r WHERE {SERIES_MATCH})"
        " ON CONFLICT (practice_id, vendor_id, kpi, segment) DO NOTHING"  # another file added it meanwhile
    ))


def add_period_labels(connection: Connection) -> None:
    """A period_label row for each period staged that has none yet (a label follows from the period's days, so
    one staged label is as good as another)."""
    connection.execute(text(
        "INSERT INTO period_label (period_start, period_end, label)"
        " SELECT period_start, period_end, min(period) FROM feed_staging s"
        " WHERE NOT EXISTS (SELECT 1 FROM period_label p"
        "  WHERE p.period_start = s.period_start AND p.period_end = s.period_end)"
        " GROUP BY period_start, period_end"
        " ON CONFLICT (period_start, period_end) DO NOTHING"  # another file added it meanwhile
    ))


def insert_new(connection: Connection, feed_file_id: int) -> int | None:
    """A first delivery (no key exists yet) needs no conflict handling; a plain INSERT costs far less. Returns how
    many rows went in, or None with nothing inserted if a key already exists (another file added it meanwhile):
    the savepoint rolls back and the caller upserts instead."""
    try:
        with connection.begin_nested():
            return int(connection.execute(text(f"INSERT INTO observation_value ({VALUE_COLUMNS}) {SELECT_VALUES}"),
                                          {"feed": feed_file_id}).rowcount)
    except IntegrityError:
        return None


def staged_practices(connection: Connection) -> list[str]:
    return sorted(connection.execute(text("SELECT DISTINCT practice_id FROM feed_staging")).scalars())


def staged_vendors(connection: Connection) -> list[tuple[str, str]]:
    query = text("SELECT DISTINCT practice_id, vendor_id FROM feed_staging")
    return sorted((p, v) for p, v in connection.execute(query))
