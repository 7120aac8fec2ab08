"""835 remittances through the real stack (issue 16): a worker on Redis and PostgreSQL takes them from
inbox/<practice>/remits/, deletes an accepted one, quarantines a rejected one and tells the operator by email,
with segment numbers and element positions, never the file's contents."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from remits.keys import KEY_VARIABLE
from remits.synthetic import render_835
from storage.db import session_scope
from storage.models import Notification, RemitMonth
from tests.conftest import stack_env
from tests.support.smtp_capture import CapturedMessage, CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_remits import KEY
from tests.test_remits_input import PLANTED, planted_file
from tests.worker_process import running_worker, vendorwatch

PRACTICE = "maple-clinic"  # tests/fixtures/config


def drop(inbox: Path, name: str, data: bytes) -> Path:
    folder = inbox / PRACTICE / "remits"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    settled = time.time() - 30
    os.utime(path, (settled, settled))
    return path


def operator_message(smtp_server: CapturingSMTPServer, timeout: float = 30) -> CapturedMessage:
    """The operator's email about the rejected file (the accepted one's evaluation may email 'feed late' too)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in smtp_server.wait_for(1, timeout=max(deadline - time.monotonic(), 0.1))
                 if "835 remittance rejected" in str(m.message["Subject"])]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, [str(m.message["Subject"]) for m in smtp_server.messages]
            return found[0]
        time.sleep(0.2)


def stored_months(database_url: str) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(RemitMonth)) or 0)


def test_an_inbox_835_is_stored_and_deleted_and_a_bad_one_quarantined_with_the_operator_told(
    tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    data_dir = tmp_path / "var"
    env = {**stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server), KEY_VARIABLE: KEY}
    with running_worker(env):
        good = drop(data_dir / "inbox", "era-good.835", render_835(planted_file()))
        bad = drop(data_dir / "inbox", "era-bad.835", render_835(planted_file(total=Decimal("1.00"))))
        vendorwatch("rerun", "ingest", env=env)
        message = operator_message(smtp_server)
        deadline = time.monotonic() + 30
        while good.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    assert not good.exists() and not bad.exists()
    assert stored_months(postgres_url) == 2  # Northwind March, Bluebird April
    assert not list((data_dir / "archive").rglob("*.835")), "an accepted 835 names patients: not archived"
    [quarantined] = list((data_dir / "quarantine").rglob("*era-bad.835"))
    errors = json.loads(quarantined.with_name(quarantined.name + ".errors.json").read_text())
    assert errors["errors"][0]["message"].startswith("segment 4, element 2: the amounts do not balance: BPR02")
    subject = str(message.message["Subject"])
    assert "835 remittance rejected" in subject and "era-bad.835" in subject
    body = message.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "segment 4, element 2" in body
    assert not any(planted in body or planted in subject for planted in PLANTED)
    with session_scope(postgres_url) as session:
        payloads = json.dumps([n.payload for n in session.scalars(select(Notification))])
    assert not any(planted in payloads for planted in PLANTED)


def test_an_inbox_835_waits_for_the_key_and_the_operator_is_told_once_not_at_every_scan(
    tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    data_dir = tmp_path / "var"
    env = {key: value for key, value in stack_env(data_dir, postgres_url, redis_url, teams_server,
                                                  smtp_server).items() if key != KEY_VARIABLE}
    with running_worker({**env, KEY_VARIABLE: ""}):
        waiting = drop(data_dir / "inbox", "era-waiting.835", render_835(planted_file()))
        for _scan in range(3):
            vendorwatch("rerun", "ingest", env=env)
        told = waiting_messages(smtp_server, timeout=30)
        time.sleep(3)  # the later scans' tasks have run by now: they must not tell again
        told = waiting_messages(smtp_server, timeout=0.1)

    assert len(told) == 1, [str(m.message["Subject"]) for m in smtp_server.messages]
    subject = str(told[0].message["Subject"])
    assert f"835 remittances waiting: {KEY_VARIABLE} is not set" in subject
    body = told[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "maple-clinic/remits/era-waiting.835" in body and "stay there unread" in body
    assert waiting.exists(), "the file must wait in the inbox for the key, not be quarantined"
    assert stored_months(postgres_url) == 0


def waiting_messages(smtp_server: CapturingSMTPServer, timeout: float) -> list[CapturedMessage]:
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in smtp_server.messages if "835 remittances waiting" in str(m.message["Subject"])]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
