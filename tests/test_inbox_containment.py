"""Only regular files inside the inbox are read. A symlink (to a file or a folder), a FIFO or a dot-named file
found there is moved aside unread, once, and the operator is told once; the `ingest.file` task refuses a path
outside the inbox; no error message quotes more of a file than the one cell at fault.

Real files in a temporary inbox, a real worker on Redis and PostgreSQL, the real `vendorwatch watch`."""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, text

from config import BUNDLED_DIR, load_config
from intake.inbox import HIDDEN_GRACE_SECONDS
from intake.ingest import ingest_path
from storage.db import engine_for, session_scope
from storage.models import Base, FeedRejection, Notification
from tests.conftest import stack_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import recent_months
from tests.test_watch import running_watcher
from tests.worker_process import running_worker, vendorwatch

SETTLED = 60.0  # seconds in the past: older than any settle or grace period


@dataclass
class Planted:
    """What was put in the inbox's vendor folder, and the secrets its links point at."""

    folder: Path
    secret: str
    secret_file: Path
    secret_folder: Path
    good: Path
    strays: list[str]


def backdate(path: Path, seconds: float = SETTLED) -> None:
    settled = time.time() - seconds
    os.utime(path, (settled, settled), follow_symlinks=False)


def plant(data_dir: Path, outside: Path, *, with_good_file: bool = True) -> Planted:
    """A symlink to a file holding a secret, a link to /proc/self/environ, a FIFO, a dot-named file and a link to
    a folder holding a secret file, next to (optionally) one good feed."""
    secret = f"SECRET-{uuid.uuid4().hex}"
    outside.mkdir(parents=True, exist_ok=True)
    secret_file = outside / "passwd.csv"
    secret_file.write_text(f"kpi,period,value\ndays_in_ar,2026-01,{secret}\n{secret}:x:0:0,2026-02,1\n")
    secret_folder = outside / "private"
    secret_folder.mkdir()
    (secret_folder / "leak.csv").write_text(f"kpi,period,value\n{secret},2026-01,1\n")
    folder = data_dir / "inbox" / "maple-clinic" / "claimright"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd.csv").symlink_to(secret_file)
    (folder / "environ.csv").symlink_to("/proc/self/environ")
    (folder / "private").symlink_to(secret_folder, target_is_directory=True)
    os.mkfifo(folder / "pipe.csv")
    hidden = folder / ".hidden.csv"
    hidden.write_text(f"kpi,period,value\ndays_in_ar,2026-01,{secret}\n")
    backdate(hidden, HIDDEN_GRACE_SECONDS + SETTLED)  # left alone, not an upload in progress
    good = folder / "good.csv"
    if with_good_file:
        [month] = recent_months(1)
        good.write_text(f"kpi,period,value\ndays_in_ar,{month},38.5\n")
        backdate(good)
    return Planted(folder, secret, secret_file, secret_folder, good,
                   ["passwd.csv", "environ.csv", "private", "pipe.csv", ".hidden.csv"])


def every_database_text(url: str) -> str:
    """Every row of every table, as text: where a leaked secret would be."""
    parts: list[str] = []
    with engine_for(url).connect() as connection:
        for table in Base.metadata.sorted_tables:
            parts += [repr(tuple(row)) for row in connection.execute(text(f"SELECT * FROM {table.name}"))]
    return "\n".join(parts)


def operator_titles(url: str) -> list[str]:
    with session_scope(url) as session:
        return sorted(session.scalars(select(Notification.title).where(Notification.kind == "operator")))


def set_aside(data_dir: Path) -> dict[str, Path]:
    """Entries moved to quarantine/ignored/, by their inbox name (the timestamp prefix dropped)."""
    root = data_dir / "quarantine" / "ignored"
    if not root.is_dir():
        return {}
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            entry = Path(folder, name)
            if name.endswith(".errors.json") or (entry.is_dir() and not entry.is_symlink()):
                continue
            found[name.split("-", 1)[1]] = entry
    return found


def wait_until_set_aside(data_dir: Path, names: list[str], timeout: float, log: list[str]) -> dict[str, Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = set_aside(data_dir)
        if set(names) <= set(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"not all set aside within {timeout}s: {sorted(set_aside(data_dir))}\n" + "\n".join(log[-60:]))


def assert_contained(planted: Planted, data_dir: Path, url: str, logs: list[str]) -> None:
    found = set_aside(data_dir)
    assert os.readlink(found["passwd.csv"]) == str(planted.secret_file), "the link itself moved, not its target"
    assert os.readlink(found["environ.csv"]) == "/proc/self/environ"
    assert os.readlink(found["private"]) == str(planted.secret_folder)
    assert stat.S_ISFIFO(os.lstat(found["pipe.csv"]).st_mode)
    assert found[".hidden.csv"].is_file() and not found[".hidden.csv"].is_symlink()
    assert planted.secret in planted.secret_file.read_text(), "the link's target is untouched"
    assert (planted.secret_folder / "leak.csv").exists()
    assert sorted(os.listdir(planted.folder)) == [], "nothing stays in the inbox"
    assert planted.secret not in every_database_text(url)
    assert planted.secret not in "\n".join(logs)
    for errors in (data_dir / "quarantine").rglob("*.errors.json"):
        assert planted.secret not in errors.read_text()
    titles = operator_titles(url)
    for name in planted.strays:
        assert len([title for title in titles if title.endswith(f"maple-clinic/claimright/{name}")]) == 1, titles


@pytest.fixture
def stack(tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
          smtp_server: CapturingSMTPServer) -> Iterator[tuple[Path, dict[str, str]]]:
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server)
    env["VW_TEST_ENVIRON_SECRET"] = "placeholder"  # replaced per test by the planted secret
    yield data_dir, env


def test_the_beat_scan_sets_strays_aside_once_unread_and_tells_the_operator_once(
    tmp_path: Path, postgres_url: str, stack: tuple[Path, dict[str, str]], teams_server: CapturingHTTPSServer
) -> None:
    data_dir, env = stack
    planted = plant(data_dir, tmp_path / "outside")
    env["VW_TEST_ENVIRON_SECRET"] = planted.secret  # what a link to /proc/self/environ would leak
    with running_worker(env) as log:
        vendorwatch("rerun", "ingest", env=env)
        wait_until_set_aside(data_dir, planted.strays, timeout=60, log=log)
        deadline = time.monotonic() + 30
        while planted.good.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        vendorwatch("rerun", "ingest", env=env)  # a second scan (as beat runs every minute) finds nothing more
        time.sleep(5)

        assert not planted.good.exists(), "the good file next to the strays was ingested\n" + "\n".join(log[-40:])
        assert_contained(planted, data_dir, postgres_url, log)
        assert len(operator_titles(postgres_url)) == len(planted.strays)
        assert all(planted.secret not in request.body.decode(errors="replace") for request in teams_server.requests)


def test_the_watcher_sets_strays_aside_as_they_land(
    tmp_path: Path, postgres_url: str, stack: tuple[Path, dict[str, str]]
) -> None:
    data_dir, env = stack
    (data_dir / "inbox" / "maple-clinic" / "claimright").mkdir(parents=True)
    with running_worker(env) as worker_log, running_watcher(env) as watcher_log:
        planted = plant(data_dir, tmp_path / "outside", with_good_file=False)
        # The watcher acts on links and FIFOs at once; a dot-named file (maybe rsync's upload in progress) is left
        # to the beat scan once it has not changed for a while.
        landed = wait_until_set_aside(data_dir, planted.strays[:-1], timeout=30, log=worker_log + watcher_log)
        assert ".hidden.csv" not in landed
        vendorwatch("rerun", "ingest", env=env)
        wait_until_set_aside(data_dir, planted.strays, timeout=30, log=worker_log)
        time.sleep(3)
        assert_contained(planted, data_dir, postgres_url, worker_log + watcher_log)


def test_the_ingest_task_refuses_a_path_outside_the_inbox(vw_env: dict[str, str], tmp_path: Path,
                                                          postgres_url: str) -> None:
    from tasks.ingest import ingest_file

    inbox = tmp_path / "var" / "inbox"
    (inbox / "maple-clinic").mkdir(parents=True)
    escape = inbox / "maple-clinic" / ".." / ".." / ".." / "outside.csv"
    (tmp_path / "outside.csv").write_text("kpi,period,value\ndays_in_ar,2026-01,SECRET-outside\n")

    for path in ("/etc/passwd", str(escape), "/proc/self/environ"):
        assert ingest_file.run(path)["status"] == "refused", path

    assert Path("/etc/passwd").exists() and (tmp_path / "outside.csv").exists()
    assert "SECRET-outside" not in every_database_text(postgres_url)
    with session_scope(postgres_url) as session:
        assert session.scalars(select(FeedRejection)).all() == []


def test_a_pinned_file_reads_what_was_checked_even_if_swapped_for_a_link(tmp_path: Path) -> None:
    from intake.inbox import pinned

    inbox = tmp_path / "inbox"
    feed = inbox / "maple-clinic" / "claimright" / "feed.csv"
    feed.parent.mkdir(parents=True)
    feed.write_text("kpi,period,value\ndays_in_ar,2026-01,41\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("SECRET-swapped-in")

    with pinned(feed, inbox) as readable:
        feed.unlink()
        feed.symlink_to(secret)  # the uploader swaps the checked file for a link
        assert readable.name == "feed.csv"
        assert readable.read_text() == "kpi,period,value\ndays_in_ar,2026-01,41\n"


def test_a_long_cell_is_quoted_cut_short_in_every_stored_error(tmp_path: Path, postgres_url: str) -> None:
    long_cell = "X" * 5000
    feed = tmp_path / "feed.csv"
    feed.write_text(f"kpi,period,value,{long_cell}\n{long_cell},2026-01,{long_cell},1,{long_cell}\n")

    result = ingest_path(feed, load_config(BUNDLED_DIR), practice="oakridge-fm", vendor="acme-billing",
                         database_url=postgres_url)

    assert result.status == "rejected"
    with session_scope(postgres_url) as session:
        [rejection] = session.scalars(select(FeedRejection)).all()
        for error in rejection.errors:
            for field in ("column", "value"):
                assert len(error[field] or "") <= 81, error
        assert any((error["value"] or "").endswith("…") for error in rejection.errors)
    assert all(len(str(problem)) < 400 for problem in result.problems)
