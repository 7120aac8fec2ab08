"""PostgreSQL goes away while an alert is being delivered: the alert still reaches every target, and the targets
whose success was recorded are not sent twice.

Real parts: a private PostgreSQL cluster (initdb in a temp folder, run as `postgres`) that the test stops with
`pg_ctl -m immediate` (a crash: every backend killed) while the Teams webhook holds the first post open, a real
`vendorwatch worker` on Redis, the loopback TLS Teams server and the loopback SMTP server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from storage.db import upgrade
from tests.conftest import stack_env
from tests.support.private_services import PrivatePostgres, private_postgres, wait_until
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CannedResponse, CapturedRequest, CapturingHTTPSServer
from tests.test_end_to_end import drop_in_inbox, recent_months
from tests.worker_process import started_worker, vendorwatch


class HeldWebhook:
    """Teams' endpoint that keeps the first post waiting until the test lets it go."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: CapturedRequest) -> CannedResponse:
        if not self.holding.is_set():
            self.holding.set()
            self.release.wait(60)
        return CannedResponse()


def database_on(cluster: PrivatePostgres) -> str:
    url = cluster.create_database("vendorwatch")
    upgrade(url)
    return url


def notification_state(url: str) -> tuple[str, int, dict[str, int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            status, rounds = connection.execute(text("SELECT status, rounds FROM notification")).one()
            sent = {str(key): int(n) for key, n in connection.execute(text(
                "SELECT channel_key, count(*) FROM delivery_attempt WHERE outcome = 'sent' GROUP BY channel_key"
            )).all()}
    finally:
        engine.dispose()
    return str(status), int(rounds), sent


def test_an_alert_in_delivery_when_postgresql_restarts_reaches_every_target_once(
    tmp_path: Path, redis_url: str, smtp_server: CapturingSMTPServer
) -> None:
    webhook = HeldWebhook()
    with CapturingHTTPSServer(webhook) as teams, private_postgres() as cluster:
        url = database_on(cluster)
        env = stack_env(tmp_path / "var", url, redis_url, teams, smtp_server)
        month = recent_months(1)[0]
        with started_worker(env) as worker:
            drop_in_inbox(tmp_path / "var" / "inbox", "breach.csv", f"kpi,period,value\ndenial_rate,{month},10.4\n")
            vendorwatch("rerun", "ingest", env=env)
            assert webhook.holding.wait(60), "the alert never reached Teams:\n" + worker.tail()

            cluster.stop("immediate")
            webhook.release.set()  # Teams took the post; recording it fails: the database is down
            time.sleep(10)
            cluster.start()

            def delivered() -> bool:
                return cluster.answers() and notification_state(url)[0] == "sent"

            try:
                wait_until(delivered, 120, "the notification to be sent")
            except AssertionError as error:
                raise AssertionError(f"{error}: {notification_state(url)}\n{worker.tail()}") from None
            assert worker.process.poll() is None

        status, rounds, sent = notification_state(url)
        assert status == "sent"
        assert len(smtp_server.messages) == 1, "the email went out more or less than once"
        # The first Teams post went out but was never recorded, so its retry may post again; no more than that.
        assert 1 <= len(teams.requests) <= 2
        assert sent == {key: 1 for key in sent} and len(sent) == 2, f"one recorded success per target: {sent}"
        assert 2 <= rounds <= 3
