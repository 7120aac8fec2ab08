"""The walking skeleton, end to end, with real parts: a feed file dropped in the inbox, a real Celery worker on
Redis, PostgreSQL, a Teams Workflows endpoint behind TLS on loopback, and an SMTP server."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

from celery import Celery
from sqlalchemy import func, select

from storage.db import session_scope
from storage.models import DigestRun, FeedFile, Notification
from tests.conftest import TEST_CONFIG, stack_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.worker_process import running_worker, vendorwatch


def recent_months(count: int) -> list[str]:
    """The last `count` complete months, oldest first (feeds may not report the future)."""
    first_of_month = dt.date.today().replace(day=1)
    months = []
    for _ in range(count):
        first_of_month = (first_of_month - dt.timedelta(days=1)).replace(day=1)
        months.append(first_of_month.strftime("%Y-%m"))
    return list(reversed(months))


def drop_in_inbox(inbox: Path, name: str, text: str) -> Path:
    folder = inbox / "maple-clinic" / "claimright"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    settled = time.time() - 30
    os.utime(path, (settled, settled))
    return path


def wait_until(condition: object, timeout: float = 30, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}")


def card_text(request_body: dict[str, object]) -> str:
    """All text of an Adaptive Card message, for assertions on what a practice manager reads."""
    assert request_body["type"] == "message"
    attachment = request_body["attachments"][0]  # type: ignore[index]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    return json.dumps(attachment["content"], ensure_ascii=False)


def count(model: type, database_url: str) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_breach_in_the_inbox_alerts_teams_and_email_once_then_resolves(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server)
    inbox = data_dir / "inbox"
    breach_month, recovery_month = recent_months(2)
    breach = f"kpi,period,value\ndenial_rate,{breach_month},10.4\n"

    with running_worker(env) as log:
        drop_in_inbox(inbox, f"claimright-{breach_month}.csv", breach)
        vendorwatch("rerun", "ingest", env=env)
        [card] = teams_server.wait_for(1, timeout=30)
        [email] = smtp_server.wait_for(1, timeout=30)

        text = card_text(card.json())
        for expected in (
            "Maple Street Clinic",
            "ClaimRight Billing",
            "Initial denial rate",
            "10.4%",
            "10.0%",
            "Critical",
        ):
            assert expected in text, f"{expected!r} missing from the Teams card: {text}"
        assert card.path == "/workflows/abc123def456/triggers/manual/paths/invoke"
        assert email.rcpt_tos == ["alerts@maple.example"]
        assert "Initial denial rate" in str(email.message["Subject"])

        # The same bytes again, under another name: a duplicate, nothing new sent.
        drop_in_inbox(inbox, f"claimright-{breach_month}-again.csv", breach)
        vendorwatch("rerun", "ingest", env=env)
        wait_until(
            lambda: not any((inbox / "maple-clinic" / "claimright").iterdir()), message="inbox emptied"
        )
        wait_until(
            lambda: len(list((data_dir / "archive").rglob("*.csv"))) == 2, message="second file archived"
        )
        assert count(FeedFile, postgres_url) == 1
        assert count(Notification, postgres_url) == 1

        # Next month's value is inside the contract: the alert resolves, and Teams hears it.
        drop_in_inbox(
            inbox, f"claimright-{recovery_month}.csv", f"kpi,period,value\ndenial_rate,{recovery_month},9.1\n"
        )
        vendorwatch("rerun", "ingest", env=env)
        requests = teams_server.wait_for(2, timeout=30)
        resolved = card_text(requests[1].json())
        assert "Resolved" in resolved and "9.1%" in resolved and "Initial denial rate" in resolved
        smtp_server.wait_for(2, timeout=30)
        time.sleep(1)
        assert len(teams_server.requests) == 2, "\n".join(log[-30:])
        assert count(Notification, postgres_url) == 2


def test_the_weekly_digest_arrives_once_with_html_and_text_parts(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    env = stack_env(tmp_path / "var", postgres_url, redis_url, teams_server, smtp_server)
    feed = tmp_path / "claimright.csv"
    month = recent_months(1)[0]
    feed.write_text(
        f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,days_in_ar,{month},38.5\n"
        f"maple-clinic,claimright,denial_rate,{month},6.2\n"
    )
    vendorwatch("ingest", str(feed), env=env)

    with running_worker(env):
        vendorwatch("rerun", "digest", "--practice", "maple-clinic", "--week", "2026-W48", env=env)
        # One message to the practice's whole leadership in one SMTP transaction: all of them get it, or none.
        [message] = smtp_server.wait_for(1, timeout=30)
        vendorwatch("rerun", "digest", "--practice", "maple-clinic", "--week", "2026-W48", env=env)
        time.sleep(3)

    assert len(smtp_server.messages) == 1, "a rerun without --resend must not send the week's digest again"
    assert sorted(message.rcpt_tos) == ["manager@maple.example", "owner@maple.example"]
    mail = message.message
    assert "Maple Street Clinic" in str(mail["Subject"]) and "2026-W48" in str(mail["Subject"])
    parts = {part.get_content_type(): part.get_content() for part in mail.walk() if not part.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "<table" in parts["text/html"] and "Days in A/R" in parts["text/html"]
    assert "Days in A/R" in parts["text/plain"] and "38.5 days" in parts["text/plain"]


def test_a_bad_file_in_the_inbox_is_quarantined_with_its_errors_and_the_operator_is_told(
    tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server)
    month = recent_months(1)[0]
    with running_worker(env):
        drop_in_inbox(data_dir / "inbox", "broken.csv",
                      f"kpi,period,value\ndenial_rate,{month},10.4\ndenial_rat,{month},12\ndays_in_ar,{month},-3\n")
        vendorwatch("rerun", "ingest", env=env)
        [message] = smtp_server.wait_for(1, timeout=30)

    [quarantined] = [p for p in (data_dir / "quarantine").rglob("*broken.csv")]
    errors = json.loads(quarantined.with_name(quarantined.name + ".errors.json").read_text())
    assert [(e["row"], e["column"]) for e in errors["errors"]] == [(3, "kpi"), (4, "value")]
    assert "did you mean denial_rate" in errors["errors"][0]["message"]
    subject = str(message.message["Subject"])
    assert "Feed rejected" in subject and "broken.csv" in subject and "2 problems" in subject
    body = message.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "row 3, column kpi" in body and "row 4, column value" in body
    assert count(Notification, postgres_url) == 1
    assert teams_server.requests == [], "operator messages follow the operator route (email), not Teams"
    from storage.models import Observation

    assert count(Observation, postgres_url) == 0, "nothing of a rejected file is stored, not even its good row"


def test_two_beats_enqueueing_digest_due_at_once_send_the_weeks_digest_once(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    """Two beats (a misconfigured HA pair) each enqueue digest.due at the same moment; two workers on Redis take
    one each and both find maple-clinic due. The claim in digest_run lets exactly one of them send."""
    config_dir = tmp_path / "config"
    shutil.copytree(TEST_CONFIG, config_dir)
    practices = config_dir / "practices.yaml"
    # Due from Monday 00:00 local time, so the digest is due whenever in the week this test runs.
    practices.write_text(practices.read_text().replace(
        "    digest_to: [owner@maple.example, manager@maple.example]\n",
        "    digest_to: [owner@maple.example, manager@maple.example]\n"
        "    digest: {weekday: monday, time: \"00:00\"}\n",
    ))
    env = stack_env(tmp_path / "var", postgres_url, redis_url, teams_server, smtp_server, config_dir)
    beat = Celery(broker=redis_url)
    with running_worker(env) as first_log, running_worker(env) as second_log:
        for _ in range(2):
            beat.send_task("digest.due", queue="vendorwatch")
        [message] = smtp_server.wait_for(1, timeout=60)
        wait_until(lambda: sum("digest.due" in line and "succeeded" in line for line in first_log + second_log) == 2,
                   message="both digest.due runs to finish")
        time.sleep(2)
        wait_until(lambda: weekly_runs(first_log + second_log, "received") == weekly_runs(
            first_log + second_log, "succeeded"), message="every digest.weekly run to finish")

    assert len(smtp_server.messages) == 1, "two beats must not send the week's digest twice"
    assert sorted(message.rcpt_tos) == ["manager@maple.example", "owner@maple.example"]
    with session_scope(postgres_url) as session:
        runs = session.execute(select(DigestRun.practice_id, DigestRun.status)).all()
    assert ("maple-clinic", "sent") in runs
    assert sum(1 for practice_id, _ in runs if practice_id == "maple-clinic") == 1


def weekly_runs(log: list[str], word: str) -> int:
    return sum("digest.weekly[" in line and word in line for line in log)


def test_a_duplicate_from_a_worker_that_died_before_asking_for_evaluation_still_gets_evaluated(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    """The file's rows were committed but the worker died before enqueueing the evaluation (simulated with
    `ingest --no-evaluate`); its redelivered task finds a duplicate, and must still ask for the evaluation, or
    the breach would wait for the daily run."""
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server)
    [month] = recent_months(1)
    breach = f"kpi,period,value\ndenial_rate,{month},10.4\n"
    committed = tmp_path / "committed.csv"
    committed.write_text(breach)
    vendorwatch("ingest", "--no-evaluate", "--practice", "maple-clinic", "--vendor", "claimright", str(committed),
                env=env)
    assert count(FeedFile, postgres_url) == 1 and count(Notification, postgres_url) == 0

    with running_worker(env):
        drop_in_inbox(data_dir / "inbox", f"claimright-{month}.csv", breach)
        vendorwatch("rerun", "ingest", env=env)
        [card] = teams_server.wait_for(1, timeout=30)

    assert "Initial denial rate" in card_text(card.json()) and "10.4%" in card_text(card.json())
    assert count(FeedFile, postgres_url) == 1, "the duplicate stored nothing"
