"""`vendorwatch demo`: the real flow (inbox files -> Celery tasks -> outbox -> dry-run delivery -> digest) on
embedded defaults: SQLite and the filesystem broker under ./var/demo, an in-process worker thread (a real Celery
worker consuming from the broker, not eager mode), and the bundled config/ with delivery in dry-run.

The bundled feeds end with period 2026-10, so the demo evaluates as of DEMO_AS_OF: run any day, it tells the
same story.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

DATA_DIR = Path(__file__).resolve().parent / "data"
DEMO_AS_OF = dt.date(2026, 11, 23)
# In the story each file came three weeks after its period ended (October's the day before DEMO_AS_OF's
# Monday): the digest, dated that week, must not say a feed arrived today, after its own date.
ARRIVAL_LAG = dt.timedelta(days=22)
TASK_TIMEOUT = 120


def prepare_environment(home: Path) -> None:
    """Point every setting at the demo's own folder; never at the operator's broker or database."""
    from config import BUNDLED_DIR
    from config.settings import get_settings

    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    os.environ.update(
        {
            "VENDORWATCH_DATA_DIR": str(home),
            "VENDORWATCH_CONFIG": str(BUNDLED_DIR),
            "VENDORWATCH_DRY_RUN": "true",
            "VENDORWATCH_RESULT_BACKEND": "cache+memory://",
            # issue 16: the demo's own database only; a real install sets its own secret
            "VENDORWATCH_REMIT_KEY": "demo-remit-key-not-a-secret",
        }
    )
    for name in ("VENDORWATCH_BROKER_URL", "VENDORWATCH_DATABASE_URL"):
        os.environ.pop(name, None)
    get_settings.cache_clear()


def stage_inbox(inbox: Path) -> list[Path]:
    """Copy the bundled files into inbox/<practice>/<vendor>/ as an SFTP drop would, settled (not mid-upload)."""
    staged = []
    settled = time.time() - 60
    for source in sorted([*DATA_DIR.rglob("*.csv"), *DATA_DIR.rglob("*.835")]):  # 835s: issue 16
        target = inbox / source.relative_to(DATA_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.utime(target, (settled, settled))
        staged.append(target)
    return staged


def run_demo(out_dir: Path, console: Console, home: Path = Path("var/demo")) -> dict[str, Any]:
    started = time.monotonic()
    prepare_environment(home.resolve())
    from config.settings import get_settings
    from storage.db import upgrade

    upgrade()
    settings = get_settings()
    files = stage_inbox(settings.inbox)
    console.print(f"Staged {len(files)} bundled files in {settings.inbox}")
    summary = run_tasks(files, out_dir, console)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print_digests(console, summary["digest_runs"])
    console.print(
        f"Done in {summary['seconds']} s. Digests: " + ", ".join(str(p) for p in summary["digests"])
    )
    return summary


def print_digests(console: Console, runs: list[dict[str, Any]]) -> None:
    """Each digest's subject line: the verdict leadership would read first on Monday."""
    console.print("\nWeekly digests (dry run), subject lines:", markup=False)
    for run in runs:
        console.print(f"  {run['key']}: {run['subject']}", markup=False, highlight=False)


def run_tasks(files: list[Path], out_dir: Path, console: Console) -> dict[str, Any]:
    from celery.contrib.testing.worker import start_worker

    from config.settings import get_settings
    from digest.region import regions_of
    from tasks.context import current_config
    from tasks.deliver import deliver_task
    from tasks.digest import regional_digest, weekly_digest
    from tasks.evaluate import evaluate_task
    from tasks.ingest import ingest_file
    from worker.app import create_app

    app = create_app(get_settings())
    for task in (ingest_file, evaluate_task, deliver_task, weekly_digest, regional_digest):
        task.bind(app)
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30):
        ingested = [ingest_file.delay(str(path), evaluate=False) for path in files]
        results = [result.get(timeout=TASK_TIMEOUT) for result in ingested]
        console.print(summarise_ingest(results))
        date_arrivals()
        evaluations = evaluate_task.delay(as_of=DEMO_AS_OF.isoformat()).get(timeout=TASK_TIMEOUT)
        wait_for_outbox()
        week = f"{DEMO_AS_OF.isocalendar()[0]}-W{DEMO_AS_OF.isocalendar()[1]:02d}"
        practices = [evaluation["practice"] for evaluation in evaluations]
        digests = [weekly_digest.delay(p, week, resend=True).get(timeout=TASK_TIMEOUT) for p in practices]
        digests += [
            regional_digest.delay(region, week, resend=True).get(timeout=TASK_TIMEOUT)
            for region in regions_of(current_config())
        ]
    sent = print_alerts(console)
    paths = write_outputs(out_dir, week)
    return {
        "ingested": results,
        "evaluations": evaluations,
        "alerts_sent": sent,
        "digests": [str(p) for p in paths],
        "digest_runs": digests,
        "week": week,
    }


def summarise_ingest(results: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return "Ingested through Celery: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def date_arrivals() -> None:
    """Stamp each bundled file as arriving when the story has it (ARRIVAL_LAG after its newest period, never
    after the day before DEMO_AS_OF), not on the real day the demo runs."""
    from sqlalchemy import func, select, update

    from storage.db import session_scope
    from storage.models import FeedFile, ObservationValue, PulseSurvey

    latest = dt.datetime.combine(DEMO_AS_OF - dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
    with session_scope() as session:
        newest = session.execute(select(ObservationValue.feed_file_id, func.max(ObservationValue.period_end))
                                 .group_by(ObservationValue.feed_file_id)).all()
        for feed_file_id, period_end in newest:
            arrived = min(latest, dt.datetime.combine(period_end + ARRIVAL_LAG, dt.time(12), tzinfo=dt.UTC))
            session.execute(update(FeedFile).where(FeedFile.id == feed_file_id).values(received_at=arrived))
            session.execute(update(PulseSurvey).where(PulseSurvey.feed_file_id == feed_file_id)
                            .values(received_at=arrived))


def wait_for_outbox(timeout: float = TASK_TIMEOUT) -> None:
    from sqlalchemy import func, select

    from storage.db import session_scope
    from storage.models import Notification

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            waiting = session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status.in_(("pending", "sending")))
            )
        if not waiting:
            return
        time.sleep(0.2)
    raise TimeoutError("the worker did not deliver the outbox in time")


def print_alerts(console: Console) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from alerts.messages import render_alert
    from storage.db import session_scope
    from storage.models import DeliveryAttempt, Notification

    sent = []
    with session_scope() as session:
        for notification in session.scalars(select(Notification).order_by(Notification.id)):
            channels = sorted(
                {
                    a.channel_label
                    for a in session.scalars(
                        select(DeliveryAttempt).where(DeliveryAttempt.notification_id == notification.id)
                    )
                }
            )
            console.print(f"\n[bold]Alert sent (dry run) to {', '.join(channels)}:[/bold]")
            text = render_alert(notification.payload, notification.title, "text").body
            console.print(f"{notification.title}\n{text}", highlight=False, markup=False)
            sent.append(
                {
                    "id": notification.id,
                    "title": notification.title,
                    "channels": channels,
                    "changes": notification.payload["changes"],
                }
            )
    return sent


def write_outputs(out_dir: Path, week: str) -> list[Path]:
    """Copy what the dry run 'sent' (digests with their whole email, regional roll-ups, alert messages) to ./out,
    as a user would look at them."""
    from config.settings import get_settings

    dry_run = get_settings().data_dir / "dry-run"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "alerts").mkdir(exist_ok=True)
    digests = []
    for path in sorted(dry_run.glob("*")):
        is_digest = path.name.startswith(("digest-", "region-"))
        target = out_dir / path.name if is_digest else out_dir / "alerts" / path.name
        shutil.copyfile(path, target)
        if is_digest and week in path.name:
            digests.append(target)
    return digests
