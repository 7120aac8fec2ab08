"""Delivery failures, with real parts: a TLS Teams endpoint, SMTP servers and PostgreSQL on loopback. Transient
failures are retried and never resend what a target already took; permanent ones stop at once; both end in an
operator alert on the channels that did not fail."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from celery.result import EagerResult
from sqlalchemy import select, update

from alerts.delivery import DeliveryIncomplete, Failure, classify, deliver, give_up
from alerts.operator import FeedRejected, enqueue_operator_alert
from config import Config, Route, load_config
from config.schema import RouteMatch
from storage.db import session_scope
from storage.models import DeliveryAttempt, Notification
from tests.conftest import TEST_CONFIG, WORKFLOW_ID, WORKFLOW_SIG, reset_caches
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_delivery import evaluate, ingest_value

WORKFLOWS_404 = "Failed to send Workflows notification: Not Found, error=404."


@pytest.mark.parametrize(
    ("reasons", "permanent", "status"),
    [
        ([WORKFLOWS_404], True, 404),
        (["Failed to send Slack notification: Unauthorized - Invalid Token., error=401."], True, 401),
        (["Failed to send Workflows notification: Forbidden, error=403."], True, 403),
        (["Failed to send Workflows notification: Bad Request, error=400."], True, 400),
        (["Failed to send Workflows notification: Gone, error=410."], True, 410),
        (["Failed to send Slack notification: Too Many Requests, error=429."], False, 429),
        (["Failed to send Workflows notification: Request Timeout, error=408."], False, 408),
        (["Failed to send Workflows notification: Internal Server Error, error=500."], False, 500),
        (["Failed to send Workflows notification: Bad Gateway, error=502."], False, 502),
        (["Failed to send Workflows notification: Service Unavailable, error=503."], False, 503),
        (['Connection error while submitting email to "smtp.example"', "connection refused"], False, None),
        (["A Connection error occurred sending Workflows notification.", "timed out"], False, None),
        (["Failed to send Slack notification: Not Found, error=404.", "service said channel_not_found"], True, 404),
        (["Failed to send Slack notification: error=500.", "service said invalid_token"], True, 500),
        (["Failed to send Slack notification: error=500.", "service said no_service"], True, 500),
        (['Connection error while submitting email to "smtp.example"',
          "SMTP 535 5.7.8 Authentication credentials invalid"], True, 535),
        (['Sending email to "a@maple.example" failed.', "SMTP 550 5.1.1 User unknown"], True, 550),
        (["SMTP recipient b@maple.example was refused: 550 5.1.1 User unknown"], True, 550),
        (['Sending email to "a@maple.example" failed.', "SMTP 451 4.3.0 Try again later"], False, 451),
        (["The plugin said something nobody has seen before"], False, None),
        (["Apprise status TIMEOUT"], False, None),
        (["Apprise could not load the channel URL"], True, None),
        (["Failed to send Workflows notification: error=503.", WORKFLOWS_404], True, 404),
    ],
)
def test_a_failure_is_permanent_only_when_no_retry_could_help(
    reasons: list[str], permanent: bool, status: int | None
) -> None:
    assert classify(reasons) == Failure(permanent=permanent, status=status, reason="; ".join(reasons))


def test_a_failure_without_any_reason_is_transient() -> None:
    assert classify([]) == Failure(permanent=False, status=None, reason="no reason given")


def label_for(config: Config, tag: str) -> str:
    return next(c.label for c in config.channels if tag in c.tags)


def key_for(config: Config, tag: str) -> str:
    return next(c.key for c in config.channels if tag in c.tags)


def attempts(notification_id: int) -> list[tuple[str, str, str | None]]:
    with session_scope() as session:
        rows = session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.notification_id == notification_id)
            .order_by(DeliveryAttempt.id)
        )
        return [(row.channel_label, row.outcome, row.error) for row in rows]


def operator_notifications() -> list[Notification]:
    with session_scope() as session:
        return list(session.scalars(select(Notification).where(Notification.kind == "operator")))


def status_of(notification_id: int) -> str:
    with session_scope() as session:
        return session.get_one(Notification, notification_id).status


def critical_alert(tmp_path: Path) -> int:
    ingest_value(tmp_path, 10.4)
    [notification_id] = evaluate()
    return notification_id


def deliver_once(config: Config, notification_id: int, **options: Any) -> Any:
    with session_scope() as session:
        return deliver(session, config, notification_id, **options)


def test_a_transient_failure_is_retried_until_it_passes_and_the_email_is_sent_once(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    teams_server.responder = CapturingHTTPSServer([500, 500, 200]).responder
    notification_id = critical_alert(tmp_path)
    config = load_config(TEST_CONFIG)

    for _ in range(2):
        with pytest.raises(DeliveryIncomplete):
            deliver_once(config, notification_id)
        assert status_of(notification_id) == "pending"
    report = deliver_once(config, notification_id)

    teams, email = label_for(config, "teams"), label_for(config, "email")
    assert (report.sent, report.skipped) == ([teams], [email])
    assert status_of(notification_id) == "sent"
    assert [(label, outcome) for label, outcome, _ in attempts(notification_id)] == [
        (teams, "failed"), (email, "sent"), (teams, "failed"), (teams, "sent")]
    assert "status 500" in str(attempts(notification_id)[0][2])
    assert len(teams_server.wait_for(3)) == 3
    assert len(smtp_server.messages) == 1
    assert operator_notifications() == []


def test_a_404_from_teams_fails_the_notification_at_once_and_tells_the_operator_by_email(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    teams_server.responder = CapturingHTTPSServer([404]).responder
    notification_id = critical_alert(tmp_path)
    config = load_config(TEST_CONFIG)

    report = deliver_once(config, notification_id)

    teams = label_for(config, "teams")
    assert status_of(notification_id) == "failed"
    [(first_label, outcome, error), (_, email_outcome, _)] = attempts(notification_id)
    assert (first_label, outcome, email_outcome) == (teams, "rejected", "sent")
    assert "status 404" in str(error)
    [operator] = operator_notifications()
    assert report.operator_notification_id == operator.id
    assert operator.title.startswith("Delivery failed: ")
    [detail] = operator.payload["details"]
    assert detail.startswith(f"{teams}: ") and "404" in detail
    assert operator.payload["exclude_channels"] == [key_for(config, "teams")]
    for secret in (WORKFLOW_ID, WORKFLOW_SIG, str(teams_server.port)):
        assert secret not in str(operator.payload) and secret not in str(error)

    operator_report = deliver_once(config, operator.id)

    assert operator_report.sent == [label_for(config, "email")]
    [_, operator_email] = smtp_server.wait_for(2)
    assert str(operator_email.message["Subject"]).startswith("Delivery failed: ")
    assert len(teams_server.requests) == 1, "the operator alert never goes to the target that failed"
    assert deliver_once(config, notification_id).claimed is False, "a failed notification is finished"


class KeepRecords(logging.Handler):
    """A root handler at level NOTSET, as a Celery worker has: it would print whatever reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_classified_failure_is_logged_but_apprise_debug_lines_with_the_url_are_not(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer
) -> None:
    teams_server.responder = CapturingHTTPSServer([404]).responder
    notification_id = critical_alert(tmp_path)
    apprise_logger = logging.getLogger("apprise")
    before = (apprise_logger.level, apprise_logger.propagate)
    handler = KeepRecords()
    logging.getLogger().addHandler(handler)
    try:
        deliver_once(load_config(TEST_CONFIG), notification_id)
    finally:
        logging.getLogger().removeHandler(handler)

    messages = [record.getMessage() for record in handler.records]
    assert any("failed (permanent, status 404" in message for message in messages)
    assert not [message for message in messages if WORKFLOW_SIG in message or WORKFLOW_ID in message]
    assert (apprise_logger.level, apprise_logger.propagate) == before


def test_the_operator_alert_skips_the_failed_target_even_when_its_route_names_it(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    teams_server.responder = CapturingHTTPSServer([404]).responder
    notification_id = critical_alert(tmp_path)
    loaded = load_config(TEST_CONFIG)
    everywhere = Route(when=RouteMatch(kind="operator"), tags=["teams", "email"])
    config = dataclasses.replace(loaded, routes=[everywhere, *loaded.routes])

    operator_id = deliver_once(config, notification_id).operator_notification_id
    operator_report = deliver_once(config, operator_id)

    assert operator_report.sent == [label_for(config, "email")]
    assert len(teams_server.requests) == 1


def test_exhausted_retries_fail_the_notification_and_alert_the_operator_by_email_only(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.deliver import MAX_RETRIES, deliver_task
    from worker.app import app

    # The operator alert's own delivery_task.delay() then runs in this process too, instead of going to a broker.
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    teams_server.responder = CapturingHTTPSServer([503]).responder
    notification_id = critical_alert(tmp_path)

    result: EagerResult = deliver_task.apply(args=(notification_id,))  # eager: retries run at once, no countdown

    assert result.failed() and isinstance(result.result, DeliveryIncomplete)
    assert status_of(notification_id) == "failed"
    assert len(teams_server.requests) == MAX_RETRIES + 1, "the first try and every retry"
    [operator] = operator_notifications()
    assert operator.status == "sent"
    assert "status 503" in operator.payload["details"][0]
    [_, operator_email] = smtp_server.wait_for(2)
    assert str(operator_email.message["Subject"]).startswith("Delivery failed: ")
    assert len(teams_server.requests) == MAX_RETRIES + 1, "nothing about the failure went to Teams"


def test_giving_up_twice_raises_one_operator_alert(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer
) -> None:
    teams_server.responder = CapturingHTTPSServer([503]).responder
    notification_id = critical_alert(tmp_path)
    config = load_config(TEST_CONFIG)
    with pytest.raises(DeliveryIncomplete):
        deliver_once(config, notification_id)

    with session_scope() as session:
        first = give_up(session, config, notification_id)
        second = give_up(session, config, notification_id)

    assert first is not None and second is None
    assert [n.id for n in operator_notifications()] == [first]


def test_an_undeliverable_operator_alert_is_marked_failed_without_another_operator_alert(
    vw_env: dict[str, str], teams_server: CapturingHTTPSServer, caplog: pytest.LogCaptureFixture
) -> None:
    teams_server.responder = CapturingHTTPSServer([404]).responder
    loaded = load_config(TEST_CONFIG)
    config = dataclasses.replace(loaded, routes=[Route(when=RouteMatch(kind="operator"), tags=["teams"])])
    with session_scope() as session:
        operator_id = enqueue_operator_alert(session, config, FeedRejected("maple-clinic/claimright/x.csv", 1, "q"))
    assert operator_id is not None

    with caplog.at_level(logging.ERROR, logger="alerts.delivery"):
        report = deliver_once(config, operator_id)

    assert report.rejected == [label_for(config, "teams")] and report.operator_notification_id is None
    assert status_of(operator_id) == "failed"
    assert [n.id for n in operator_notifications()] == [operator_id]
    assert f"operator notification {operator_id} could not be delivered" in caplog.text


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def picky_smtp() -> Iterator[Controller]:
    """An SMTP server that answers like a real one when things are wrong: AUTH always fails (535), RCPT to
    gone@ is unknown (550), RCPT to busy@ is greylisted (451)."""

    class Handler:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                              rcpt_options: list[str]) -> str:
            if address.startswith("gone@"):
                return "550 5.1.1 User unknown"
            if address.startswith("busy@"):
                return "451 4.7.1 Greylisted, try again later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 Message accepted for delivery"

    def refuse(*_: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port(), server_hostname="localhost",
                            authenticator=refuse, auth_require_tls=False)
    controller.start()
    yield controller
    controller.stop()


@pytest.mark.parametrize(
    ("credentials", "recipient", "outcome", "code"),
    [
        ("", "gone@maple.example", "rejected", "550"),
        ("vendorwatch:wrong-password@", "alerts@maple.example", "rejected", "535"),
        ("", "busy@maple.example", "failed", "451"),
    ],
)
def test_smtp_replies_decide_whether_an_email_target_is_retried(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, picky_smtp: Controller,
    monkeypatch: pytest.MonkeyPatch, credentials: str, recipient: str, outcome: str, code: str,
) -> None:
    monkeypatch.setenv("TEST_ALERT_EMAIL_URL", f"mailto://{credentials}127.0.0.1:{picky_smtp.port}?mode=insecure"
                       f"&from=vendorwatch@localhost&to={recipient}")
    reset_caches()
    notification_id = critical_alert(tmp_path)
    config = load_config(TEST_CONFIG)

    if outcome == "failed":
        with pytest.raises(DeliveryIncomplete):
            deliver_once(config, notification_id)
    else:
        deliver_once(config, notification_id)

    [(_, teams_outcome, _), (email, email_outcome, error)] = attempts(notification_id)
    assert (teams_outcome, email, email_outcome) == ("sent", label_for(config, "email"), outcome)
    assert f"status {code}" in str(error) and "wrong-password" not in str(error)
    assert status_of(notification_id) == ("failed" if outcome == "rejected" else "pending")
    # The operator route names only the email target, which is the one that failed: nobody is left to tell.
    assert operator_notifications() == []


def test_dry_run_reaches_no_server_and_records_dry_run_attempts(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    notification_id = critical_alert(tmp_path)
    config = dataclasses.replace(load_config(TEST_CONFIG), dry_run=True)

    report = deliver_once(config, notification_id, dry_run_dir=tmp_path / "dry-run")

    assert report.dry_run == [label_for(config, "teams"), label_for(config, "email")]
    assert [outcome for _, outcome, _ in attempts(notification_id)] == ["dry_run", "dry_run"]
    assert status_of(notification_id) == "sent"
    assert teams_server.requests == [] and smtp_server.messages == []
    assert len(list((tmp_path / "dry-run").iterdir())) == 2


def test_the_safety_net_counts_rounds_across_task_chains_and_gives_up_once(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each new task chain used to start its retries at zero, so a notification whose chains kept getting lost (or
    kept failing) was tried every 10 minutes for ever. The rounds are counted in the database now."""
    from alerts.delivery import MAX_ROUNDS
    from tasks.deliver import deliver_pending
    from worker.app import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    teams_server.responder = CapturingHTTPSServer([503]).responder
    notification_id = critical_alert(tmp_path)
    config = load_config(TEST_CONFIG)
    for _ in range(MAX_ROUNDS - 1):
        with pytest.raises(DeliveryIncomplete):
            deliver_once(config, notification_id)
    assert status_of(notification_id) == "pending"

    # The last round, through the safety net (eager, so its chain runs here); then it is used up.
    assert deliver_pending.apply().get() == [notification_id]
    assert status_of(notification_id) == "failed"
    assert len(teams_server.requests) == MAX_ROUNDS
    with session_scope() as session:
        assert session.get_one(Notification, notification_id).rounds == MAX_ROUNDS
    [operator] = operator_notifications()
    assert deliver_pending.apply().get() == [], "a failed notification is not picked up again"
    assert [n.id for n in operator_notifications()] == [operator.id]


def test_the_safety_net_takes_over_a_claim_whose_worker_is_gone(
    tmp_path: Path, vw_env: dict[str, str], teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A notification left in 'sending' (its worker died, or lost the database, mid-delivery) used to stay there:
    the safety net only looked at pending rows."""
    import datetime as dt

    from alerts.delivery import STALE_CLAIM, claim
    from storage.models import utcnow
    from tasks.deliver import deliver_pending
    from worker.app import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    notification_id = critical_alert(tmp_path)
    with session_scope() as session:
        assert claim(session, notification_id, utcnow(), token="dead-task")
    with session_scope() as session:
        assert not claim(session, notification_id, utcnow(), token="another-task"), "a live claim was taken"
    assert deliver_pending.apply().get() == [], "a live claim was handed over"

    with session_scope() as session:  # the claim's worker died a while ago
        session.execute(update(Notification).values(claimed_at=utcnow() - STALE_CLAIM - dt.timedelta(minutes=1)))
    assert status_of(notification_id) == "sending"
    assert deliver_pending.apply().get() == [notification_id]

    assert status_of(notification_id) == "sent"
    assert len(teams_server.wait_for(1)) == 1 and len(smtp_server.wait_for(1)) == 1
