"""The inbox watcher: a file landing in inbox/<practice>/<vendor>/ is enqueued for ingestion within seconds.

Policy (uploaders either write `name.csv.part`, or .tmp/.partial/.filepart/.crdownload, see IGNORED_SUFFIXES, and
rename it when done, or they write the final name in place):

- The watcher reacts to a file being closed after a write (inotify IN_CLOSE_WRITE, watchdog's FileClosedEvent) and
  to a file being moved or renamed to a final name (FileMovedEvent, its destination). It never reacts to a name
  with an ignored suffix, nor to a hidden name (rsync's `.name.XXXXXX`), nor to creation or modification alone: a
  file still open for writing is never a candidate, however long the writer pauses.
- After such an event it waits `settle_seconds` and checks that the size and modification time did not change (a
  stable-size check: a writer that closes and reopens the file within that time is seen writing again). If they
  changed, it waits again.
- Then it calls `enqueue(path)` once per (path, mtime, size): a second event for the same finished file is dropped.
- A link, a FIFO or a device appearing in the inbox (created, moved in, or found by a sweep) is enqueued the same
  way, never opened here: the worker sets it aside unread and tells the operator (intake.inbox). A dot-named file
  may be an upload in progress; the beat scan sets it aside once it has not changed for a long while.
- At start it also picks up every file already in the inbox (dropped while the watcher was down), and a folder
  created or moved into the inbox is swept the same way (files may land in it before inotify watches it). Both
  go through the same settle check.

A writer that closes the final name and reopens it after more than `settle_seconds` defeats any watcher; such an
uploader must use the rename convention. Events the kernel drops (inotify queue overflow) are caught by the
beat's minute-by-minute `ingest.scan_inbox`, so the watcher makes ingestion fast, not the only way in.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

from intake.inbox import IGNORED_SUFFIXES, list_inbox, walk_inbox

log = logging.getLogger(__name__)

Signature = tuple[int, int]  # (size, mtime_ns): what "the file did not change" compares
# A failed enqueue (broker down) is tried again after this long; the beat scan is the backstop beyond that.
RETRY_SECONDS = 5.0
# The main loop never sleeps longer than this. It wakes earlier for a new event (Settler.wake) and for a stop
# request, so a settle time below it is honoured (issue 18 item 5: at 0.5 s a 0.2 s settle waited up to 0.5 s).
MAX_IDLE_SECONDS = 0.5
MOVE_PAIRING_SECONDS = 0.02  # see make_observer


def is_candidate(path: Path) -> bool:
    """The same names list_inbox() would pick: no upload-in-progress suffix, not hidden."""
    return not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES)


def signature(path: Path) -> Signature | None:
    """Size and mtime of an inbox entry (a link's own, never its target's); None if it is gone (filed away,
    renamed) or a real folder."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISDIR(found.st_mode):
        return None
    return found.st_size, found.st_mtime_ns


def is_stray(path: Path) -> bool:
    """Not a regular file (a link, a FIFO, a device): to be set aside by the worker whatever its name."""
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class Settler:
    """Paths waiting to settle, and what was already enqueued. Fed by the observer thread, drained by the loop."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self._lock = threading.Lock()
        # path -> (when to look again, the signature it had when last looked at)
        self._pending: dict[Path, tuple[float, Signature]] = {}
        # path -> the signature that was enqueued: one enqueue per (path, mtime, size)
        self._enqueued: dict[Path, Signature] = {}
        self.wake = threading.Event()  # set when a path starts (or restarts) its wait, or the watch stops

    def touch(self, path: Path, delay: float | None = None) -> None:
        """Something finished writing `path`: (re)start its settle wait from now."""
        current = signature(path)
        if current is None or not (is_candidate(path) or is_stray(path)):
            return
        with self._lock:
            self._pending[path] = (time.monotonic() + (self.settle_seconds if delay is None else delay), current)
        self.wake.set()  # the loop may be asleep for longer than this path's wait

    def forget(self, path: Path) -> None:
        """`path` left the inbox (filed away by the worker, renamed): a new file of that name starts afresh."""
        with self._lock:
            self._pending.pop(path, None)
            self._enqueued.pop(path, None)

    def next_due(self) -> float | None:
        with self._lock:
            return min((due for due, _ in self._pending.values()), default=None)

    def take_settled(self, now: float) -> list[tuple[Path, Signature]]:
        """Paths whose wait is over and whose size and mtime held still; the others wait again."""
        settled: list[tuple[Path, Signature]] = []
        with self._lock:
            for path, (due, before) in list(self._pending.items()):
                if due > now:
                    continue
                current = signature(path)
                if current is None:
                    del self._pending[path]
                elif current != before:
                    # Still being written (or rewritten): wait a full settle period from this new state.
                    self._pending[path] = (now + self.settle_seconds, current)
                else:
                    del self._pending[path]
                    if self._enqueued.get(path) != current:
                        settled.append((path, current))
        return settled

    def mark_enqueued(self, path: Path, enqueued: Signature) -> None:
        with self._lock:
            self._enqueued[path] = enqueued


class InboxEventHandler(FileSystemEventHandler):
    """Turns watchdog events into Settler calls; runs on the observer's thread, so it only records."""

    def __init__(self, settler: Settler) -> None:
        self.settler = settler

    def on_closed(self, event: FileClosedEvent) -> None:
        self.settler.touch(event_path(event.src_path))

    def on_moved(self, event: DirMovedEvent | FileMovedEvent) -> None:
        # With full events, a move from outside the inbox has no source and a move out of it has no destination.
        if event.src_path:
            self.settler.forget(event_path(event.src_path))
        if not event.dest_path:
            return
        if event.is_directory:
            sweep(event_path(event.dest_path), self.settler)
        else:
            self.settler.touch(event_path(event.dest_path))

    def on_deleted(self, event: DirDeletedEvent | FileDeletedEvent) -> None:
        self.settler.forget(event_path(event.src_path))

    def on_created(self, event: DirCreatedEvent | FileCreatedEvent) -> None:
        # A new practice or vendor folder: files written into it before inotify watched it raise no close event.
        if event.is_directory:
            sweep(event_path(event.src_path), self.settler)
        elif is_stray(event_path(event.src_path)):
            self.settler.touch(event_path(event.src_path))  # a link or FIFO is never closed after a write


def event_path(raw: bytes | str) -> Path:
    return Path(os.fsdecode(raw))


def sweep(folder: Path, settler: Settler) -> None:
    """Every candidate file and every stray below `folder` goes through the settle check (nothing was seen
    finishing it)."""
    for path in list_inbox(folder):
        settler.touch(path)
    for path in walk_inbox(folder):
        if is_stray(path):
            settler.touch(path)


def make_observer() -> BaseObserver:
    """inotify on Linux, with full move events so a move in from outside the inbox is a move, not a creation."""
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper

        # watchdog holds a move's IN_MOVED_FROM up to this long for its IN_MOVED_TO, and every later event waits
        # behind it: each file the worker archives (a move out of the inbox, never paired) held the next file's
        # rename back by up to 0.5 s. The two halves of a rename come in one read; unpaired, a move in still
        # reads as a creation here, which goes through the same settle check.
        InotifyMoveEventGrouper.delay = MOVE_PAIRING_SECONDS
        return InotifyObserver(generate_full_events=True)
    from watchdog.observers import Observer

    return Observer()


def watch_inbox(
    inbox: Path,
    enqueue: Callable[[Path], None],
    settle_seconds: float = 1.0,
    stop: threading.Event | None = None,
    *,
    ready: threading.Event | None = None,
) -> None:
    """Watch `inbox` until `stop` is set, calling enqueue(path) once for each file that finished landing.

    `ready` is set once the watch is in place and the files already there are queued for their settle check.
    """
    stop = stop or threading.Event()
    # Absolute paths: the worker that ingests them may run with another working directory.
    inbox = inbox.resolve()
    settler = Settler(settle_seconds)
    observer = make_observer()
    observer.schedule(InboxEventHandler(settler), str(inbox), recursive=True)
    observer.start()
    try:
        # Sweep after the watch is in place: a file landing in between is seen by one or the other, or both
        # (then the (path, mtime, size) debounce keeps it to one enqueue).
        sweep(inbox, settler)
        log.info("watching %s (settle %.1fs)", inbox, settle_seconds)
        if ready is not None:
            ready.set()
        # A stop request wakes the loop too: it sleeps on the settler's event, not on `stop`.
        threading.Thread(target=wake_on_stop, args=(stop, settler), name="watch-stop", daemon=True).start()
        run_loop(settler, enqueue, stop)
    finally:
        observer.stop()
        observer.join()
    log.info("stopped watching %s", inbox)


def wake_on_stop(stop: threading.Event, settler: Settler) -> None:
    stop.wait()
    settler.wake.set()


def run_loop(settler: Settler, enqueue: Callable[[Path], None], stop: threading.Event) -> None:
    while not stop.is_set():
        for path, settled in settler.take_settled(time.monotonic()):
            deliver(path, settled, settler, enqueue)
        next_due = settler.next_due()
        idle = MAX_IDLE_SECONDS if next_due is None else next_due - time.monotonic()
        if settler.wake.wait(min(max(idle, 0.0), MAX_IDLE_SECONDS)):
            settler.wake.clear()  # a new wait began (or a stop): look at the due times again


def deliver(path: Path, settled: Signature, settler: Settler, enqueue: Callable[[Path], None]) -> None:
    # Marked first: the worker may file the path away before enqueue() returns, and that move must clear the mark.
    settler.mark_enqueued(path, settled)
    try:
        enqueue(path)
    except Exception:
        # The broker may be down for a moment: keep the file pending rather than lose the fast path.
        log.exception("could not enqueue %s; trying again in %.0fs", path.name, RETRY_SECONDS)
        settler.forget(path)
        settler.touch(path, delay=RETRY_SECONDS)
