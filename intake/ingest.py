"""Which reader a file goes to (feeds/, pulse/ or remits/), and where an inbox file goes after (archive/,
quarantine/)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Collection
from pathlib import Path

from config import Config
from feeds.ingest import ingest_feed
from pulse.detect import looks_like_survey
from pulse.ingest import ingest_pulse_file
from remits.envelope import is_x12
from remits.ingest import ingest_remit_file
from storage.uploads import FeedOrigin, IngestResult, Upload, fingerprint

# The most times ingest_path opens the file to read it through (see its docstring; tests/test_ingest_reads.py).
MOST_FULL_READS = 3


def ingest_path(path: Path, config: Config, *, source: str = "cli", inbox: Path | None = None,
                practice: str | None = None, vendor: str | None = None, today: dt.date | None = None,
                database_url: str | None = None, survey_tool: str | None = None,
                fast: Collection[str] | None = None) -> IngestResult:
    """Ingest one feed file, pulse export or 835 remittance (survey_tool: read it as that tool's export, without
    detecting).
    `fast` names the quicker checks PostgreSQL may try before the row-by-row one (None: all; tests compare them).

    The file is read streaming, so memory does not grow with its size (a pulse export and a JSON feed, both small
    and capped, are read whole). It is read through at most three times (MOST_FULL_READS), each pass only when the
    one before could not decide:
    1. the fingerprint (SHA-256, encoding, first 4 KB): always; a duplicate costs nothing more;
    2. on PostgreSQL, a long CSV streamed into observation_value (feeds.stream): it stops at the first block it
       cannot prove clean, or ends with KeysStored when the table's key refuses a value;
    3. only when the stream doubted the file or found a value stored (a correction), or could not take it
       (SQLite, a wide CSV, JSON, `fast` empty), row by row, which merges a correction and alone names every
       problem.
    So a first delivery is read twice, and a correction, a file repeating a key (the table's key cannot tell it
    from a stored value) or a CSV with a bad cell three times. The stream also opens the file for its header line
    first. A pulse export or JSON feed: twice (the fingerprint, then whole); an 835 twice (the
    fingerprint, then a memory map the parser walks). Counted by the kernel in
    tests/test_ingest_reads.py."""
    fp = fingerprint(path)
    inferred = origin_from_inbox(path, inbox)
    origin = FeedOrigin(practice or inferred.practice_id, vendor or inferred.vendor_id)
    upload = Upload(path, fp, config, origin, today or dt.date.today(), source, database_url, survey_tool, fast)
    if not survey_tool and is_x12(fp.head):  # an X12 interchange (ISA header): a payer's 835 remittance
        return ingest_remit_file(upload)
    if survey_tool or is_pulse_export(fp.head):
        return ingest_pulse_file(upload)
    return ingest_feed(upload)


def is_pulse_export(head: bytes) -> bool:
    return looks_like_survey(head)  # Google Forms, Microsoft Forms, SurveyMonkey or Qualtrics (pulse/detect.py)


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


def file_away(result: IngestResult, path: Path, archive: Path, quarantine: Path, inbox: Path) -> None:
    """Move an inbox file to archive/ (accepted, duplicate) or quarantine/ with its .errors.json (rejected).

    A pulse export is deleted instead: it carries staff names, emails and comments, which vendorwatch must not
    keep (only its aggregates are stored); a rejected one leaves just its .errors.json, which names no one. So is
    an accepted 835, which names patients (only its aggregates are kept); a rejected one is quarantined, for the
    operator to fix, with a report of segment numbers and element positions only."""
    relative = unfollowed(path).relative_to(inbox.resolve())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    target_root = quarantine if result.status == "rejected" else archive
    target = target_root / relative.parent / f"{stamp}-{relative.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    kept = result.kind != "pulse" and (result.kind != "remits" or result.status == "rejected")
    if not kept:
        path.unlink()
    else:
        shutil.move(str(path), target)
    if result.status == "rejected":
        errors = {"file": str(relative), "errors": [p.as_dict() for p in result.problems]}
        target.with_name(target.name + ".errors.json").write_text(json.dumps(errors, indent=2))
    result.moved_to = str(target) if kept else None
