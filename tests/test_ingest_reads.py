"""How many times ingest_path opens a file, counted by the kernel, for every path a file can take.

intake.ingest_path's docstring promises: read through at most MOST_FULL_READS times (the fingerprint, the
streamed attempt, row by row: each only when the one before could not decide), plus the header line the stream
peeks at. The count comes from inotify (IN_OPEN on the file's inode), so it sees every
open however it is made: Python's, Arrow's C++ reader, a /proc/self/fd link. Real files, real PostgreSQL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from config import Config
from intake.ingest import MOST_FULL_READS, ingest_path
from tests.test_pulse_support import GO_LIVE, config_with, google_export, pine_clinic, staff

IN_OPEN = 0x00000020
# Closes are watched too, only so that two opens in a row are two events: inotify merges an event with an identical
# one still unread in its queue.
IN_CLOSE = 0x00000008 | 0x00000010
IN_NONBLOCK = os.O_NONBLOCK
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)
PRACTICE, VENDOR = "pine-clinic", "acme-billing"
TODAY = dt.date(2026, 11, 23)
HEADER = "practice,vendor,kpi,period,value,segment\n"


class Opens:
    """The opens of one file since the watch began, read from an inotify descriptor."""

    def __init__(self, fd: int):
        self.fd, self.count = fd, 0

    def drain(self) -> int:
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return self.count
            offset = 0
            while offset < len(data):
                _, mask, _, length = EVENT.unpack_from(data, offset)
                self.count += bool(mask & IN_OPEN)
                offset += EVENT.size + length


@contextmanager
def counting_opens(path: Path) -> Iterator[Opens]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(IN_NONBLOCK)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN | IN_CLOSE) >= 0, os.strerror(ctypes.get_errno())
        yield Opens(fd)
    finally:
        os.close(fd)


def ingest_counting(path: Path, config: Config, url: str, **options: object) -> tuple[str, str | None, int]:
    """(status, where the rows were checked, opens of the file) for one ingest_path call."""
    with counting_opens(path) as opens:
        result = ingest_path(path, config, practice=PRACTICE, vendor=VENDOR, today=TODAY, database_url=url,
                             **options)  # type: ignore[arg-type]
        count = opens.drain()
    return result.status, result.checked_in, count


def long_csv(directory: Path, name: str, *values: str, periods: int = 30) -> Path:
    """A long CSV of `periods` months of days_in_ar, with the given values cycled."""
    months = [f"{2024 + month // 12}-{month % 12 + 1:02d}" for month in range(periods)]
    rows = "".join(f"{PRACTICE},{VENDOR},days_in_ar,{month},{values[i % len(values)]},all\n"
                   for i, month in enumerate(months))
    path = directory / name
    path.write_text(HEADER + rows)
    return path


@pytest.fixture(scope="module")
def config() -> Config:
    return config_with(pine_clinic())


# Each test: (status, where the rows were checked, opens); the comments split the opens into full reads and peeks.
def test_a_first_delivery_is_read_twice(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = long_csv(tmp_path, "first.csv", "40")
    assert ingest_counting(path, config, postgres_url) == ("accepted", "streamed", 2 + 1)  # + the stream's peek


def test_a_duplicate_is_read_once(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = long_csv(tmp_path, "first.csv", "40")
    ingest_path(path, config, practice=PRACTICE, vendor=VENDOR, today=TODAY, database_url=postgres_url)
    assert ingest_counting(path, config, postgres_url) == ("duplicate", None, 1)  # the fingerprint


def test_a_correction_is_read_three_times(config: Config, postgres_url: str, tmp_path: Path) -> None:
    ingest_path(long_csv(tmp_path, "first.csv", "40"), config, practice=PRACTICE, vendor=VENDOR, today=TODAY,
                database_url=postgres_url)
    corrected = long_csv(tmp_path, "corrected.csv", "41")
    # fingerprint, stream (ends with KeysStored), row by row (merges it); the stream peeks at the header.
    assert ingest_counting(corrected, config, postgres_url) == ("accepted", "python", 3 + 1)


def test_a_file_repeating_a_key_is_read_three_times_the_most(config: Config, postgres_url: str,
                                                             tmp_path: Path) -> None:
    """The stream cannot tell a key the file repeats from one stored before (both violate the table's key), so
    the row-by-row check runs and names the repeat: the three reads."""
    path = tmp_path / "twice.csv"
    path.write_text(HEADER + f"{PRACTICE},{VENDOR},days_in_ar,2026-01,40,all\n" * 2)
    assert ingest_counting(path, config, postgres_url) == ("rejected", None, MOST_FULL_READS + 1)


def test_a_bad_cell_is_read_three_times(config: Config, postgres_url: str, tmp_path: Path) -> None:
    """The stream stops at the block it cannot prove clean; row by row names the problem."""
    path = long_csv(tmp_path, "bad.csv", "40", "forty")
    assert ingest_counting(path, config, postgres_url) == ("rejected", None, 3 + 1)


def test_a_wide_csv_is_read_twice(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(f"practice,vendor,period,days_in_ar\n{PRACTICE},{VENDOR},2026-01,40\n")
    # The stream's header peek sees a wide CSV; no fast check reads further.
    assert ingest_counting(path, config, postgres_url) == ("accepted", "python", 2 + 1)


def test_a_json_feed_is_read_twice(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(f'{{"practice": "{PRACTICE}", "vendor": "{VENDOR}", "observations": '
                    '[{"kpi": "days_in_ar", "period": "2026-01", "value": 40}]}')
    assert ingest_counting(path, config, postgres_url) == ("accepted", "python", 2)  # no fast check peeks


def test_without_fast_checks_a_file_is_read_twice(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = long_csv(tmp_path, "first.csv", "40")
    assert ingest_counting(path, config, postgres_url, fast=()) == ("accepted", "python", 2)


def test_a_pulse_export_is_read_twice(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = tmp_path / "pulse.csv"
    path.write_bytes(google_export(config, staff(6, GO_LIVE + dt.timedelta(days=20), pulse_workload=4)))
    assert ingest_counting(path, config, postgres_url) == ("accepted", None, 2)  # the fingerprint, then whole
