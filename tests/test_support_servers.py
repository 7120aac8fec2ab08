"""Verify the loopback test servers and service helpers in tests/support against real clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import apprise
import psycopg
import pytest
import redis
import requests

from tests.support.services import (
    POSTGRES_ADMIN_URL,
    REDIS_LOCK_KEY,
    database_name,
    drop_postgres_database,
    ensure_postgres,
    ensure_redis,
    free_redis_db,
    fresh_postgres_database,
    release_redis_db,
)
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CannedResponse, CapturedRequest, CapturingHTTPSServer

# Shapes accepted by apprise's workflows plugin: workflow ^[A-Z0-9_-]+$ (i), signature ^[a-z0-9_-]+$ (i).
WORKFLOW_ID = "abc123def456"
SIGNATURE = "sigABC123xyz"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CI-wide HTTPS_PROXY must not swallow calls meant for our 127.0.0.1 servers.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def https_server() -> Iterator[CapturingHTTPSServer]:
    with CapturingHTTPSServer() as server:
        yield server


def _workflows_url(port: int) -> str:
    return f"workflows://127.0.0.1:{port}/{WORKFLOW_ID}/{SIGNATURE}"


def _notify(url: str, **kwargs: Any) -> bool:
    notifier = apprise.Apprise()
    assert notifier.add(url), f"apprise rejected {url}"
    return bool(notifier.notify(**kwargs))


def _card_texts(request: CapturedRequest) -> list[str]:
    payload = request.json()
    return [block.get("text", "") for block in payload["attachments"][0]["content"]["body"]]


# -- HTTPS capture -------------------------------------------------------------------
def test_workflows_notification_arrives_as_adaptive_card(
    https_server: CapturingHTTPSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_server.ca_bundle_path))

    url = _workflows_url(https_server.port)
    sent = _notify(url, title="Vendor SLA breach", body="Acme Billing missed 3 KPIs")

    assert sent
    [request] = https_server.wait_for(1)
    assert request.method == "POST"
    assert request.path == f"/workflows/{WORKFLOW_ID}/triggers/manual/paths/invoke"
    assert request.query["sig"] == [SIGNATURE]
    assert request.header("content-type") == "application/json"
    payload = request.json()
    assert payload["type"] == "message"
    assert payload["attachments"][0]["contentType"] == ADAPTIVE_CARD
    texts = _card_texts(request)
    assert "Vendor SLA breach" in texts
    assert "Acme Billing missed 3 KPIs" in texts


def test_workflows_without_ca_bundle_fails_certificate_verification(
    https_server: CapturingHTTPSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without our CA the system trust store is used, which must reject the server.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)

    sent = _notify(_workflows_url(https_server.port), title="t", body="b")

    assert not sent
    # The server saw the client abort the handshake, and no HTTP request ever got through.
    https_server.wait_for_tls_failures(1)
    assert https_server.requests == []
    # Same client stack, but surfacing the reason apprise only logs.
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(https_server.base_url, timeout=5)


def test_status_sequence_is_answered_in_order_then_repeats_last(monkeypatch: pytest.MonkeyPatch) -> None:
    with CapturingHTTPSServer(responses=[500, 200]) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle_path))
        hook = f"{server.base_url}/hook?a=1"
        statuses = [requests.post(hook, json={}, timeout=5).status_code for _ in range(3)]

        assert statuses == [500, 200, 200]
        assert [r.query for r in server.wait_for(3)] == [{"a": ["1"]}] * 3


def test_workflows_404_makes_apprise_report_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    with CapturingHTTPSServer(responses=[404]) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle_path))

        assert not _notify(_workflows_url(server.port), title="t", body="b")
        assert len(server.wait_for(1)) == 1


def test_callable_responder_sees_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    def echo_path(request: CapturedRequest) -> CannedResponse:
        return CannedResponse(status=201, body=request.path.encode(), headers={"Content-Type": "text/plain"})

    with CapturingHTTPSServer(responses=echo_path) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle_path))
        response = requests.put(f"{server.base_url}/items/7", data=b"payload", timeout=5)

        assert (response.status_code, response.text) == (201, "/items/7")
        [request] = server.wait_for(1)
        assert (request.method, request.body) == ("PUT", b"payload")


def test_https_wait_for_times_out_with_what_it_got(https_server: CapturingHTTPSServer) -> None:
    with pytest.raises(AssertionError, match="expected 1 request"):
        https_server.wait_for(1, timeout=0.2)


# -- SMTP capture --------------------------------------------------------------------
def _mailto_url(port: int) -> str:
    # Plain SMTP, no STARTTLS, no AUTH: see tests/support/smtp_capture.py for why each part is needed.
    return f"mailto://127.0.0.1:{port}?mode=insecure&from=vendorwatch@localhost&to=a@example.com"


def _parts_by_type(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): str(part.get_content()) for part in message.iter_parts()}


def test_apprise_mailto_html_arrives_as_multipart_alternative() -> None:
    with CapturingSMTPServer() as smtp:
        sent = _notify(
            _mailto_url(smtp.port),
            title="Weekly vendor digest",
            body="<p>Acme Billing: <b>3</b> KPIs missed</p>",
            body_format=apprise.NotifyFormat.HTML,
        )

        assert sent
        [captured] = smtp.wait_for(1)
    message = captured.message
    assert captured.rcpt_tos == ["a@example.com"]
    assert captured.mail_from == "vendorwatch@localhost"
    assert message["To"] == "a@example.com"
    assert message["Subject"] == "Weekly vendor digest"
    assert message.get_content_type() == "multipart/alternative"
    parts = _parts_by_type(message)
    assert set(parts) == {"text/plain", "text/html"}
    assert "<b>3</b>" in parts["text/html"]
    assert "3 KPIs missed" in parts["text/plain"]


def test_smtp_wait_for_times_out_with_what_it_got() -> None:
    with CapturingSMTPServer() as smtp, pytest.raises(AssertionError, match="expected 1 message"):
        smtp.wait_for(1, timeout=0.2)


# -- Redis ---------------------------------------------------------------------------
def test_free_redis_db_is_empty_leased_and_usable() -> None:
    ensure_redis()
    url = free_redis_db()
    key = f"vendorwatch:test:{uuid.uuid4().hex}"
    try:
        with redis.Redis.from_url(url) as client:
            assert client.get(REDIS_LOCK_KEY) is not None, "db should be leased"
            assert client.dbsize() == 1, "only the lease key should be present"
            client.set(key, "value")
            assert client.get(key) == b"value"
    finally:
        release_redis_db(url)
    # Not dbsize() == 0: a concurrent run may lease this db the moment we release it.
    with redis.Redis.from_url(url) as client:
        assert not client.exists(key)


def test_free_redis_db_never_hands_out_a_leased_db() -> None:
    first, second = free_redis_db(), free_redis_db()
    try:
        assert first != second
        assert not first.endswith("/0") and not second.endswith("/0")
    finally:
        release_redis_db(first)
        release_redis_db(second)


# -- PostgreSQL ----------------------------------------------------------------------
def _database_exists(name: str) -> bool:
    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_fresh_postgres_database_is_usable_and_dropped() -> None:
    ensure_postgres()
    url = fresh_postgres_database()
    name = database_name(url)
    try:
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/vw_test_")
        assert _database_exists(name)
        # An open session must not stop the drop: that is what terminating backends is for.
        lingering = psycopg.connect(_libpq_url(url), autocommit=True)
        lingering.execute("CREATE TABLE vendor (id serial PRIMARY KEY, name text NOT NULL)")
        lingering.execute("INSERT INTO vendor (name) VALUES ('Acme Billing')")
        assert lingering.execute("SELECT name FROM vendor").fetchall() == [("Acme Billing",)]
    finally:
        drop_postgres_database(url)
    assert not _database_exists(name)
    lingering.close()


def test_a_database_made_from_the_template_is_at_the_head_migration(migrated_template: str) -> None:
    from storage.db import engine_for, head_revision, schema_revision

    url = fresh_postgres_database(template=migrated_template)
    try:
        assert url != migrated_template
        assert schema_revision(url) == head_revision() is not None
        with psycopg.connect(_libpq_url(url)) as conn:
            tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"alembic_version", "feed_file", "notification", "alert"} <= tables
    finally:
        engine_for(url).dispose()
        drop_postgres_database(url)
    assert not _database_exists(database_name(url))


def test_drop_refuses_system_database() -> None:
    with pytest.raises(ValueError, match="refusing"):
        drop_postgres_database(POSTGRES_ADMIN_URL)
