"""One file in, one outcome out: accepted, duplicate or rejected (with every problem)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from config import Config
from feeds.bulk import stage_in_database
from feeds.parse import Fingerprint, Table, UnreadableRow, fingerprint, is_json_feed, json_table, stream_table
from feeds.store import (
    DuplicateFile,
    StoreCounts,
    claim_file,
    merge,
    prepare_staging,
    stage,
    staged_duplicates,
    staged_practices,
)
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
from pulse.detect import looks_like_survey
from remits.envelope import is_x12  # remits (issue 16)
from storage.db import session_scope
from storage.models import FeedFile, FeedRejection, Observation, utcnow

# On PostgreSQL, before the row-by-row check: a first delivery streamed into observation_value (feeds.stream), then
# the in-database check of a long CSV (feeds.bulk). Either only ever accepts; on doubt the next one runs.
FAST_CHECKS = ("streamed", "postgresql")


@dataclass
class IngestResult:
    path: str
    status: str  # accepted | duplicate | rejected | ignored (not a regular file: set aside unread, feeds.inbox)
    kind: str = "feed"  # feed | pulse | remits
    rows: int = 0
    counts: StoreCounts | None = None
    problems: list[Problem] = field(default_factory=list)
    practices: list[str] = field(default_factory=list)
    moved_to: str | None = None
    problem_count: int = 0
    # Where the rows of an accepted feed were checked: "streamed" (a first delivery, feeds.stream), "postgresql"
    # (feeds.bulk) or "python" (row by row, feeds.validate).
    checked_in: str | None = None
    # What the operator should know about an accepted file, e.g. a surveys.yaml question the export lacks.
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.status == "accepted" and (
            self.counts is None or self.counts.inserted + self.counts.revised > 0
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "status": self.status,
            "kind": self.kind,
            "rows": self.rows,
            "inserted": self.counts.inserted if self.counts else None,
            "revised": self.counts.revised if self.counts else None,
            "practices": self.practices,
            "moved_to": self.moved_to,
            "errors": [problem.as_dict() for problem in self.problems],
            "error_count": max(self.problem_count, len(self.problems)),
            "checked_in": self.checked_in,
            "notes": self.notes,
        }


def origin_from_inbox(path: Path, inbox: Path | None) -> FeedOrigin:
    """inbox/<practice>/<vendor>/<file> names the practice and the vendor."""
    if inbox is None:
        return FeedOrigin()
    try:
        parts = unfollowed(path).relative_to(inbox.resolve()).parts
    except ValueError:
        return FeedOrigin()
    practice = parts[0] if len(parts) >= 2 else None
    vendor = parts[1] if len(parts) >= 3 else None
    return FeedOrigin(practice_id=practice, vendor_id=vendor)


def unfollowed(path: Path) -> Path:
    """The absolute path with its folders resolved but not its last part: an inbox entry that is (or has just
    become) a link is named where it lies, never where it points."""
    return path.parent.resolve() / path.name


def is_pulse_export(head: bytes) -> bool:
    return looks_like_survey(head)  # Google Forms, Microsoft Forms, SurveyMonkey or Qualtrics (pulse/detect.py)


def ingest_path(path: Path, config: Config, *, source: str = "cli", inbox: Path | None = None,
                practice: str | None = None, vendor: str | None = None, today: dt.date | None = None,
                database_url: str | None = None, survey_tool: str | None = None,
                fast: Collection[str] = FAST_CHECKS) -> IngestResult:
    """Ingest one feed file or pulse export (survey_tool: read it as that tool's export, without detecting).
    The file is read twice, streaming (a fingerprint pass, then the parse), so memory does not grow with its size.
    `fast` names the quicker checks PostgreSQL may try before the row-by-row one (tests compare them with it)."""
    fp = fingerprint(path)
    inferred = origin_from_inbox(path, inbox)
    origin = FeedOrigin(practice or inferred.practice_id, vendor or inferred.vendor_id)
    # --- remits (issue 16): an X12 file (ISA header) is a payer's 835 remittance ---------------------------------
    if not survey_tool and is_x12(fp.head):
        from remits.ingest import ingest_remit_file

        return ingest_remit_file(path, fp, config, origin.practice_id, source=source, database_url=database_url)
    # --- end remits ---------------------------------------------------------------------------------------------
    if survey_tool or is_pulse_export(fp.head):
        from pulse.ingest import ingest_pulse_file

        return ingest_pulse_file(path, fp, config, origin.practice_id, database_url=database_url,
                                 survey_tool=survey_tool, source=source, today=today)
    return ingest_feed(path, fp, config, origin, source=source, today=today or dt.date.today(),
                       database_url=database_url, fast=fast)


class FileRejected(Exception):
    def __init__(self, problems: ProblemLog):
        super().__init__(f"{problems.total} problem(s)")
        self.problems = problems


def ingest_feed(path: Path, fp: Fingerprint, config: Config, origin: FeedOrigin, *, source: str,
                today: dt.date, database_url: str | None = None, fast: Collection[str] = FAST_CHECKS) -> IngestResult:
    try:
        with session_scope(database_url) as session:
            feed = claim_file(session, sha256=fp.sha256, filename=path.name, source=source,
                              practice_id=origin.practice_id, vendor_id=origin.vendor_id)
            rows, counts, practices, checked_in = load_and_merge(session, path, fp, config, origin, today, feed.id,
                                                                 fast)
            feed.rows = rows
            if feed.practice_id is None and len(practices) == 1:
                feed.practice_id = practices[0]
    except DuplicateFile:
        return IngestResult(str(path), "duplicate", practices=practices_of_file(fp.sha256, origin, database_url))
    except FileRejected as rejected:
        record_rejection(path, fp.sha256, source, list(rejected.problems), database_url, origin)
        return IngestResult(str(path), "rejected", problems=list(rejected.problems),
                            problem_count=rejected.problems.total)
    return IngestResult(str(path), "accepted", rows=rows, counts=counts, practices=practices, checked_in=checked_in)


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


def load_and_merge(session: Session, path: Path, fp: Fingerprint, config: Config, origin: FeedOrigin,
                   today: dt.date, feed_id: int, fast: Collection[str] = FAST_CHECKS
                   ) -> tuple[int, StoreCounts, list[str], str]:
    """Store every row of the file in the caller's transaction, or none: FileRejected (rolling it all back) if
    any row, or the file as a whole, has a problem. Also says where the rows were checked (IngestResult)."""
    connection = session.connection()
    now = utcnow()
    on_postgresql = connection.dialect.name == "postgresql"
    in_database = on_postgresql and "postgresql" in fast
    if on_postgresql and "streamed" in fast:
        try:
            streamed = store_first_delivery(connection, path, fp, config, origin, today, feed_id)
        except KeysStored:
            streamed = None  # values already stored: merge them
        else:
            if streamed is not None:
                return streamed.rows, StoreCounts(streamed.rows, 0, 0), streamed.practices, "streamed"
            in_database = False  # not provably clean: the in-database check would doubt it too
    prepare_staging(connection)
    staged = stage_in_database(connection, path, fp, config, origin, today) if in_database else None
    if staged is not None:
        total, checked_in = staged, "postgresql"
    else:
        total, checked_in = stage_row_by_row(connection, path, fp, config, origin, today), "python"
    counts = merge(connection, feed_id, now)
    return total, counts, staged_practices(connection), checked_in


def stage_row_by_row(connection: Connection, path: Path, fp: Fingerprint, config: Config, origin: FeedOrigin,
                     today: dt.date) -> int:
    """Check every row in Python as the file streams past, staging the valid ones; FileRejected with every
    problem, each named by row and column, if there is any."""
    problems = ProblemLog()
    total = 0
    try:
        with open_table(path, fp) as table:
            canonical = canonical_rows(table, config, origin)
            validator = RowValidator(config, origin, today)
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
def open_table(path: Path, fp: Fingerprint) -> Iterator[Table]:
    """The file as a table: JSON read whole (feeds in JSON are small), CSV streamed row by row."""
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


def record_rejection(
    path: Path, sha256: str, source: str, problems: list[Problem], database_url: str | None,
    origin: FeedOrigin | None = None,
) -> None:
    """origin: the practice and vendor the delivery named, so a rejection names the delivery as FeedFile does."""
    origin = origin or FeedOrigin()
    with session_scope(database_url) as session:
        session.add(
            FeedRejection(
                sha256=sha256,
                filename=path.name,
                source=source,
                practice_id=origin.practice_id,
                vendor_id=origin.vendor_id,
                errors=[problem.as_dict() for problem in problems],
            )
        )


def file_away(result: IngestResult, path: Path, archive: Path, quarantine: Path, inbox: Path) -> None:
    """Move an inbox file to archive/ (accepted, duplicate) or quarantine/ with its .errors.json (rejected).

    A pulse export is deleted instead: it carries staff names, emails and comments, which vendorwatch must not
    keep (only its aggregates are stored); a rejected one leaves just its .errors.json, which names no one."""
    relative = unfollowed(path).relative_to(inbox.resolve())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    target_root = quarantine if result.status == "rejected" else archive
    target = target_root / relative.parent / f"{stamp}-{relative.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if result.kind == "pulse" or (result.kind == "remits" and result.status != "rejected"):
        path.unlink()  # remits (issue 16): an accepted 835 names patients; only its aggregates are kept
    else:
        shutil.move(str(path), target)
    if result.status == "rejected":
        errors = {"file": str(relative), "errors": [p.as_dict() for p in result.problems]}
        target.with_name(target.name + ".errors.json").write_text(json.dumps(errors, indent=2))
    kept = result.kind != "pulse" and (result.kind != "remits" or result.status == "rejected")
    result.moved_to = str(target) if kept else None
