"""Delivery with real parts: the digest through Apprise to an aiosmtpd server on loopback, claimed per
(practice, week) in PostgreSQL so that reruns, racing beats and a killed worker still send it once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from alerts.messages import render_operator
from config import Config, Practice
from digest.build import build_digest
from digest.mail import DigestNotSent
from digest.render import render_digest
from digest.send import due_digests, needs_sending, preview, send_digest, send_region_digest, tell_operator
from storage.db import session_scope
from storage.models import DigestRun, Notification
from tests.conftest import channel_environment, subprocess_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_digest_seed import AFTER_SEND, WEEK, World, world
from tests.worker_process import BIN

__all__ = ["world"]  # the fixture, imported for pytest
LEADERSHIP = ["manager@maple.example", "owner@maple.example"]


def maple(world: World) -> Practice:
    practice = world.config.practice("maple-clinic")
    assert practice is not None
    return practice


def send(world: World, *, resend: bool = False, now: dt.datetime = AFTER_SEND, config: Config | None = None,
         dry_run_dir: Path | None = None) -> str:
    with session_scope() as session:
        return send_digest(session, config or world.config, maple(world), WEEK, resend=resend, now=now,
                           dry_run_dir=dry_run_dir).status


def run_of(key: str = "maple-clinic", week: str = WEEK) -> DigestRun:
    with session_scope() as session:
        return session.scalars(select(DigestRun).where(DigestRun.practice_id == key, DigestRun.week == week)).one()


def parts_of(message: EmailMessage) -> dict[str, str]:
    """Each leaf part's decoded text, with SMTP's CRLF line ends read back as the newlines that were sent."""
    return {part.get_content_type(): part.get_content().replace("\r\n", "\n") for part in message.walk()
            if not part.is_multipart()}


def test_the_mail_server_receives_one_multipart_message_for_the_whole_leadership(
    world: World, smtp_server: CapturingSMTPServer
) -> None:
    assert send(world) == "sent"

    [mail] = smtp_server.wait_for(1)
    with session_scope() as session:
        expected = render_digest(build_digest(session, world.config, maple(world), WEEK, AFTER_SEND))
    message = mail.message
    assert sorted(mail.rcpt_tos) == LEADERSHIP
    assert str(message["To"]) == "owner@maple.example, manager@maple.example"
    assert str(message["Subject"]) == expected.subject
    assert str(message["Subject"]).startswith("Action needed: ClaimRight Billing initial denial rate is 10.4%")
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    parts = parts_of(message)
    assert parts["text/plain"] == expected.text
    assert parts["text/html"].rstrip("\n") == expected.html.rstrip("\n")
    assert str(message["Message-ID"]) == f"<digest-maple-clinic-{WEEK}@localhost>"
    assert str(message["Auto-Submitted"]) == "auto-generated"
    run = run_of()
    assert (run.status, run.subject, run.error) == ("sent", expected.subject, None)


def test_a_rerun_sends_nothing_and_resend_sends_again_on_purpose(
    world: World, smtp_server: CapturingSMTPServer
) -> None:
    assert send(world) == "sent"
    assert send(world) == "already_sent"
    assert send(world, resend=True) == "sent"

    first, second = smtp_server.wait_for(2)
    time.sleep(0.5)
    assert len(smtp_server.messages) == 2
    assert first.message["Message-ID"] != second.message["Message-ID"]


def test_two_beats_racing_send_each_digest_once(world: World, smtp_server: CapturingSMTPServer) -> None:
    """Two beats find the same digests due at the same moment and each sends what it found."""
    start = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            with session_scope() as session:
                due = due_digests(session, world.config, AFTER_SEND)
                start.wait(timeout=10)
                for item in due:
                    if item.kind == "practice":
                        practice = world.config.practice(item.key)
                        assert practice is not None
                        outcome = send_digest(session, world.config, practice, item.week, now=AFTER_SEND)
                    else:
                        outcome = send_region_digest(session, world.config, item.key, item.week, now=AFTER_SEND)
                    outcomes.append(f"{outcome.key}:{outcome.status}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    messages = smtp_server.wait_for(3)
    time.sleep(0.5)
    assert len(smtp_server.messages) == 3, [m.rcpt_tos for m in smtp_server.messages]
    assert sorted(tuple(sorted(m.rcpt_tos)) for m in messages) == sorted(
        [tuple(LEADERSHIP), ("owner@pine.example",), ("lead@mountain.example",)])
    by_key: dict[str, list[str]] = {}
    for outcome in outcomes:
        key, status = outcome.rsplit(":", 1)
        by_key.setdefault(key, []).append(status)
    assert set(by_key) == {"maple-clinic", "pine-family", "region:mountain"}
    for statuses in by_key.values():  # the loser finds the week sent, or still being sent by the winner
        assert sorted(statuses)[0] in ("already_sent", "in_progress") and sorted(statuses)[1] == "sent", by_key


@pytest.fixture
def silent_smtp() -> Iterator[int]:
    """A port that accepts connections and never says a word: a send blocks there, as on a hung mail server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_worker_killed_mid_send_leaves_a_claim_that_is_sent_once_it_is_stale(
    world: World, smtp_server: CapturingSMTPServer, teams_server: CapturingHTTPSServer, silent_smtp: int,
    postgres_url: str,
) -> None:
    env = subprocess_env({
        "VENDORWATCH_CONFIG": str(world.config_dir),
        "VENDORWATCH_DATA_DIR": str(world.tmp / "var"),
        "VENDORWATCH_DATABASE_URL": postgres_url,
        **channel_environment(teams_server, smtp_server),
        "TEST_DIGEST_EMAIL_URL": f"mailto://127.0.0.1:{silent_smtp}?mode=insecure&from=vendorwatch@localhost",
    })
    worker = subprocess.Popen([str(BIN / "vendorwatch"), "digest", "--practice", "maple-clinic", "--week", WEEK],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not claimed() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert claimed(), "the worker never claimed the week"
        time.sleep(0.5)  # well inside the send: it is waiting for the mail server's greeting
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    killed_at = run_of().claimed_at

    assert send(world) == "in_progress"  # a rerun right away does not send a second copy
    stale = killed_at + dt.timedelta(minutes=31)
    assert needs_sending(run_of(), stale) and not needs_sending(run_of(), stale - dt.timedelta(minutes=2))
    with time_machine.travel(stale, tick=False), session_scope() as session:
        outcome = send_digest(session, world.config, maple(world), WEEK)  # the beat's retry, or a rerun
    assert outcome.status == "sent"
    [mail] = smtp_server.wait_for(1)
    assert sorted(mail.rcpt_tos) == LEADERSHIP
    assert run_of().status == "sent"


def claimed() -> bool:
    with session_scope() as session:
        return session.scalar(select(DigestRun.status).where(DigestRun.practice_id == "maple-clinic")) == "claimed"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_mail_server_that_is_down_releases_the_claim_for_a_retry_and_the_operator_is_told(
    world: World, smtp_server: CapturingSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import load_config

    monkeypatch.setenv("TEST_DIGEST_EMAIL_URL", f"mailto://127.0.0.1:{closed_port()}?mode=insecure&from=vw@localhost")
    down = load_config(world.config_dir)

    with pytest.raises(DigestNotSent) as refused, time_machine.travel(AFTER_SEND, tick=False):
        send(world, config=down)
    assert not refused.value.permanent
    run = run_of()
    assert run.status == "failed" and "ConnectionRefusedError" in (run.error or "")
    with session_scope() as session:
        due_soon = {item.key for item in due_digests(session, world.config, AFTER_SEND + dt.timedelta(minutes=30))}
        due_later = {item.key for item in due_digests(session, world.config, AFTER_SEND + dt.timedelta(minutes=61))}
        assert "maple-clinic" not in due_soon and "maple-clinic" in due_later  # the beat retries it hourly
        notification_id = tell_operator(session, world.config, "maple-clinic", WEEK, run.error or "")
    with session_scope() as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None and notification.kind == "operator"
        assert notification.payload["facts"] == {"key": "maple-clinic", "week": WEEK, "region": None}
        text = render_operator(notification.payload, notification.title, "text").body
        assert "vendorwatch rerun digest --practice maple-clinic --week 2026-W48" in text

    assert send(world) == "sent"  # the retry, with the server back
    assert len(smtp_server.wait_for(1)) == 1


def test_a_digest_channel_that_is_not_email_is_rejected_for_good(world: World) -> None:
    not_email = dataclasses.replace(world.config, channels=[
        dataclasses.replace(channel, url="json://127.0.0.1:9/") if "digest" in channel.tags else channel
        for channel in world.config.channels])

    with pytest.raises(DigestNotSent) as refused:
        send(world, config=not_email)

    assert refused.value.permanent and run_of().status == "rejected"


def test_the_regional_leader_gets_the_roll_up_once_per_week(world: World, smtp_server: CapturingSMTPServer) -> None:
    with session_scope() as session:
        first = send_region_digest(session, world.config, "mountain", WEEK, now=AFTER_SEND)
        again = send_region_digest(session, world.config, "mountain", WEEK, now=AFTER_SEND)

    assert (first.status, again.status) == ("sent", "already_sent")
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["lead@mountain.example"]
    assert str(mail.message["Subject"]).startswith("Mountain region: 2 of 2 practices need attention")
    assert run_of("region:mountain").status == "sent"


def test_preview_writes_exactly_what_is_sent(world: World, smtp_server: CapturingSMTPServer, tmp_path: Path) -> None:
    with session_scope() as session:
        files = preview(session, world.config, maple(world), WEEK, tmp_path / "preview", now=AFTER_SEND)
    assert send(world) == "sent"
    [mail] = smtp_server.wait_for(1)

    assert [path.suffix for path in files] == [".html", ".txt", ".eml"]
    html, text, eml = files
    sent = parts_of(mail.message)
    assert text.read_text(encoding="utf-8") == sent["text/plain"]
    assert html.read_text(encoding="utf-8").rstrip("\n") == sent["text/html"].rstrip("\n")
    saved = BytesParser(policy=default_policy).parse(eml.open("rb"))
    assert parts_of(saved) == sent
    assert (saved["Subject"], saved["To"], saved["Message-ID"]) == (
        mail.message["Subject"], mail.message["To"], mail.message["Message-ID"])


def test_a_dry_run_writes_the_files_and_real_delivery_still_sends_that_week(
    world: World, smtp_server: CapturingSMTPServer, tmp_path: Path
) -> None:
    dry = dataclasses.replace(world.config, dry_run=True)

    assert send(world, config=dry, dry_run_dir=tmp_path / "dry") == "dry_run"
    assert sorted(p.name for p in (tmp_path / "dry").iterdir()) == [
        f"digest-maple-clinic-{WEEK}.{suffix}" for suffix in ("eml", "html", "txt")]
    assert smtp_server.messages == []
    assert send(world) == "sent"  # switching dry_run off does not skip the week
    assert len(smtp_server.wait_for(1)) == 1
