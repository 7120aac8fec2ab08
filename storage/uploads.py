"""One delivered file, as every reader gets it (`Upload`), and what became of it (`IngestResult`, a rejection).

Shared by feeds/ and pulse/, which intake/ hands a file to; neither imports the other. Also the only two things
both need to read a delivery's bytes: its fingerprint (one streaming pass) and how its text is decoded and split.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from config import Config
from storage.db import session_scope
from storage.models import FeedRejection
from storage.observations import Problem, StoreCounts

CHUNK = 1 << 20


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    encoding: str
    size: int
    head: bytes


def fingerprint(path: Path) -> Fingerprint:
    """One streaming pass: SHA-256 of the bytes, and whether they are UTF-8 (else cp1252, as Excel writes)."""
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    utf8, size, head = True, 0, b""
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            head = head or chunk[:4096]
            digest.update(chunk)
            size += len(chunk)
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return Fingerprint(digest.hexdigest(), "utf-8-sig" if utf8 else "cp1252", size, head)



def decode(data: bytes) -> str:
    """UTF-8 with or without BOM, falling back to cp1252 (what Excel on Windows writes)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")



def sniff_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {delimiter: first_line.count(delimiter) for delimiter in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


@dataclass(frozen=True)
class FeedOrigin:
    """What the file's location (inbox/<practice>/<vendor>/) or the operator says about it; None: nothing."""

    practice_id: str | None = None
    vendor_id: str | None = None


@dataclass(frozen=True)
class Upload:
    """One file to ingest and everything decided about it before its rows are read, carried whole from intake/
    through the reader (feeds/ or pulse/) to each of its checks."""

    path: Path
    fingerprint: Fingerprint
    config: Config
    origin: FeedOrigin  # the practice and vendor its delivery named (inbox folder, --practice/--vendor)
    today: dt.date
    source: str = "cli"
    database_url: str | None = None
    survey_tool: str | None = None  # pulse/: read it as this tool's export, without detecting
    fast: Collection[str] | None = None  # feeds/: the quicker checks PostgreSQL may try (None: all of them)

    @property
    def sha256(self) -> str:
        return self.fingerprint.sha256


@dataclass
class IngestResult:
    path: str
    status: str  # accepted | duplicate | rejected | ignored (not a regular file: set aside unread, intake.inbox)
    kind: str = "feed"  # feed | pulse | remits
    rows: int = 0
    counts: StoreCounts | None = None
    problems: list[Problem] = field(default_factory=list)
    practices: list[str] = field(default_factory=list)
    moved_to: str | None = None
    problem_count: int = 0
    # Where the rows of an accepted feed were checked: "streamed" (a first delivery, feeds.stream) or "python"
    # (row by row, feeds.validate).
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
