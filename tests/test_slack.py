"""Slack delivery, checked at the HTTP boundary.

Slack's webhook host is not on this machine, so this is the one place the tests mock: `responses` answers the POST
to hooks.slack.com that Apprise's slack:// plugin makes, and keeps its JSON body. Everything else is real: the feed
is ingested and evaluated into PostgreSQL, delivery claims the outbox row, and the email target is an SMTP server
on loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from sqlalchemy import select

from alerts.delivery import DeliveryIncomplete, deliver
from alerts.evaluate import evaluate_practices
from config import Channel, Config, load_config
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import DeliveryAttempt, Notification
from tests.conftest import TEST_CONFIG, reset_caches
from tests.support.smtp_capture import CapturingSMTPServer

AS_OF = dt.date(2026, 11, 23)
SEGMENT = "payer:<Acme & Sons>"
# Fake tokens in the shapes Apprise accepts. The webhook URL is only ever assembled from these parts, so nothing in
# the repository reads like a real Slack webhook secret.
SLACK_TOKENS = ("T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ")
SLACK_CHANNEL = "alerts"
SLACK_URL = "slack://" + "/".join(SLACK_TOKENS) + "/#" + SLACK_CHANNEL
WEBHOOK = "https://" + "/".join(("hooks.slack.com", "services", *SLACK_TOKENS))

CHANNELS_YAML = """\
dry_run: false
urls:
  - "${TEST_SLACK_URL}":
      - tag: slack
  - "${TEST_ALERT_EMAIL_URL}":
      - tag: email
routes:
  - when: {kind: operator}
    tags: [email]
  - when: {severity: critical}
    tags: [slack, email]
"""

# What must never reach a chat channel: patient-looking facts, and anything from the configuration that is a secret
# or a person's address.
PHI_PATTERNS = (
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # SSN
    re.compile(r"\b(mrn|dob|date of birth|patient|ssn)\b", re.IGNORECASE),
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),  # any email address
)


@pytest.fixture
def slack_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str, smtp_server: CapturingSMTPServer
) -> Iterator[Config]:
    """The test practice, routed critical -> Slack and email; PostgreSQL; the email target on loopback SMTP."""
    directory = tmp_path / "config"
    directory.mkdir()
    shutil.copy(TEST_CONFIG / "practices.yaml", directory / "practices.yaml")
    (directory / "channels.yaml").write_text(CHANNELS_YAML)
    environment = {
        "VENDORWATCH_CONFIG": str(directory),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_DATABASE_URL": postgres_url,
        "TEST_SLACK_URL": SLACK_URL,
        "TEST_ALERT_EMAIL_URL": f"mailto://127.0.0.1:{smtp_server.port}?mode=insecure&from=vendorwatch@localhost"
        "&to=alerts@maple.example",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VENDORWATCH_BROKER_URL", raising=False)
    reset_caches()
    yield load_config(directory)
    reset_caches()


@pytest.fixture
def slack_http() -> Iterator[responses.RequestsMock]:
    """Intercepts every HTTP request `requests` makes; a test registers what Slack answers."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def slack_answers(mock: responses.RequestsMock, *statuses: int) -> None:
    """Slack answers the webhook with these statuses in turn (the last one repeats); a webhook says "ok" on 200."""
    for status in statuses:
        mock.add(responses.POST, WEBHOOK, status=status, body="ok" if status == 200 else "internal_error")


def slack_posts(mock: responses.RequestsMock) -> list[dict[str, Any]]:
    posts = []
    for call in mock.calls:
        assert call.request.url == WEBHOOK, f"unexpected HTTP request to {call.request.url}"
        body = call.request.body
        posts.append(json.loads(body.decode() if isinstance(body, bytes) else str(body)))
    return posts


def message_text(payload: dict[str, Any]) -> str:
    """The mrkdwn text a Slack user reads: the legacy attachment's text, or the section blocks' text."""
    [attachment] = payload["attachments"]
    if "text" in attachment:
        return str(attachment["text"])
    return "\n".join(block["text"]["text"] for block in attachment["blocks"] if block["type"] == "section")


def channel_tagged(config: Config, tag: str) -> Channel:
    [channel] = [channel for channel in config.channels if tag in channel.tags]
    return channel


def critical_alert_for_a_special_segment(tmp_path: Path, config: Config) -> int:
    """Ingest a critical denial rate for a payer segment full of Slack's special characters; evaluate it."""
    feed = tmp_path / "denials-2026-10.csv"
    feed.write_text(f"practice,vendor,kpi,period,value,segment\nmaple-clinic,claimright,denial_rate,2026-10,10.4,"
                    f"{SEGMENT}\n")
    result = ingest_path(feed, config, today=AS_OF)
    assert result.status == "accepted", result.problems
    [notification_id] = [r.notification_id for r in evaluate_practices(config, as_of=AS_OF)
                         if r.notification_id is not None]
    with session_scope() as session:
        notification = session.get_one(Notification, notification_id)
        assert notification.tags == ["slack", "email"]
        assert [change["segment"] for change in notification.payload["changes"]] == [SEGMENT]
    return notification_id


def deliver_to_slack(tmp_path: Path, config: Config, slack_http: responses.RequestsMock) -> dict[str, Any]:
    slack_answers(slack_http, 200)
    notification_id = critical_alert_for_a_special_segment(tmp_path, config)
    with session_scope() as session:
        report = deliver(session, config, notification_id)
        assert report.claimed
        assert report.sent == [channel_tagged(config, "slack").label, channel_tagged(config, "email").label]
    [payload] = slack_posts(slack_http)
    return payload


def test_a_critical_alert_reaches_slack_naming_the_practice_vendor_kpi_value_and_threshold(
    tmp_path: Path, slack_config: Config, slack_http: responses.RequestsMock, smtp_server: CapturingSMTPServer
) -> None:
    payload = deliver_to_slack(tmp_path, slack_config, slack_http)
    text = message_text(payload)
    assert payload["channel"] == "#" + SLACK_CHANNEL
    assert payload["mrkdwn"] is True
    assert "Maple Street Clinic" in payload["attachments"][0]["title"]
    for fact in ("Maple Street Clinic", "ClaimRight Billing", "Initial denial rate", "10.4%", "10.0% threshold",
                 "Oct 2026"):
        assert fact in text, f"{fact!r} missing from the Slack message: {text!r}"
    with session_scope() as session:
        attempts = {(a.channel_key, a.outcome) for a in session.scalars(select(DeliveryAttempt))}
        [notification] = session.scalars(select(Notification)).all()
        assert notification.status == "sent"
    slack, email = channel_tagged(slack_config, "slack"), channel_tagged(slack_config, "email")
    assert attempts == {(slack.key, "sent"), (email.key, "sent")}
    assert len(smtp_server.wait_for(1)) == 1


def test_feed_text_in_a_slack_message_is_escaped_for_mrkdwn_exactly_once(
    tmp_path: Path, slack_config: Config, slack_http: responses.RequestsMock
) -> None:
    text = message_text(deliver_to_slack(tmp_path, slack_config, slack_http))
    assert "<Acme" not in text and "Sons>" not in text, "a raw < or > would open a Slack link or mention"
    for twice in ("&amp;amp;", "&amp;lt;", "&amp;gt;"):
        assert twice not in text, f"the segment was escaped twice ({twice}): {text!r}"
    assert "for &lt;Acme &amp; Sons&gt; (payer)" in text, text  # the segment payer:<Acme & Sons>, as readers name it


def test_the_practice_name_and_headline_are_bold_in_slack(
    tmp_path: Path, slack_config: Config, slack_http: responses.RequestsMock
) -> None:
    text = message_text(deliver_to_slack(tmp_path, slack_config, slack_http))
    assert text.startswith("*Maple Street Clinic*\n"), text
    assert "• *Critical: Initial denial rate for &lt;Acme &amp; Sons&gt; (payer)*" in text, text


def test_a_slack_message_carries_no_phi_and_no_secret(
    tmp_path: Path, slack_config: Config, slack_http: responses.RequestsMock, postgres_url: str
) -> None:
    payload = deliver_to_slack(tmp_path, slack_config, slack_http)
    everything = json.dumps(payload, ensure_ascii=False)
    for secret in (*SLACK_TOKENS, "slack://", "hooks.slack.com", postgres_url, "mailto:", "127.0.0.1"):
        assert secret not in everything, f"{secret!r} leaked into the Slack payload"
    for pattern in PHI_PATTERNS:
        assert not pattern.search(message_text(payload)), f"{pattern.pattern} matched the Slack message"


def test_a_slack_500_is_retried_on_the_next_delivery_and_sent_once_while_email_is_sent_once(
    tmp_path: Path, slack_config: Config, slack_http: responses.RequestsMock, smtp_server: CapturingSMTPServer
) -> None:
    slack_answers(slack_http, 500, 200)
    notification_id = critical_alert_for_a_special_segment(tmp_path, slack_config)
    slack, email = channel_tagged(slack_config, "slack"), channel_tagged(slack_config, "email")
    with session_scope() as session:
        with pytest.raises(DeliveryIncomplete):
            deliver(session, slack_config, notification_id)
        assert session.get_one(Notification, notification_id).status == "pending"
        assert len(slack_posts(slack_http)) == 1
        assert len(smtp_server.messages) == 1

        report = deliver(session, slack_config, notification_id)
        assert (report.sent, report.skipped, report.failed) == ([slack.label], [email.label], [])
        assert session.get_one(Notification, notification_id).status == "sent"
        attempts = [(a.channel_key, a.outcome, a.error) for a in session.scalars(
            select(DeliveryAttempt).order_by(DeliveryAttempt.id))]

    assert [(key, outcome) for key, outcome, _ in attempts] == [
        (slack.key, "failed"), (email.key, "sent"), (slack.key, "sent")]
    assert "500" in str(attempts[0][2]) and "transient" in str(attempts[0][2])
    assert all(token not in str(attempts[0][2]) for token in SLACK_TOKENS), "the error names the URL's secret"
    first, second = slack_posts(slack_http)
    assert message_text(first) == message_text(second), "the retry sends the same message"
    assert len(smtp_server.messages) == 1, "the email target took it the first time and is not sent it again"
    # A third pass finds nothing left to do.
    with session_scope() as session:
        assert deliver(session, slack_config, notification_id).claimed is False
    assert len(slack_posts(slack_http)) == 2
