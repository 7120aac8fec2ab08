"""The inbox watcher with real parts: real files and inotify, then a real `vendorwatch watch` next to a real worker
on Redis and PostgreSQL. The acceptance criterion: a file renamed into the inbox is stored within 5 seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from intake.watch import watch_inbox
from storage.db import session_scope
from storage.models import Observation
from tests.conftest import stack_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import recent_months
from tests.worker_process import BIN, running_worker

ACCEPTANCE_SECONDS = 5.0


@dataclass
class Enqueued:
    """What the watcher handed over: when, which path, and the bytes the file held at that moment."""

    at: float
    path: Path
    text: str


@dataclass
class Collector:
    items: list[Enqueued] = field(default_factory=list)

    def __call__(self, path: Path) -> None:
        # Read inside the callback: this is what the worker would read if it ran right now.
        self.items.append(Enqueued(time.monotonic(), path, path.read_text()))

    def names(self) -> list[str]:
        return [item.path.name for item in self.items]

    def wait_for(self, count: int, timeout: float = ACCEPTANCE_SECONDS) -> list[Enqueued]:
        deadline = time.monotonic() + timeout
        while len(self.items) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} enqueued within {timeout}s, got {self.names()}")
            time.sleep(0.02)
        return self.items


@contextmanager
def watching(inbox: Path, settle_seconds: float = 1.0) -> Iterator[Collector]:
    """watch_inbox in a thread, returning once the watch is in place; stopped (and joined) on exit."""
    collector, stop, ready = Collector(), threading.Event(), threading.Event()
    thread = threading.Thread(
        target=watch_inbox, args=(inbox, collector, settle_seconds, stop), kwargs={"ready": ready}, daemon=True
    )
    thread.start()
    assert ready.wait(10), "the watcher did not start"
    try:
        yield collector
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the watcher did not stop"


def vendor_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox" / "maple-clinic" / "claimright"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_file_written_then_closed_is_enqueued_once(tmp_path: Path) -> None:
    folder = vendor_folder(tmp_path)
    with watching(tmp_path / "inbox") as enqueued:
        written = time.monotonic()
        (folder / "feed.csv").write_text("kpi,period,value\n")
        [item] = enqueued.wait_for(1)
        assert item.at - written < ACCEPTANCE_SECONDS
        assert item.path == (folder / "feed.csv").resolve()
        # Opening it for writing and closing it again raises a second close event for the same bytes.
        with (folder / "feed.csv").open("a"):
            pass
        time.sleep(2.5)
    assert enqueued.names() == ["feed.csv"]


def test_a_part_file_is_enqueued_only_once_renamed(tmp_path: Path) -> None:
    folder = vendor_folder(tmp_path)
    with watching(tmp_path / "inbox") as enqueued:
        (folder / "feed.csv.part").write_text("kpi,period,value\ndays_in_ar,2025-01,38.5\n")
        time.sleep(2.5)
        assert enqueued.items == []
        (folder / "feed.csv.part").rename(folder / "feed.csv")
        renamed = time.monotonic()
        [item] = enqueued.wait_for(1)
        assert item.at - renamed < ACCEPTANCE_SECONDS
        time.sleep(2)
    assert enqueued.names() == ["feed.csv"]
    assert enqueued.items[0].text.endswith("38.5\n")


def test_a_file_kept_open_between_two_halves_is_read_whole(tmp_path: Path) -> None:
    folder = vendor_folder(tmp_path)
    first, second = "kpi,period,value\n", "days_in_ar,2025-01,38.5\n"
    with watching(tmp_path / "inbox") as enqueued, (folder / "feed.csv").open("w") as upload:
        upload.write(first)
        upload.flush()
        time.sleep(1.5)  # longer than the settle time: only the close tells the upload is done
        assert enqueued.items == []
        second_half_at = time.monotonic()
        upload.write(second)
        upload.close()
        [item] = enqueued.wait_for(1)
    assert item.at > second_half_at
    assert item.text == first + second


def test_a_file_closed_and_reopened_within_the_settle_time_is_read_whole(tmp_path: Path) -> None:
    folder = vendor_folder(tmp_path)
    first, second = "kpi,period,value\n", "days_in_ar,2025-01,38.5\n"
    # The writer pauses 1.5 s between its two opens, so the file must hold still longer than that.
    with watching(tmp_path / "inbox", settle_seconds=2.0) as enqueued:
        (folder / "feed.csv").write_text(first)
        time.sleep(1.5)
        assert enqueued.items == []
        second_half_at = time.monotonic()
        with (folder / "feed.csv").open("a") as upload:
            upload.write(second)
        [item] = enqueued.wait_for(1)
        time.sleep(2.5)
    assert item.at > second_half_at
    assert item.text == first + second
    assert enqueued.names() == ["feed.csv"]


def test_files_dropped_while_it_was_down_are_enqueued_at_start(tmp_path: Path) -> None:
    folder = vendor_folder(tmp_path)
    (folder / "early.csv").write_text("kpi,period,value\n")
    (folder / "unfinished.csv.part").write_text("kpi,period\n")
    started = time.monotonic()
    with watching(tmp_path / "inbox") as enqueued:
        [item] = enqueued.wait_for(1)
        time.sleep(2)
    assert item.path.name == "early.csv" and item.at - started < ACCEPTANCE_SECONDS
    assert enqueued.names() == ["early.csv"]


def test_a_folder_moved_into_the_inbox_is_swept(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    staging = tmp_path / "staging" / "claimright"
    staging.mkdir(parents=True)
    (staging / "feed.csv").write_text("kpi,period,value\n")
    with watching(tmp_path / "inbox") as enqueued:
        (tmp_path / "staging").rename(tmp_path / "inbox" / "maple-clinic")
        [item] = enqueued.wait_for(1)
    assert item.path == (tmp_path / "inbox" / "maple-clinic" / "claimright" / "feed.csv").resolve()


@contextmanager
def running_watcher(env: dict[str, str], ready_timeout: float = 60) -> Iterator[list[str]]:
    """Start `vendorwatch watch`, wait until it logs that it is watching, stop it with SIGTERM on exit."""
    process = subprocess.Popen(
        [str(BIN / "vendorwatch"), "watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if " watching " in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the watcher did not start:\n" + "\n".join(lines))
        yield lines
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(5)
    assert process.returncode == 0, "the watcher did not stop cleanly on SIGTERM:\n" + "\n".join(lines)


def stored_value(database_url: str, month: str) -> float | None:
    with session_scope(database_url) as session:
        return session.scalar(
            select(Observation.value).where(
                Observation.practice_id == "maple-clinic",
                Observation.vendor_id == "claimright",
                Observation.kpi == "days_in_ar",
                Observation.period == month,
            )
        )


def test_a_feed_renamed_into_the_inbox_is_stored_within_five_seconds(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server)
    [month] = recent_months(1)
    with running_worker(env) as worker_log, running_watcher(env) as watcher_log:
        folder = data_dir / "inbox" / "maple-clinic" / "claimright"
        folder.mkdir(parents=True, exist_ok=True)
        upload = folder / f"claimright-{month}.csv.part"
        upload.write_text(f"kpi,period,value\ndays_in_ar,{month},38.5\n")
        upload.rename(folder / f"claimright-{month}.csv")
        renamed = time.monotonic()

        archived: list[Path] = []
        value: float | None = None
        while time.monotonic() - renamed < ACCEPTANCE_SECONDS:
            archived = list((data_dir / "archive").rglob(f"*-claimright-{month}.csv"))
            value = stored_value(postgres_url, month) if archived else None
            if archived and value is not None:
                break
            time.sleep(0.05)
        latency = time.monotonic() - renamed
        logs = "\n".join(["-- watcher", *watcher_log[-20:], "-- worker", *worker_log[-30:]])
        assert archived, f"not archived within {ACCEPTANCE_SECONDS}s\n{logs}"
        assert value == 38.5, f"not stored within {ACCEPTANCE_SECONDS}s\n{logs}"
        print(f"dropped to archived and stored in {latency:.2f}s")
        assert not any(folder.iterdir())
        assert any(line.endswith(f"enqueued claimright-{month}.csv") for line in watcher_log), logs
    assert any("stopped watching" in line for line in watcher_log)


def test_a_settle_time_below_half_a_second_is_honoured(tmp_path: Path) -> None:
    """The loop wakes for a new file's event, not after its idle half second: with a 0.2 s settle every file is
    enqueued within 0.2 s + 50 ms of its close (issue 18 item 5: the p95 was 507 ms)."""
    folder = vendor_folder(tmp_path)
    delays = []
    with watching(tmp_path / "inbox", settle_seconds=0.2) as enqueued:
        for number in range(8):
            time.sleep(0.6)  # the loop is asleep (nothing pending) when the file lands
            (folder / f"feed-{number}.csv").write_text("kpi,period,value\ndays_in_ar,2025-01,38.5\n")
            closed = time.monotonic()
            item = enqueued.wait_for(number + 1)[-1]
            delays.append(item.at - closed)
    # Before, a file landing while the loop slept waited out the sleep: delays spread up to 0.5 s.
    assert min(delays) >= 0.2, delays  # the settle wait itself is kept
    assert sorted(delays)[len(delays) // 2] < 0.25 and max(delays) < 0.4, delays


def test_a_file_moved_out_of_the_inbox_does_not_hold_the_next_one_back(tmp_path: Path) -> None:
    """The worker archives each file (a move out of the inbox, whose other half watchdog never sees): the next
    file's rename must not wait behind it (it waited up to 0.5 s, watchdog's move pairing delay)."""
    folder, archive = vendor_folder(tmp_path), tmp_path / "archive"
    archive.mkdir()
    delays = []
    with watching(tmp_path / "inbox", settle_seconds=0.2) as enqueued:
        for number in range(4):
            part = folder / f"feed-{number}.csv.part"
            part.write_text("kpi,period,value\ndays_in_ar,2025-01,38.5\n")
            renamed = time.monotonic()
            part.rename(folder / f"feed-{number}.csv")
            item = enqueued.wait_for(number + 1)[-1]
            delays.append(item.at - renamed)
            (folder / f"feed-{number}.csv").rename(archive / f"feed-{number}.csv")  # filed away, as the worker does
    assert max(delays) < 0.4, delays  # each 0.2 s settle, not 0.2 s behind an archived file's 0.5 s
