"""Two workers delivering the same outbox row: exactly one send per target.

First two threads with their own PostgreSQL sessions race deliver() for the same notification; then two real
`vendorwatch worker` processes on Redis are each handed every delivery twice. The Teams endpoint (TLS) and the
SMTP server are real servers on loopback that count what they receive.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select

from alerts.delivery import DeliveryReport, deliver
from config import Channel, Config, load_config
from storage.db import session_scope
from storage.models import DeliveryAttempt, Notification
from tests.conftest import TEST_CONFIG, channel_environment, subprocess_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_delivery import evaluate, ingest_value
from tests.worker_process import running_worker

ROUNDS = 5
DELIVERED = re.compile(r"Task alerts\.deliver\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: (\{.*\})$")


def outbox_of_five(tmp_path: Path, database_url: str) -> list[int]:
    """One notification written by a real evaluation, and copies of it (same tags and payload) under new titles."""
    ingest_value(tmp_path, 10.4)
    [original_id] = evaluate()
    ids = [original_id]
    with session_scope(database_url) as session:
        original = session.get_one(Notification, original_id)
        for number in range(2, ROUNDS + 1):
            copy = Notification(kind=original.kind, practice_id=original.practice_id, severity=original.severity,
                                tags=list(original.tags), title=f"{original.title} #{number}",
                                payload=dict(original.payload), status="pending")
            session.add(copy)
            session.flush()
            ids.append(copy.id)
    return ids


def titles(ids: list[int], database_url: str) -> dict[int, str]:
    with session_scope(database_url) as session:
        return {n.id: n.title for n in session.scalars(select(Notification).where(Notification.id.in_(ids)))}


def outcomes_per_target(ids: list[int], database_url: str) -> dict[int, dict[str, list[str]]]:
    """notification id -> channel key -> outcomes of its attempts, in order."""
    outcomes: dict[int, dict[str, list[str]]] = {notification_id: {} for notification_id in ids}
    with session_scope(database_url) as session:
        for attempt in session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)):
            outcomes[attempt.notification_id].setdefault(attempt.channel_key, []).append(attempt.outcome)
    return outcomes


def statuses(ids: list[int], database_url: str) -> dict[int, str]:
    with session_scope(database_url) as session:
        return {n.id: n.status for n in session.scalars(select(Notification).where(Notification.id.in_(ids)))}


def alert_targets(config: Config) -> list[Channel]:
    return [channel for channel in config.channels if channel.tags & {"teams", "email"}]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_two_threads_racing_to_deliver_one_notification_send_it_once_per_target(
    tmp_path: Path,
    vw_env: dict[str, str],
    postgres_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    config = load_config(TEST_CONFIG)
    ids = outbox_of_five(tmp_path, postgres_url)

    def race(notification_id: int, start: threading.Barrier) -> DeliveryReport:
        with session_scope(postgres_url) as session:
            session.connection()  # both workers hold a connection before the start, so only the claim races
            start.wait(timeout=30)
            return deliver(session, config, notification_id)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for done, notification_id in enumerate(ids, start=1):
            start = threading.Barrier(2)
            reports = [future.result() for future in [pool.submit(race, notification_id, start) for _ in range(2)]]
            assert sorted(report.claimed for report in reports) == [False, True], f"round {done}: {reports}"
            [winner] = [report for report in reports if report.claimed]
            assert len(winner.sent) == 2 and not winner.failed, winner
            assert len(teams_server.requests) == done, f"round {done}: Teams was posted to more than once"
            assert len(smtp_server.messages) == done, f"round {done}: more than one email"

    targets = {channel.key for channel in alert_targets(config)}
    assert outcomes_per_target(ids, postgres_url) == {
        notification_id: {key: ["sent"] for key in targets} for notification_id in ids}
    assert set(statuses(ids, postgres_url).values()) == {"sent"}
    subjects = Counter(str(message.message["Subject"]) for message in smtp_server.messages)
    assert subjects == Counter(titles(ids, postgres_url).values())


def test_two_worker_processes_each_given_every_delivery_twice_send_each_notification_once_per_target(
    tmp_path: Path,
    vw_env: dict[str, str],
    postgres_url: str,
    redis_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    from config.settings import Settings
    from worker.app import create_app

    config = load_config(TEST_CONFIG)
    ids = outbox_of_five(tmp_path, postgres_url)
    env = subprocess_env(
        {
            "VENDORWATCH_CONFIG": str(TEST_CONFIG),
            "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
            "VENDORWATCH_DATABASE_URL": postgres_url,
            "VENDORWATCH_BROKER_URL": redis_url,
            **channel_environment(teams_server, smtp_server),
        }
    )
    with running_worker(env) as first_log, running_worker(env) as second_log:
        producer = create_app(Settings(broker_url=redis_url, database_url=postgres_url, data_dir=tmp_path / "var"))
        try:
            for notification_id in ids:
                for _ in range(2):
                    producer.send_task("alerts.deliver", args=[notification_id])
        finally:
            producer.close()

        def reports() -> list[str]:
            return [match[1] for line in [*first_log, *second_log] if (match := DELIVERED.search(line))]

        wait_until(lambda: set(statuses(ids, postgres_url).values()) == {"sent"}, "every notification sent")
        wait_until(lambda: len(reports()) == 2 * ROUNDS, "all ten deliver tasks to finish")
        worker_logs = {"first": list(first_log), "second": list(second_log)}

    finished = reports()
    assert sum("'claimed': True" in report for report in finished) == ROUNDS, finished
    assert sum("'claimed': False" in report for report in finished) == ROUNDS, finished
    # Each worker runs at most two tasks at a time (concurrency 2, prefetch 1), so both must have taken some.
    for name, log in worker_logs.items():
        assert any("alerts.deliver[" in line and "received" in line for line in log), f"the {name} worker idled"
    assert len(teams_server.requests) == ROUNDS
    assert len(smtp_server.messages) == ROUNDS
    targets = {channel.key for channel in alert_targets(config)}
    assert outcomes_per_target(ids, postgres_url) == {
        notification_id: {key: ["sent"] for key in targets} for notification_id in ids}
    subjects = Counter(str(message.message["Subject"]) for message in smtp_server.messages)
    assert subjects == Counter(titles(ids, postgres_url).values())
