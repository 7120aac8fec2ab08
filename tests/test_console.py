"""The console's HTTP surface against real PostgreSQL (Flask's test client in this process): login with right,
wrong and missing credentials, CSRF on every form, every page and action refused without a session, security
headers, /healthz, /readyz and /metrics, and the actions recorded with who did them. The browser test
(tests/test_console_browser.py) drives the same pages in Chromium with a real Celery worker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from typer.testing import CliRunner

from config import load_config
from config.settings import get_settings
from storage.db import session_scope
from storage.models import Alert, Rerun, Silence
from tests.conftest import TEST_CONFIG
from tests.test_end_to_end import recent_months
from worker.cli import cli
from worker.console.app import SECURITY_HEADERS, create_console
from worker.console.users import load_users, parse_users, user_entry

PASSWORD = "correct horse battery staple"
ACTIONS = ["/alerts/1/acknowledge", "/silences", "/reruns/ingest", "/reruns/evaluate", "/reruns/pull",
           "/reruns/digest", "/logout"]


@pytest.fixture
def console(vw_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Flask]:
    users_file = tmp_path / "users"
    users_file.write_text(f"# operators\n{user_entry('alice', PASSWORD)}\n", encoding="utf-8")
    monkeypatch.setenv("VENDORWATCH_CONSOLE_USERS_FILE", str(users_file))
    monkeypatch.setenv("VENDORWATCH_CONSOLE_SECRET_KEY", "a-test-signing-key-of-some-length")
    monkeypatch.setenv("VENDORWATCH_CONSOLE_METRICS_TOKEN", "scrape-token-123456")
    get_settings.cache_clear()
    month = recent_months(1)[0]
    feed = tmp_path / "feed.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,{month},10.4\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,2026-10,lots\n")
    assert CliRunner().invoke(cli, ["ingest", str(feed)]).exit_code == 0
    assert CliRunner().invoke(cli, ["ingest", str(bad)]).exit_code == 3
    settings = get_settings()
    app = create_console(settings, load_users(settings), lambda: load_config(TEST_CONFIG))
    app.config["TESTING"] = True
    yield app


def token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def log_in(client: FlaskClient, password: str = PASSWORD, name: str = "alice") -> int:
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": name, "password": password, "csrf_token": token(page),
                                           "next": "/"})
    return response.status_code


def firing_alert() -> int:
    with session_scope() as session:
        return session.scalars(select(Alert.id).where(Alert.state == "firing")).one()


def test_every_page_and_action_wants_a_session(console: Flask) -> None:
    client = console.test_client()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    for path in ACTIONS[:-1]:
        assert client.post(path, data={}).status_code in (400, 401)  # no CSRF token, and no session
    page = client.get("/login").get_data(as_text=True)
    for path in ACTIONS[:-1]:
        assert client.post(path, data={"csrf_token": token(page)}).status_code == 401, path
    assert firing_alert() and not console_rows(Silence) and not console_rows(Rerun)


def console_rows(model: type) -> list[object]:
    with session_scope() as session:
        return list(session.scalars(select(model)))


def test_wrong_and_missing_credentials_are_refused(console: Flask) -> None:
    client = console.test_client()
    assert log_in(client, password="wrong") == 401
    assert log_in(client, name="mallory", password=PASSWORD) == 401
    assert log_in(client, password="") == 401
    assert client.get("/").status_code == 302
    page = client.get("/login").get_data(as_text=True)
    # Right credentials without the CSRF token: refused too.
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 400
    assert client.post("/login", data={"username": "alice", "password": PASSWORD,
                                       "csrf_token": token(page) + "x"}).status_code == 400
    assert log_in(client) == 302 and client.get("/").status_code == 200


def test_a_session_signed_with_another_key_is_no_session(console: Flask) -> None:
    other = console.test_client()
    client = console.test_client()
    client.set_cookie("vendorwatch_session", "eyJ1c2VyIjoiYWxpY2UifQ.forged.signature")
    assert client.get("/").status_code == 302
    assert log_in(other) == 302 and other.get("/").status_code == 200


def test_security_headers_and_cookie_flags(console: Flask) -> None:
    client = console.test_client()
    response = client.get("/login")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    client.get("/login")
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token(page)})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # An open redirect after login is not possible.
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token(page),
                                           "next": "//evil.example/"})
    assert response.headers["Location"] == "/"


def test_the_page_shows_status_alerts_files_outbox_and_acts(console: Flask) -> None:
    client = console.test_client()
    assert log_in(client) == 302
    page = client.get("/").get_data(as_text=True)
    for expected in ("Maple Street Clinic", "ClaimRight Billing", "denial_rate", "critical", "bad.csv",
                     "row 2, column value: not a number", "Outbox", "Acknowledge", "Silence"):
        assert expected in page, expected
    alert_id = firing_alert()
    response = client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": token(page)},
                           follow_redirects=True)
    assert f"Alert {alert_id} acknowledged by alice" in response.get_data(as_text=True)
    with session_scope() as session:
        assert session.get(Alert, alert_id).acknowledged_by == "alice"  # type: ignore[union-attr]
    # Acknowledged already: said, not a crash.
    response = client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": token(page)},
                           follow_redirects=True)
    assert response.status_code == 200
    response = client.post("/silences", data={"csrf_token": token(page), "practice": "maple-clinic",
                                              "vendor": "claimright", "duration": "3d", "reason": ""},
                           follow_redirects=True)
    assert "A reason is required" in response.get_data(as_text=True) and not console_rows(Silence)
    response = client.post("/silences", data={"csrf_token": token(page), "practice": "maple-clinic",
                                              "vendor": "claimright", "duration": "3d", "reason": "vendor migrating"},
                           follow_redirects=True)
    assert "claimright silenced for Maple Street Clinic" in response.get_data(as_text=True)
    [silence] = console_rows(Silence)
    assert (silence.vendor_id, silence.created_by, silence.kpi) == ("claimright", "alice", None)  # type: ignore[attr-defined]
    response = client.post("/reruns/evaluate", data={"csrf_token": token(page), "practice": "maple-clinic"},
                           follow_redirects=True)
    assert "Enqueued alerts.evaluate" in response.get_data(as_text=True)
    [rerun] = console_rows(Rerun)
    assert (rerun.task, rerun.requested_by, rerun.arguments["practice_id"]) == (  # type: ignore[attr-defined]
        "alerts.evaluate", "alice", "maple-clinic")
    assert client.post("/reruns/shutdown", data={"csrf_token": token(page)}).status_code == 404


def test_probes_and_metrics(console: Flask) -> None:
    client = console.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    body = ready.get_json()
    assert ready.status_code == 200 and body["ready"] is True, body
    assert body["checks"]["database"]["ok"] is True and body["checks"]["beat"]["ok"] is None  # embedded broker
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    metrics = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123456"})
    assert metrics.status_code == 200
    assert 'vendorwatch_files_total{kind="feed",outcome="rejected"} 1.0' in metrics.get_data(as_text=True)


def test_readyz_says_not_ready_when_the_database_is_away(console: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDORWATCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/none")
    get_settings.cache_clear()
    response = console.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["database"]["ok"] is False


def test_user_lists_are_checked() -> None:
    assert set(parse_users("a:x$y b:z  # c:w", "env")) == {"a", "b"}
    for broken in ("alice", "alice:h alice:h", ":hash"):
        with pytest.raises(ValueError, match="line 1"):
            parse_users(broken, "env")
