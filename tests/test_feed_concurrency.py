"""Two workers ingesting the same file at once store it once: the unique feed_file.sha256 makes the second claim
wait for the first transaction and then fail, so it writes nothing (SPEC: idempotency is a database fact).

Both through two `vendorwatch ingest` processes started together, and through the inbox with a real Celery
worker on Redis that is handed the same file twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from celery import Celery
from sqlalchemy import func, select

from config import BUNDLED_DIR
from storage.db import session_scope
from storage.models import FeedFile, FeedRejection, Observation, ObservationRevision
from tests.conftest import TEST_CONFIG, channel_environment, subprocess_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.worker_process import BIN, running_worker

PERIODS = [f"2026-{month:02d}" for month in range(1, 11)]
# Values inside every threshold and flat over the periods: a big file, but nothing to alert on.
KPIS = {"days_in_ar": 38.0, "denial_rate": 5.0, "clean_claim_rate": 97.0, "net_collection_rate": 97.5}
PROVIDERS = 500
ROWS = len(PERIODS) * len(KPIS) * PROVIDERS  # 20,000


def big_feed(shift: float, practice: str | None = None, vendor: str | None = None) -> str:
    """A valid long CSV of ROWS rows: KPIs x periods x provider segments; `shift` moves every value."""
    prefix = f"{practice},{vendor}," if practice else ""
    lines = [("practice,vendor," if practice else "") + "kpi,period,segment,value"]
    for kpi, base in KPIS.items():
        for period in PERIODS:
            lines += [f"{prefix}{kpi},{period},provider:p{n:04d},{base + shift:.2f}" for n in range(PROVIDERS)]
    return "\n".join(lines) + "\n"


def count(database_url: str, model: type) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def revisions_by_feed_file(database_url: str) -> dict[int, int]:
    with session_scope(database_url) as session:
        query = select(ObservationRevision.new_feed_file_id, func.count()).group_by(
            ObservationRevision.new_feed_file_id
        )
        return {feed_id: int(n) for feed_id, n in session.execute(query)}


def ingest_twice_at_once(path: Path, env: dict[str, str]) -> list[dict[str, object]]:
    """Start two `vendorwatch ingest` processes on the same file before waiting for either."""
    command = [str(BIN / "vendorwatch"), "--json", "ingest", "--no-evaluate", str(path)]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, f"exit {process.returncode}:\n{stdout}\n{stderr}"
        [file] = json.loads(stdout)["files"]
        outcomes.append(file)
    return outcomes


def test_two_processes_ingesting_the_same_file_at_once_store_it_once_and_revise_once(
    tmp_path: Path, postgres_url: str
) -> None:
    env = subprocess_env({
        "VENDORWATCH_DATABASE_URL": postgres_url,
        "VENDORWATCH_CONFIG": str(BUNDLED_DIR),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
    })

    for round_number in range(3):
        path = tmp_path / f"acme-round-{round_number}.csv"
        path.write_text(big_feed(shift=round_number / 10, practice="oakridge-fm", vendor="acme-billing"))

        outcomes = ingest_twice_at_once(path, env)

        assert sorted(str(o["status"]) for o in outcomes) == ["accepted", "duplicate"], outcomes
        [accepted] = [o for o in outcomes if o["status"] == "accepted"]
        assert accepted["rows"] == ROWS
        if round_number == 0:
            assert (accepted["inserted"], accepted["revised"]) == (ROWS, 0)
        else:
            assert (accepted["inserted"], accepted["revised"]) == (0, ROWS), "every value moved: all revised"
        assert count(postgres_url, FeedFile) == round_number + 1, "one feed_file row per distinct file"
        assert count(postgres_url, Observation) == ROWS, "the rows once, whoever won"
        revisions = revisions_by_feed_file(postgres_url)
        assert sorted(revisions.values()) == [ROWS] * round_number, "exactly one set of revisions per correction"
    assert count(postgres_url, FeedRejection) == 0


def drop_in_inbox(inbox: Path, name: str, text: str) -> Path:
    folder = inbox / "maple-clinic" / "claimright"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    settled = time.time() - 30
    os.utime(path, (settled, settled))
    return path


def wait_for(condition: Callable[[], object], log: list[str], message: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}; worker log:\n" + "\n".join(log[-40:]))


def matching(log: list[str], pattern: re.Pattern[str]) -> list[str]:
    return [line for line in list(log) if pattern.search(line)]


INGEST_TASK_DONE = re.compile(r"Task ingest\.file\[[^\]]+\] (succeeded|raised|failed)")
EVALUATE_TASK_DONE = re.compile(r"Task alerts\.evaluate\[[^\]]+\] (succeeded|raised|failed)")
INGESTED = re.compile(r"ingested claimright-big\.csv: (\w+)")


def test_a_worker_handed_the_same_inbox_file_twice_at_once_stores_it_once_and_archives_it(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    data_dir = tmp_path / "var"
    env = subprocess_env({
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(data_dir),
        "VENDORWATCH_DATABASE_URL": postgres_url,
        "VENDORWATCH_BROKER_URL": redis_url,
        **channel_environment(teams_server, smtp_server),
    })
    inbox = data_dir / "inbox"

    with running_worker(env) as log:
        path = drop_in_inbox(inbox, "claimright-big.csv", big_feed(shift=0))
        # Two ingest.file messages for one file, published back to back (two scans listing it at once did the same,
        # but only when the second scan ran before the first ingest finished: on a busy machine it did not).
        client = Celery(broker=redis_url)
        for _ in range(2):
            client.send_task("ingest.file", args=[str(path)], queue="vendorwatch")
        wait_for(lambda: len(matching(log, INGEST_TASK_DONE)) == 2, log, "both ingest.file tasks to finish")
        wait_for(lambda: matching(log, EVALUATE_TASK_DONE), log, "the evaluation the accepted file asked for")
        # The worker's own shutdown (SIGTERM to its pool) is not under test: read the log as it was before it.
        during = list(log)

    assert not any((inbox / "maple-clinic" / "claimright").iterdir()), "the file left the inbox"
    archived = list((data_dir / "archive").rglob("*claimright-big.csv"))
    assert len(archived) == 1, archived
    assert not list(data_dir.glob("quarantine/**/*.csv"))
    assert count(postgres_url, FeedFile) == 1
    assert count(postgres_url, Observation) == ROWS
    assert count(postgres_url, ObservationRevision) == 0
    assert count(postgres_url, FeedRejection) == 0
    assert not [line for line in during if "Traceback" in line or " ERROR" in line], "\n".join(during)
    assert all("succeeded" in line for line in matching(during, INGEST_TASK_DONE)), "\n".join(during)
    # The second task either lost the race for the feed_file row (duplicate) or found the file already gone.
    outcomes = sorted(match[1] for line in during if (match := INGESTED.search(line)))
    assert outcomes in (["accepted"], ["accepted", "duplicate"]), outcomes
