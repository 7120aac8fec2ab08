"""The inbox: inbox/<practice>/<vendor>/<file>. Accepted files move to archive/, rejected ones to quarantine/.

A file is only read once its name no longer ends in .part/.tmp (uploaders write there and rename when done) and
its size and modification time have not changed for STABLE_SECONDS, so a half-written SFTP upload is never read.

A file that kills its worker (out of memory, a crash in a C library) would be retried forever: by
Celery's redelivery and by every inbox scan. Each attempt is written down before it starts and crossed off when it
ends; after MAX_UNFINISHED attempts that never ended the file is set aside in quarantine/ and the operator is told,
so the other files keep flowing. The attempt's record is held under an flock, which the kernel releases when its
process dies, so a slow ingest still running is never mistaken for a dead one.

Only regular files inside the inbox are read: an uploader who can write a symlink there (to /etc/passwd, to
/proc/self/environ, to a folder) must not make the worker read it. Anything else found in the inbox (a link, a
FIFO, a device, a dot-named file left for good) is a stray: it is moved unread to quarantine/ignored/ (a link as
the link itself) and the operator is told, once, since it is gone from the inbox after. A regular file is opened
without following links and read through that open descriptor (`pinned`), so swapping it for a link after the
check reads nothing new.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from config import Config
from config.settings import Settings
from intake.ingest import file_away, ingest_path, is_pulse_export, origin_from_inbox, unfollowed
from remits.envelope import is_x12
from storage.observations import Problem
from storage.uploads import FeedOrigin, IngestResult, fingerprint, record_rejection

log = logging.getLogger(__name__)
STABLE_SECONDS = 2.0
IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload")
MAX_UNFINISHED = 3


# A dot-named file may be an upload in progress (rsync writes `.name.XXXXXX`): set aside only once it has not
# changed for this long.
HIDDEN_GRACE_SECONDS = 15 * 60


class OutsideInbox(Exception):
    """A path that is not, resolved, inside the inbox: never read, never moved."""


def walk_inbox(inbox: Path) -> Iterator[Path]:
    """Every entry below the inbox that is not a real folder, links to folders included; links never followed."""
    if not inbox.is_dir():
        return
    for folder, folders, files in os.walk(inbox):  # followlinks=False: a linked folder is listed, not entered
        for name in sorted(folders + files):
            path = Path(folder, name)
            if name in files or path.is_symlink():
                yield path


def list_inbox(inbox: Path) -> Iterator[Path]:
    """The regular files ready to be read."""
    for path in walk_inbox(inbox):
        if is_regular(path) and not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES):
            yield path


def list_strays(inbox: Path, now: float | None = None) -> Iterator[Path]:
    """What must be set aside: links, FIFOs, devices, sockets, and dot-named files unchanged for a while."""
    for path in walk_inbox(inbox):
        if stray_reason(path, now) is not None:
            yield path


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def stray_reason(path: Path, now: float | None = None) -> str | None:
    """Why an inbox entry must not be read, or None (a regular file, or gone)."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    mode = found.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link; links are never followed, so its target was not read"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if path.name.startswith(".") and (now or time.time()) - found.st_mtime >= HIDDEN_GRACE_SECONDS:
        return "a dot-named (hidden) file, which the inbox never reads; rename it without the leading dot"
    return None


def check_inside(path: Path, inbox: Path) -> None:
    """OutsideInbox unless `path`, with its folders resolved (links, `..`), lies below the inbox."""
    root = inbox.resolve()
    folder = path.parent.resolve()
    if path.name in ("", ".", "..") or (folder != root and root not in folder.parents):
        raise OutsideInbox(str(path))


def is_stable(path: Path, now: float | None = None) -> bool:
    found = os.lstat(path)
    return (now or time.time()) - found.st_mtime >= STABLE_SECONDS


def process_inbox_file(path: Path, config: Config, settings: Settings, *, settled: bool = False) -> IngestResult | None:
    """Ingest one inbox file and file it away, or set a stray aside; None if it is gone (another worker took
    it) or still changing. OutsideInbox for a path that is not in the inbox."""
    check_inside(path, settings.inbox)
    if not os.path.lexists(path):
        return None
    if stray_reason(path) is not None:
        return set_stray_aside(path, settings)
    if path.name.startswith(".") or not is_regular(path):
        return None  # a dot-named file still in its grace period: maybe an upload in progress
    if not settled and not is_stable(path):
        time.sleep(STABLE_SECONDS)
        if not is_regular(path) or not is_stable(path):
            return None
    with attempt(path, settings.data_dir / "attempts") as unfinished:
        if unfinished is None or not path.exists():
            return None  # another worker is ingesting it right now, or has filed it away
        result = ingest_pinned(path, config, settings, unfinished)
        if result is None:  # swapped for a link (or a FIFO) since it was checked
            return set_stray_aside(path, settings)
        file_away_quietly(result, path, settings)
    return result


def ingest_pinned(path: Path, config: Config, settings: Settings, unfinished: int) -> IngestResult | None:
    """Ingest the file read through a descriptor opened without following links; None if the entry is no longer
    a regular file."""
    origin = origin_from_inbox(path, settings.inbox)
    try:
        with pinned(path, settings.inbox) as readable:
            if unfinished >= MAX_UNFINISHED:
                result = set_aside(readable, unfinished, settings.database_url, origin)
            else:
                result = ingest_path(readable, config, source="inbox", practice=origin.practice_id,
                                     vendor=origin.vendor_id, database_url=settings.database_url)
    except NotRegular:
        return None
    result.path = str(path)
    return result


class NotRegular(Exception):
    """The inbox entry is not (any more) a regular file."""


@contextmanager
def pinned(path: Path, inbox: Path) -> Iterator[Path]:
    """The regular file at `path`, opened without following a link, under a private name with the same file
    name that reads that very file however the inbox changes meanwhile (Linux: /proc/self/fd). NotRegular if it
    is a link or anything but a regular file; OutsideInbox if its folders lead out of the inbox."""
    try:
        # O_NONBLOCK: opening a FIFO swapped in after the check must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # ELOOP: a link
        raise NotRegular(str(path)) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(str(path))
        opened = Path(f"/proc/self/fd/{fd}")
        check_inside(Path(os.readlink(opened)), inbox)  # where the kernel says the open file really is
        with TemporaryDirectory(prefix="vendorwatch-pinned-") as private:
            readable = Path(private) / path.name
            readable.symlink_to(opened)  # our own link, in a folder only we can write
            yield readable
    finally:
        os.close(fd)


def set_stray_aside(path: Path, settings: Settings) -> IngestResult | None:
    """Move a stray, unread, to quarantine/ignored/ (a link as itself), with an .errors.json saying why; None if
    another worker moved it first, so only the mover reports it."""
    reason = stray_reason(path, now=float("inf")) or "not a regular file"
    relative = unfollowed(path).relative_to(settings.inbox.resolve())
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = settings.quarantine / "ignored" / relative.parent / f"{stamp}-{relative.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        move_entry(path, target)
    except FileNotFoundError:
        return None
    problem = Problem(1, None, None, f"not read: {reason}")
    errors = {"file": str(relative), "errors": [problem.as_dict()]}
    target.with_name(target.name + ".errors.json").write_text(json.dumps(errors, indent=2))
    log.warning("%s set aside unread: %s", relative, reason)
    return IngestResult(str(path), "ignored", problems=[problem], problem_count=1, moved_to=str(target))


def move_entry(path: Path, target: Path) -> None:
    """Rename the entry itself (never what a link points at). Across file systems a link is made again from its
    text and anything else that is not a regular file (a FIFO, a device) is removed: it holds no feed."""
    try:
        os.rename(path, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    found = os.lstat(path)
    if stat.S_ISLNK(found.st_mode):
        os.symlink(os.readlink(path), target)
    elif stat.S_ISREG(found.st_mode):
        shutil.move(str(path), target)
        return
    os.unlink(path)


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
        found = os.lstat(path)
    except FileNotFoundError:  # filed away by another worker since we looked
        yield None
        return
    key = hashlib.sha256(f"{unfollowed(path)}|{found.st_size}|{found.st_mtime_ns}".encode()).hexdigest()
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


def set_aside(path: Path, unfinished: int, database_url: str | None, origin: FeedOrigin) -> IngestResult:
    fp = fingerprint(path)
    problem = Problem(1, None, None, f"ingesting this file killed the worker {unfinished} times before it finished "
                      "(out of memory, or a crash); it was set aside so the other files keep flowing. Check the "
                      "worker's log and memory, then drop the file in the inbox again.")
    record_rejection(path, fp.sha256, "inbox", [problem], database_url, origin)
    kind = "pulse" if is_pulse_export(fp.head) else "feed"
    kind = "remits" if is_x12(fp.head) else kind
    return IngestResult(str(path), "rejected", kind=kind, problems=[problem], problem_count=1)
