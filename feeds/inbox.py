"""The inbox: inbox/<practice>/<vendor>/<file>. Accepted files move to archive/, rejected ones to quarantine/.

A file is only read once its name no longer ends in .part/.tmp (uploaders write there and rename when done) and
its size and modification time have not changed for STABLE_SECONDS, so a half-written SFTP upload is never read.

A file that kills its worker (out of memory, a crash in a C library) would be retried forever: by
Celery's redelivery and by every inbox scan. Each attempt is written down before it starts and crossed off when it
ends; after MAX_UNFINISHED attempts that never ended the file is set aside in quarantine/ and the operator is told,
so the other files keep flowing. The attempt's record is held under an flock, which the kernel releases when its
process dies, so a slow ingest still running is never mistaken for a dead one.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config import Config
from feeds.ingest import IngestResult, file_away, ingest_path, is_pulse_export, record_rejection
from feeds.parse import fingerprint
from feeds.validate import Problem
from worker.settings import Settings

log = logging.getLogger(__name__)
STABLE_SECONDS = 2.0
IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload")
MAX_UNFINISHED = 3


def list_inbox(inbox: Path) -> Iterator[Path]:
    if not inbox.is_dir():
        return
    for path in sorted(inbox.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES):
            yield path


def is_stable(path: Path, now: float | None = None) -> bool:
    stat = path.stat()
    return (now or time.time()) - stat.st_mtime >= STABLE_SECONDS


def process_inbox_file(path: Path, config: Config, settings: Settings, *, settled: bool = False) -> IngestResult | None:
    """Ingest one inbox file and file it away; None if it is gone (another worker took it) or still changing."""
    if not path.exists():
        return None
    if not settled and not is_stable(path):
        time.sleep(STABLE_SECONDS)
        if not path.exists() or not is_stable(path):
            return None
    with attempt(path, settings.data_dir / "attempts") as unfinished:
        if unfinished is None or not path.exists():
            return None  # another worker is ingesting it right now, or has filed it away
        if unfinished >= MAX_UNFINISHED:
            result = set_aside(path, unfinished, settings.database_url)
        else:
            result = ingest_path(path, config, source="inbox", inbox=settings.inbox,
                                 database_url=settings.database_url)
        file_away_quietly(result, path, settings)
    return result


def file_away_quietly(result: IngestResult, path: Path, settings: Settings) -> None:
    try:
        file_away(result, path, settings.archive, settings.quarantine, settings.inbox)
    except FileNotFoundError:
        log.info("%s was filed away by another worker", path.name)
    log.info("ingested %s: %s (%d rows)", path.name, result.status, result.rows)
    if result.status == "rejected":
        for problem in result.problems:
            log.warning("%s rejected: %s", path.name, problem)


@contextmanager
def attempt(path: Path, ledger: Path) -> Iterator[int | None]:
    """Yields how many earlier attempts on this file (these bytes at this path) died before they ended, or None
    while another process holds the file's attempt. The record is removed when the body ends normally and left
    as it was before when it raises."""
    try:
        stat = path.stat()
    except FileNotFoundError:  # filed away by another worker since we looked
        yield None
        return
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    ledger.mkdir(parents=True, exist_ok=True)
    record = ledger / key
    fd = os.open(record, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        if os.fstat(fd).st_nlink == 0:  # the holder we waited on finished and removed it
            yield None
            return
        unfinished = int(os.pread(fd, 32, 0) or b"0")
        write_count(fd, unfinished + 1)
        try:
            yield unfinished
        except BaseException:
            # An exception is not a death: the database being down must not make every file look poisonous.
            write_count(fd, unfinished)
            raise
        os.unlink(record)
    finally:
        os.close(fd)  # releases the lock


def write_count(fd: int, count: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(count).encode(), 0)
    os.fsync(fd)  # a kill right after must still find it counted


def set_aside(path: Path, unfinished: int, database_url: str | None) -> IngestResult:
    fp = fingerprint(path)
    problem = Problem(1, None, None, f"ingesting this file killed the worker {unfinished} times before it finished "
                      "(out of memory, or a crash); it was set aside so the other files keep flowing. Check the "
                      "worker's log and memory, then drop the file in the inbox again.")
    record_rejection(path, fp.sha256, "inbox", [problem], database_url)
    kind = "pulse" if is_pulse_export(fp.head) else "feed"
    return IngestResult(str(path), "rejected", kind=kind, problems=[problem], problem_count=1)
