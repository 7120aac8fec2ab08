"""Redis goes away while the worker is busy: the worker stays up, and every file is stored once and every alert
sent once after Redis returns.

The crash seen before: a task running across the outage finished after the consumer had reconnected, and acking
it on the old, closed channel raised AttributeError('NoneType' object has no attribute 'hostname') inside kombu,
which Celery treats as unrecoverable: the worker exited (with status 0). To hold a task across the outage at will,
the test keeps PostgreSQL's `alert` table locked, so the evaluation that follows an ingest waits on it.

Real parts: a private `redis-server` (killed with SIGKILL and started again on the same port, with and without
its append-only file), a real `vendorwatch worker`, the machine's PostgreSQL, the loopback Teams and SMTP servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text

from storage.models import FeedFile, Notification
from tests.conftest import stack_env
from tests.support.private_services import PrivateRedis, private_redis, wait_until
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import count, drop_in_inbox, recent_months
from tests.worker_process import Worker, started_worker, vendorwatch

WAITING_ON_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@contextmanager
def table_locked(database_url: str, table: str = "alert") -> Iterator[Connection]:
    engine = create_engine(database_url)
    connection = engine.connect()
    try:
        connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield connection
    finally:
        connection.rollback()
        connection.close()
        engine.dispose()


def waiting_on_lock(database_url: str) -> bool:
    """Asked on a connection of its own: inside the locking transaction, pg_stat_activity would stay a snapshot."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(WAITING_ON_LOCK).scalar_one()) >= 1
    finally:
        engine.dispose()


def reconnections(worker: Worker) -> int:
    return sum("consumer.connection: Connected to" in line for line in worker.log)


def failed_reconnections(worker: Worker) -> int:
    return sum("consumer: Cannot connect to" in line for line in worker.log)


def outage(server: PrivateRedis, worker: Worker) -> None:
    """Kill Redis, keep it down until the worker has tried to reconnect and failed, start it again and wait until
    the worker's consumer is back."""
    connected, failed = reconnections(worker), failed_reconnections(worker)
    server.kill()
    try:
        wait_until(lambda: failed_reconnections(worker) > failed or worker.process.poll() is not None, 60,
                   "the worker to find Redis down")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{worker.tail()}") from None
    server.start()
    try:
        wait_until(lambda: reconnections(worker) > connected or worker.process.poll() is not None, 90,
                   "the worker to reconnect")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{worker.tail()}") from None


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "append-only-file"])
def test_a_task_running_across_a_redis_restart_neither_kills_the_worker_nor_loses_its_alert(
    appendonly: bool, tmp_path: Path, postgres_url: str, teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    month = recent_months(1)[0]
    with private_redis(tmp_path / "redis", appendonly=appendonly) as server:
        env = stack_env(tmp_path / "var", postgres_url, server.url, teams_server, smtp_server)
        inbox = tmp_path / "var" / "inbox"
        with started_worker(env) as worker:
            with table_locked(postgres_url):
                drop_in_inbox(inbox, "breach.csv", f"kpi,period,value\ndenial_rate,{month},10.4\n")
                vendorwatch("rerun", "ingest", env=env)
                wait_until(lambda: waiting_on_lock(postgres_url), 60, "the evaluation to wait on the alert table")
                outage(server, worker)
            time.sleep(5)  # the evaluation, if still running, finishes and is acked now
            assert worker.process.poll() is None, "the worker exited:\n" + worker.tail()

            # What beat does every minute: scan the inbox, and evaluate what is still owed.
            vendorwatch("rerun", "ingest", env=env)
            teams_server.wait_for(1, timeout=60)
            smtp_server.wait_for(1, timeout=60)
            time.sleep(3)
            assert worker.process.poll() is None, "the worker exited:\n" + worker.tail()

    assert count(FeedFile, postgres_url) == 1
    assert count(Notification, postgres_url) == 1
    assert len(teams_server.requests) == 1 and len(smtp_server.messages) == 1


def test_an_evaluation_asked_for_while_redis_is_down_is_made_up_by_the_next_inbox_scan(
    tmp_path: Path, postgres_url: str, teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer,
) -> None:
    """The ingest stores the file while Redis is down, so its request for an evaluation cannot be sent, and Redis
    comes back empty. The request was also written to the database, and the next scan (beat's, every minute)
    enqueues it: the alert goes out once, minutes later, not the next morning."""
    month = recent_months(1)[0]
    with private_redis(tmp_path / "redis") as server:
        env = stack_env(tmp_path / "var", postgres_url, server.url, teams_server, smtp_server)
        with started_worker(env) as worker:
            with table_locked(postgres_url, "feed_file"):
                drop_in_inbox(tmp_path / "var" / "inbox", "breach.csv",
                              f"kpi,period,value\ndenial_rate,{month},10.4\n")
                vendorwatch("rerun", "ingest", env=env)
                wait_until(lambda: waiting_on_lock(postgres_url), 60, "the ingest to wait on the feed_file table")
                connected = reconnections(worker)
                server.kill()
            wait_until(lambda: any("ingest.file" in line and "raised" in line for line in worker.log), 60,
                       "the ingest to fail to ask for its evaluation")
            assert count(FeedFile, postgres_url) == 1, "the file was not stored"
            server.start()  # empty: the evaluation was never queued
            wait_until(lambda: reconnections(worker) > connected, 90, "the worker to reconnect")
            time.sleep(3)
            assert teams_server.requests == [], "an evaluation ran before the scan"

            vendorwatch("rerun", "ingest", env=env)
            teams_server.wait_for(1, timeout=60)
            smtp_server.wait_for(1, timeout=60)
            vendorwatch("rerun", "ingest", env=env)  # nothing is owed any more: no second evaluation, no message
            time.sleep(5)
            assert worker.process.poll() is None, "the worker exited:\n" + worker.tail()

    assert count(Notification, postgres_url) == 1
    assert len(teams_server.requests) == 1 and len(smtp_server.messages) == 1
