"""One feed file in, one outcome out: accepted, duplicate or rejected (with every problem).

intake/ decides that a file is a feed (not a pulse export) and hands it over as an `Upload` (storage/uploads.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from feeds.parse import Table, UnreadableRow, is_json_feed, json_table, stream_table
from feeds.stream import KeysStored, store_first_delivery
from feeds.validate import (
    MAX_LISTED_PROBLEMS,
    FeedOrigin,
    Problem,
    ProblemLog,
    Rejected,
    RowValidator,
    canonical_rows,
    validate_stream,
)
from storage.db import session_scope
from storage.models import FeedFile, Observation, utcnow
from storage.observations import (
    DuplicateFile,
    StoreCounts,
    claim_file,
    merge,
    prepare_staging,
    stage,
    staged_duplicates,
    staged_practices,
)
from storage.uploads import IngestResult, Upload, record_rejection

# On PostgreSQL, before the row-by-row check: a first delivery streamed into observation_value (feeds.stream). It
# only ever accepts; on doubt, and for a file with values already stored (a correction), the row-by-row check runs.
FAST_CHECKS = ("streamed",)


class FileRejected(Exception):
    def __init__(self, problems: ProblemLog):
        super().__init__(f"{problems.total} problem(s)")
        self.problems = problems


def ingest_feed(upload: Upload) -> IngestResult:
    path = str(upload.path)
    try:
        with session_scope(upload.database_url) as session:
            feed = claim_file(session, sha256=upload.sha256, filename=upload.path.name, source=upload.source,
                              practice_id=upload.origin.practice_id, vendor_id=upload.origin.vendor_id)
            rows, counts, practices, checked_in = load_and_merge(session, upload, feed.id)
            feed.rows = rows
            if feed.practice_id is None and len(practices) == 1:
                feed.practice_id = practices[0]
    except DuplicateFile:
        return IngestResult(path, "duplicate",
                            practices=practices_of_file(upload.sha256, upload.origin, upload.database_url))
    except FileRejected as rejected:
        record_rejection(upload.path, upload.sha256, upload.source, list(rejected.problems), upload.database_url,
                         upload.origin)
        return IngestResult(path, "rejected", problems=list(rejected.problems), problem_count=rejected.problems.total)
    return IngestResult(path, "accepted", rows=rows, counts=counts, practices=practices, checked_in=checked_in)


def practices_of_file(sha256: str, origin: FeedOrigin, database_url: str | None) -> list[str]:
    """The practices an earlier copy of these bytes, for the same practice and vendor, stored values for: a
    duplicate may be the retry of an ingest whose worker died after committing and before asking for the
    evaluation, which the caller then asks for."""
    with session_scope(database_url) as session:
        feed = session.scalars(select(FeedFile).where(
            FeedFile.sha256 == sha256, FeedFile.practice_key == (origin.practice_id or ""),
            FeedFile.vendor_key == (origin.vendor_id or ""))).first()
        if feed is None:
            return []
        if feed.practice_id is not None:
            return [feed.practice_id]
        query = select(Observation.practice_id).where(Observation.feed_file_id == feed.id).distinct()
        return sorted(session.scalars(query))


def load_and_merge(session: Session, upload: Upload, feed_id: int) -> tuple[int, StoreCounts, list[str], str]:
    """Store every row of the file in the caller's transaction, or none: FileRejected (rolling it all back) if
    any row, or the file as a whole, has a problem. Also says where the rows were checked (IngestResult).

    Each check reads the file once more, and each runs only while the one before could not decide: see
    intake.ingest_path for the count."""
    connection = session.connection()
    now = utcnow()
    fast = FAST_CHECKS if upload.fast is None else upload.fast
    if connection.dialect.name == "postgresql" and "streamed" in fast:
        try:
            streamed = store_first_delivery(connection, upload, feed_id)
        except KeysStored:
            streamed = None  # values already stored: merge them
        else:
            if streamed is not None:
                return streamed.rows, StoreCounts(streamed.rows, 0, 0), streamed.practices, "streamed"
    prepare_staging(connection)
    total = stage_row_by_row(connection, upload)
    counts = merge(connection, feed_id, now)
    return total, counts, staged_practices(connection), "python"


def stage_row_by_row(connection: Connection, upload: Upload) -> int:
    """Check every row in Python as the file streams past, staging the valid ones; FileRejected with every
    problem, each named by row and column, if there is any."""
    problems = ProblemLog()
    total = 0
    try:
        with open_table(upload) as table:
            canonical = canonical_rows(table, upload.config, upload.origin)
            validator = RowValidator(upload.config, upload.origin, upload.today)
            total = stage(connection, validate_stream(canonical.rows, validator, problems))
        problems.add(staged_duplicates(connection, MAX_LISTED_PROBLEMS, canonical.period_column))
    except Rejected as rejected:
        problems.add(rejected.problems)
    except UnreadableRow as exc:
        problems.add([Problem(exc.row, None, None, exc.message)])
    if problems:
        problems.sort(key=lambda problem: problem.row)
        raise FileRejected(problems)
    return total


@contextmanager
def open_table(upload: Upload) -> Iterator[Table]:
    """The file as a table: JSON read whole (feeds in JSON are small), CSV streamed row by row."""
    path, fp = upload.path, upload.fingerprint
    if is_json_feed(path, fp):
        try:
            table = json_table(path.read_bytes())
        except ValueError as exc:  # only the document's shape: a ValueError from the caller's block is not ours
            row, column, message = str(exc).split("|", 2)
            raise Rejected([Problem(int(row), column or None, None, message)]) from exc
        yield table
        return
    with path.open("r", encoding=fp.encoding, errors="replace", newline="") as stream:
        yield stream_table(stream)
