"""Store one 835 remittance file: its aggregates per (practice, payer, month of BPR16), once per exact file.

The file is read through a memory map (oxedi walks it transaction by transaction), so a large file is never
copied into Python. Nothing of a patient, a member or a single claim is stored or logged: only the month
aggregates and a keyed hash of each claim id. The caller deletes an accepted file; a rejected one goes to
quarantine with its problems (segment numbers and element positions only).
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

from remits.envelope import HEAD_BYTES, check_envelope, strip_lead
from remits.keys import remit_key
from remits.read import FileFigures, RemitRejected, SegmentProblem, read_835, settle, sights
from remits.store import (
    DuplicateRemit,
    add_months,
    already_stored,
    claim_remit_file,
    lock_practice,
    seen_and_record,
    take_back,
)
from storage.db import session_scope
from storage.observations import Problem
from storage.uploads import FeedOrigin, Fingerprint, IngestResult, Upload, record_rejection

log = logging.getLogger(__name__)
REMITS_VENDOR = "remits"  # the inbox folder: inbox/<practice>/remits/<file>


def ingest_remit_file(upload: Upload) -> IngestResult:
    """The practice is the one the delivery named (inbox folder or --practice): an 835 names payers, not us."""
    path, fp, config, source, database_url = (upload.path, upload.fingerprint, upload.config, upload.source,
                                              upload.database_url)
    practice_id = upload.origin.practice_id
    practice = config.practice(practice_id or "")
    if practice is None:
        where = "put the 835 in inbox/<practice>/remits/ or pass --practice"
        return reject(path, fp.sha256, source, [Problem(1, None, None, f"unknown practice: {where}")],
                      database_url, practice_id)
    key = remit_key()  # RemitKeyMissing: the operator's to fix, the file stays where it is
    with session_scope(database_url) as session:
        if already_stored(session, fp.sha256, practice.id):
            return IngestResult(str(path), "duplicate", kind="remits", practices=[practice.id])
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        envelope = check_envelope(head)
        if envelope:
            problems = [SegmentProblem(p.segment, p.element, p.message) for p in envelope]
            return reject(path, fp.sha256, source, as_problems(problems), database_url, practice.id)
        lead = len(head) - len(strip_lead(head))  # a BOM or blank lines before the ISA: not the parser's to see
        with (mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data, memoryview(data) as whole,
              whole[lead:] as body):  # each view released before the map closes
            try:
                figures = read_835(body, key, config.catalog.remits.payers)
            except RemitRejected as rejected:
                return reject(path, fp.sha256, source, as_problems(rejected.problems), database_url, practice.id,
                              rejected.total)
    return store(path, fp, figures, practice.id, source, database_url)


def store(path: Path, fp: Fingerprint, figures: FileFigures, practice_id: str, source: str,
          database_url: str | None) -> IngestResult:
    claims = figures.claim_count
    try:
        with session_scope(database_url) as session:
            lock_practice(session, practice_id)
            claim_remit_file(session, sha256=fp.sha256, practice_id=practice_id, filename=path.name, source=source,
                             claims=claims)
            unmatched = take_back(session, practice_id, figures)  # before this file's own claims are recorded
            seen = seen_and_record(session.connection(), practice_id, sights(figures))
            buckets = settle(figures, seen)
            for index, count in unmatched.items():
                buckets[figures.claims.buckets[index]].unmatched_reversals += count
            add_months(session, practice_id, buckets.values())
    except DuplicateRemit:
        return IngestResult(str(path), "duplicate", kind="remits", practices=[practice_id])
    log.info("stored an 835 for %s: %d claims in %d payer-months", practice_id, claims, len(figures.buckets))
    return IngestResult(str(path), "accepted", kind="remits", rows=claims, practices=[practice_id],
                        notes=reversal_notes(len(figures.reversals), sum(unmatched.values())))


def reversal_notes(reversals: int, unmatched: int) -> list[str]:
    """What the operator should know of reversals of claims paid in earlier files (counts only)."""
    notes = []
    if reversals - unmatched:
        notes.append(f"{reversals - unmatched} claim(s) paid in an earlier file reversed: taken out of their month")
    if unmatched:
        notes.append(f"{unmatched} reversal(s) of a claim no stored file counts: recorded as unmatched")
    return notes


def as_problems(problems: list[SegmentProblem]) -> list[Problem]:
    """As the feed problems every reader shows: `row` is the segment number (the ISA is 1), `column` the element
    position; no value is ever quoted."""
    return [Problem(p.segment or 0, p.element, None, f"segment {p.segment or 'at end of file'}"
                                                     f"{', ' + p.element if p.element else ''}: {p.message}")
            for p in problems]


def reject(path: Path, sha256: str, source: str, problems: list[Problem], database_url: str | None,
           practice_id: str | None, total: int | None = None) -> IngestResult:
    record_rejection(path, sha256, source, problems, database_url, FeedOrigin(practice_id, REMITS_VENDOR))
    return IngestResult(str(path), "rejected", kind="remits", problems=problems,
                        problem_count=total or len(problems))
