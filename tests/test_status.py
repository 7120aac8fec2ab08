"""Who watches the watcher: `vendorwatch status` against real Redis, PostgreSQL, a real worker and a real beat, and
the heartbeat task through a real worker to a loopback dead man's switch."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from storage.db import session_scope
from storage.models import Notification
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.worker_process import BIN, started_worker, stop_group, vendorwatch

CHECK_TOKEN = "hb-5f0c2a9e-7d41-4b8e"
CHANNEL_ENV = {name: "json://localhost" for name in ("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL")}


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def env_for(tmp_path: Path, postgres_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    return subprocess_env({
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_DATABASE_URL": postgres_url,
        "VENDORWATCH_BROKER_URL": broker_url,
        "VENDORWATCH_BEAT_LOCK_SECONDS": "10",
        **CHANNEL_ENV,
        **extra,
    })


def status(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]], str]:
    """(exit code, the checks by name, the human table) of `vendorwatch status`."""
    result = vendorwatch("--json", "status", env=env, check=False, timeout=60)
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    human = vendorwatch("status", env=env, check=False, timeout=60)
    assert human.returncode == result.returncode, human.stdout + human.stderr
    return result.returncode, checks, human.stdout


@contextmanager
def running_beat(env: dict[str, str]) -> Iterator[list[str]]:
    process = subprocess.Popen(
        [str(BIN / "vendorwatch"), "beat", "--loglevel", "INFO"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(line.rstrip() for line in process.stdout)

    threading.Thread(target=read, daemon=True).start()
    try:
        yield lines
    finally:
        stop_group(process)


def wait_for_lock(broker_url: str, lines: list[str]) -> None:
    client = redis.Redis.from_url(broker_url)
    deadline = time.monotonic() + 60
    while client.get("vendorwatch:beat:lock") is None:
        if time.monotonic() > deadline:
            raise AssertionError("beat never took the lock:\n" + "\n".join(lines[-40:]))
        time.sleep(0.2)


def add_notification(database_url: str, created_at: dt.datetime, claimed_at: dt.datetime | None = None) -> None:
    """A notification waiting in the outbox since `created_at`; with `claimed_at`, one a live delivery holds (so
    the beat's every-ten-minutes deliver_pending leaves it where it is)."""
    with session_scope(database_url) as session:
        session.add(Notification(kind="alert", practice_id="maple-clinic", severity="critical", tags=[],
                                 title="stuck", payload={"changes": []}, created_at=created_at,
                                 status="pending" if claimed_at is None else "sending", claimed_at=claimed_at,
                                 claim_token=None if claimed_at is None else "a-live-delivery"))


def test_status_is_healthy_with_a_worker_a_beat_and_nothing_waiting(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = env_for(tmp_path, postgres_url, redis_url)
    # Held by a delivery in progress: a pending one would be sent by the beat's deliver_pending whenever the test
    # straddles a tenth minute of the hour, and the outbox would be empty (it failed so at 17:00).
    now = dt.datetime.now(dt.UTC)
    add_notification(postgres_url, now - dt.timedelta(minutes=2), claimed_at=now)
    with started_worker(env), running_beat(env) as beat_lines:
        wait_for_lock(redis_url, beat_lines)
        code, checks, _ = status(env)
    assert code == 0, json.dumps(checks, indent=2)
    assert {name: check["healthy"] for name, check in checks.items()} == {
        "broker": True, "database": True, "workers": True, "beat": True, "outbox": True, "inbox": True,
    }
    assert "1 answered: celery@" in checks["workers"]["detail"]
    assert checks["beat"]["age_seconds"] <= 10
    assert 100 <= checks["outbox"]["age_seconds"] <= 600
    assert "schema at head" in checks["database"]["detail"]


def test_status_fails_and_names_the_broker_when_it_is_down(tmp_path: Path, postgres_url: str) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    code, checks, human = status(env_for(tmp_path, postgres_url, closed))
    assert code == 1
    assert checks["broker"]["healthy"] is False
    assert "Connection refused" in checks["broker"]["detail"]
    assert checks["database"]["healthy"] is True
    assert "broker" in human and "UNHEALTHY" in human
    assert time.monotonic() - started < 50, "a dead broker must make status fail fast, not hang"


def test_status_check_judges_only_the_named_checks(tmp_path: Path, postgres_url: str) -> None:
    """What the compose healthchecks use: the database alone is healthy while the broker is down."""
    env = env_for(tmp_path, postgres_url, f"redis://127.0.0.1:{free_port()}/0")
    only_database = vendorwatch("--json", "status", "--check", "database", env=env, check=False)
    assert only_database.returncode == 0, only_database.stdout + only_database.stderr
    assert [check["name"] for check in json.loads(only_database.stdout)["checks"]] == ["database"]
    with_broker = vendorwatch("status", "--check", "database", "--check", "broker", env=env, check=False)
    assert with_broker.returncode == 1
    unknown = vendorwatch("status", "--check", "brokers", env=env, check=False)
    assert unknown.returncode == 2 and "no check brokers" in unknown.stderr


def test_status_fails_on_a_notification_waiting_over_an_hour_and_on_an_old_inbox_file(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = env_for(tmp_path, postgres_url, redis_url)
    add_notification(postgres_url, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    feed = tmp_path / "var" / "inbox" / "maple-clinic" / "claimright" / "feed.csv"
    feed.parent.mkdir(parents=True)
    feed.write_text("practice,vendor,kpi,period,value\n")
    _, fresh, _ = status(env)
    assert (fresh["outbox"]["healthy"], fresh["inbox"]["healthy"]) == (True, True)

    add_notification(postgres_url, dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    an_hour_ago = time.time() - 3600
    os.utime(feed, (an_hour_ago, an_hour_ago))
    code, stale, human = status(env)
    assert code == 1
    assert stale["outbox"]["healthy"] is False and stale["outbox"]["age_seconds"] >= 7200
    assert stale["inbox"]["healthy"] is False and stale["inbox"]["age_seconds"] >= 3600
    assert "oldest waiting notification: 2.0 h" in human


class CheckServer:
    """A healthchecks-style endpoint on loopback: answers each ping with the next status, keeps the paths."""

    def __init__(self, statuses: list[int]) -> None:
        self.paths: list[str] = []
        statuses_left = list(statuses)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                code = statuses_left.pop(0) if len(statuses_left) > 1 else statuses_left[0]
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ping/{CHECK_TOKEN}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def check_server() -> Iterator[CheckServer]:
    server = CheckServer([500, 200])
    yield server
    server.stop()


def wait_for_line(lines: list[str], text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the worker's log:\n" + "\n".join(lines[-60:]))
        time.sleep(0.2)


def test_the_heartbeat_task_pings_the_switch_through_a_real_worker_and_survives_a_failure(
    tmp_path: Path, postgres_url: str, redis_url: str, check_server: CheckServer
) -> None:
    env = env_for(tmp_path, postgres_url, redis_url, VENDORWATCH_HEARTBEAT_URL=check_server.url)
    with started_worker(env, loglevel="DEBUG") as worker:
        from config.settings import Settings
        from worker.app import create_app

        client = create_app(Settings(broker_url=redis_url, data_dir=tmp_path / "client"))
        client.send_task("monitor.heartbeat")
        wait_for_line(worker.log, "heartbeat ping answered HTTP 500")
        client.send_task("monitor.heartbeat")
        wait_for_line(worker.log, "heartbeat ping sent")
        assert worker.process.poll() is None
        log = "\n".join(worker.log)
    assert check_server.paths == [f"/ping/{CHECK_TOKEN}"] * 2
    assert "urllib3.connectionpool" in log, "the worker must have logged its requests at DEBUG"
    assert CHECK_TOKEN not in log


def test_a_ping_to_a_switch_that_is_not_there_is_logged_without_its_url(caplog: pytest.LogCaptureFixture) -> None:
    from tasks.heartbeat import ping

    url = f"http://127.0.0.1:{free_port()}/ping/{CHECK_TOKEN}"
    with caplog.at_level(logging.WARNING, logger="tasks.heartbeat"):
        assert ping(url) is False
    [record] = [r for r in caplog.records if r.name == "tasks.heartbeat"]
    assert "heartbeat ping failed: ConnectionError" in record.getMessage()
    assert CHECK_TOKEN not in record.getMessage()


def test_beat_schedules_the_heartbeat_every_five_minutes() -> None:
    from worker.app import app, beat_schedule

    entry = beat_schedule()["heartbeat"]
    assert entry["task"] == "monitor.heartbeat" and entry["task"] in app.tasks
    assert entry["schedule"].minute == set(range(0, 60, 5))  # type: ignore[attr-defined]
