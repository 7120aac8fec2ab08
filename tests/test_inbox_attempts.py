"""A file that kills its worker is set aside after three deaths, instead of being retried forever; a slow ingest
still running is never mistaken for a dead one. The deaths are real: child processes SIGKILLed inside an attempt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config import BUNDLED_DIR, load_config
from config.settings import Settings
from intake.inbox import MAX_UNFINISHED, attempt, process_inbox_file
from storage.db import session_scope
from storage.models import FeedRejection, Observation

FEED = "kpi,period,value\ndays_in_ar,2026-09,41\n"
DIE_INSIDE_AN_ATTEMPT = """
import os, signal, sys, time
from pathlib import Path
from intake.inbox import attempt
with attempt(Path(sys.argv[1]), Path(sys.argv[2])) as unfinished:
    print(unfinished, flush=True)
    if sys.argv[3] == "hold":
        time.sleep(60)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=postgres_url)


def drop_feed(settings: Settings) -> Path:
    path = settings.inbox / "oakridge-fm" / "acme-billing" / "acme-2026-09.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FEED)
    settled = time.time() - 30
    os.utime(path, (settled, settled))
    return path


def child(path: Path, settings: Settings, mode: str) -> subprocess.Popen[str]:
    ledger = settings.data_dir / "attempts"
    return subprocess.Popen([sys.executable, "-c", DIE_INSIDE_AN_ATTEMPT, str(path), str(ledger), mode],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])


def die_inside_an_attempt(path: Path, settings: Settings) -> str:
    process = child(path, settings, "die")
    out, _ = process.communicate(timeout=60)
    assert process.returncode == -9
    return out.strip()


def stored(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Observation)) or 0)


def test_a_file_that_killed_its_worker_three_times_is_set_aside_and_the_next_file_flows(
    settings: Settings, postgres_url: str
) -> None:
    path = drop_feed(settings)
    seen = [die_inside_an_attempt(path, settings) for _ in range(MAX_UNFINISHED)]
    assert seen == ["0", "1", "2"], "each death is counted before the next attempt"

    result = process_inbox_file(path, load_config(BUNDLED_DIR), settings)

    assert result is not None and result.status == "rejected"
    assert not path.exists()
    [quarantined] = [p for p in settings.quarantine.rglob("*.csv")]
    assert quarantined.read_text() == FEED, "the file is kept whole for the operator"
    errors = json.loads(quarantined.with_name(quarantined.name + ".errors.json").read_text())
    text = json.dumps(errors)
    assert "killed the worker 3 times" in text and "drop the file in the inbox again" in text
    assert stored(postgres_url) == 0
    with session_scope(postgres_url) as session:
        assert session.scalar(select(func.count()).select_from(FeedRejection)) == 1
    assert list((settings.data_dir / "attempts").iterdir()) == [], "the set-aside attempt is crossed off"

    dropped_again = drop_feed(settings)  # the operator fixed the worker's memory and dropped it again
    os.utime(dropped_again, (time.time() - 20, time.time() - 20))  # another mtime: a new file to the ledger
    again = process_inbox_file(dropped_again, load_config(BUNDLED_DIR), settings)
    assert again is not None and again.status == "accepted" and stored(postgres_url) == 1


def test_a_file_being_ingested_by_a_live_worker_is_left_to_it_and_counted_only_once_it_dies(
    settings: Settings, postgres_url: str
) -> None:
    path = drop_feed(settings)
    holder = child(path, settings, "hold")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "0"
    try:
        assert process_inbox_file(path, load_config(BUNDLED_DIR), settings) is None
        assert path.exists() and stored(postgres_url) == 0
    finally:
        holder.kill()
        holder.wait(timeout=10)

    result = process_inbox_file(path, load_config(BUNDLED_DIR), settings)

    assert result is not None and result.status == "accepted" and stored(postgres_url) == 1
    assert list((settings.data_dir / "attempts").iterdir()) == [], "a finished attempt leaves no record"


def test_an_exception_is_not_a_death(tmp_path: Path) -> None:
    """The database being down raises in every attempt; that must not make every file look poisonous."""
    path = tmp_path / "feed.csv"
    path.write_text(FEED)
    for _ in range(MAX_UNFINISHED + 2):
        with pytest.raises(ConnectionError), attempt(path, tmp_path / "attempts") as unfinished:
            assert unfinished == 0
            raise ConnectionError("database unavailable")
    with attempt(path, tmp_path / "attempts") as unfinished:
        assert unfinished == 0
