"""Prometheus metrics (the official prometheus-client): state read from the database at scrape time, task events
counted where they happen.

State (files, rows, alerts, the outbox, digests, feed lateness) is computed from the database on each scrape, so
every process that serves /metrics tells the same truth whatever worker did the work. Task events (durations,
delivery attempts) are counted in the process that ran them; Celery's prefork children are separate processes, so
with PROMETHEUS_MULTIPROC_DIR set (a folder the worker and the console share) each writes its own file there and a
scrape adds them up (prometheus_client.multiprocess). The variable must be set before the process starts: the
library picks its storage when imported. `vendorwatch worker` empties the folder at start (counters restart from 0,
which Prometheus reads as a reset).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import Counter as TallyCounter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from config import Config
from config.secrets import redact
from config.settings import Settings
from pulse.staff import STAFF_VENDOR_ID
from storage.history import REMITS_FOLDER
from storage.models import (
    Alert,
    DeliveryAttempt,
    DigestRun,
    FeedFile,
    FeedRejection,
    Notification,
    RemitFile,
    utcnow,
)

log = logging.getLogger(__name__)
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# registry=None: not in the library's global registry; each scrape builds its own (exposition below).
TASK_SECONDS = Histogram("vendorwatch_task_duration_seconds", "Celery task run time, by task and outcome.",
                         ["task", "outcome"], registry=None,
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
DELIVERY_ATTEMPTS = Counter("vendorwatch_delivery_attempts", "Tries to send a notification to one target, by "
                            "outcome and channel.", ["outcome", "channel"], registry=None)
_started: dict[str, float] = {}


def multiprocess_dir() -> Path | None:
    folder = os.environ.get(MULTIPROC_VARIABLE)
    return Path(folder) if folder else None


def reset_multiprocess_dir() -> None:
    """At worker start, before the pool forks: the files of processes gone before are no one's any more."""
    folder = multiprocess_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def counted(record: Callable[..., None]) -> Callable[..., None]:
    """Counting must never break the work it counts (a delivery's flush, a task): a failure is logged, once a
    process, and the work goes on."""

    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            record(*args, **kwargs)
        except Exception as exc:
            if not getattr(guarded, "warned", False):
                log.warning("metrics: could not count %s: %s", record.__name__, redact(f"{type(exc).__name__}: {exc}"))
                guarded.warned = True  # type: ignore[attr-defined]

    guarded.__name__ = record.__name__
    return guarded


@counted
def task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.monotonic()


@counted
def task_finished(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id or "", None)
    if started is not None and task is not None:
        TASK_SECONDS.labels(task=task.name, outcome=(state or "unknown").lower()).observe(time.monotonic() - started)


@counted
def attempt_recorded(mapper: Any, connection: Any, attempt: DeliveryAttempt) -> None:
    """Counted as the attempt row is written, wherever delivery ran (a worker child, the CLI)."""
    DELIVERY_ATTEMPTS.labels(outcome=attempt.outcome, channel=attempt.channel_label).inc()


def install() -> None:
    """Hook the counters to Celery's task signals and to delivery's attempt rows (once per process)."""
    from celery import signals
    from sqlalchemy import event

    if (folder := multiprocess_dir()) is not None:
        folder.mkdir(parents=True, exist_ok=True)
    signals.task_prerun.connect(task_started, weak=False, dispatch_uid="vendorwatch-metrics-start")
    signals.task_postrun.connect(task_finished, weak=False, dispatch_uid="vendorwatch-metrics-end")
    if not event.contains(DeliveryAttempt, "after_insert", attempt_recorded):
        event.listen(DeliveryAttempt, "after_insert", attempt_recorded)


class DatabaseCollector(Collector):
    """The state metrics, read from the database (and the beat lock in Redis) on every scrape."""

    def __init__(self, settings: Settings, config: Callable[[], Config], now: Callable[[], dt.datetime] = utcnow):
        self.settings, self.config, self.now = settings, config, now

    def collect(self) -> Iterator[Metric]:
        from storage.db import session_scope

        up = GaugeMetricFamily("vendorwatch_database_up", "1 when the database answered this scrape.")
        try:
            with session_scope() as session:
                metrics = list(database_metrics(session, self.config(), self.now()))
        except Exception as exc:  # a scrape must answer even with the database down: that is what it reports
            log.warning("metrics: database unreadable: %s", redact(f"{type(exc).__name__}: {exc}")[:300])
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from metrics
        yield from beat_metrics(self.settings)


def database_metrics(session: Session, config: Config, now: dt.datetime) -> Iterator[Metric]:
    yield from feed_metrics(session)
    yield alerts_metric(session)
    yield from outbox_metrics(session, now)
    yield from digest_metrics(session)
    yield digest_schedule_metric(config, now)
    yield lateness_metric(session, config, now.date())


def feed_metrics(session: Session) -> Iterator[Metric]:
    """Counters from tables never purged: feed_file, remit_file and feed_rejection rows stay (retention keeps
    them). Every kind and outcome is reported, 0 included, so a rate() has a series from the first scrape."""
    files = CounterMetricFamily("vendorwatch_files", "Files received, by kind (feed, pulse, remits) and outcome.",
                                labels=["kind", "outcome"])
    accepted = files_by_kind(session, FeedFile)
    accepted["remits"] += session.scalar(select(func.count()).select_from(RemitFile)) or 0
    rejected = files_by_kind(session, FeedRejection)
    for kind in FILE_KINDS:
        files.add_metric([kind, "accepted"], accepted[kind])
        files.add_metric([kind, "rejected"], rejected[kind])
    rows = CounterMetricFamily("vendorwatch_rows_stored", "Rows of accepted feed files.")
    rows.add_metric([], session.scalar(select(func.coalesce(func.sum(FeedFile.rows), 0))) or 0)
    yield files
    yield rows


FILE_KINDS = ("feed", "pulse", "remits")


def files_by_kind(session: Session, model: type[FeedFile] | type[FeedRejection]) -> TallyCounter[str]:
    """Rows of feed_file or feed_rejection by kind, told by the vendor each delivery was recorded under: a pulse
    export's is the synthetic staff-pulse vendor, a rejected 835's the remits inbox folder (remits.ingest)."""
    vendor = model.vendor_id
    kind = case((vendor == STAFF_VENDOR_ID, "pulse"), (vendor == REMITS_FOLDER, "remits"), else_="feed")
    found: TallyCounter[str] = TallyCounter()
    for name, count in session.execute(select(kind, func.count()).group_by(kind)):
        found[name] += count
    return found


def alerts_metric(session: Session) -> Metric:
    gauge = GaugeMetricFamily("vendorwatch_alerts", "Alerts by state and severity.", labels=["state", "severity"])
    query = select(Alert.state, Alert.severity, func.count()).group_by(Alert.state, Alert.severity)
    for state, severity, count in session.execute(query):
        gauge.add_metric([state, severity], count)
    return gauge


def outbox_metrics(session: Session, now: dt.datetime) -> Iterator[Metric]:
    waiting = Notification.status.in_(("pending", "sending"))
    count, oldest = session.execute(select(func.count(), func.min(Notification.created_at)).where(waiting)).one()
    pending = GaugeMetricFamily("vendorwatch_notifications_pending", "Notifications waiting in the outbox.")
    pending.add_metric([], count)
    age = GaugeMetricFamily("vendorwatch_notifications_oldest_pending_age_seconds",
                            "Seconds the oldest waiting notification has waited (0 when none waits).")
    age.add_metric([], max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest is not None else 0.0)
    yield pending
    yield age


def digest_metrics(session: Session) -> Iterator[Metric]:
    sent = CounterMetricFamily("vendorwatch_digests_sent", "Weekly digests sent, by practice.", labels=["practice"])
    last = GaugeMetricFamily("vendorwatch_digest_last_sent_timestamp_seconds",
                             "When each practice's digest last went out (Unix time).", labels=["practice"])
    query = (select(DigestRun.practice_id, func.count(), func.max(DigestRun.sent_at))
             .where(DigestRun.status == "sent").group_by(DigestRun.practice_id))
    for practice, count, sent_at in session.execute(query):
        sent.add_metric([practice], count)
        if sent_at is not None:
            last.add_metric([practice], as_utc(sent_at).timestamp())
    yield sent
    yield last


def digest_schedule_metric(config: Config, now: dt.datetime) -> Metric:
    """This (practice-local) week's send time of each practice's digest: the rules compare the last sent with it."""
    from zoneinfo import ZoneInfo

    from digest.schedule import iso_week, scheduled_at

    gauge = GaugeMetricFamily("vendorwatch_digest_scheduled_timestamp_seconds",
                              "This week's send time of each practice's digest (Unix time).", labels=["practice"])
    for practice in config.practices:
        if practice.digest_to:
            week = iso_week(now.astimezone(ZoneInfo(practice.timezone)).date())
            gauge.add_metric([practice.id], scheduled_at(practice.digest, practice.timezone, week).timestamp())
    return gauge


def lateness_metric(session: Session, config: Config, today: dt.date) -> Metric:
    from feeds.status import feed_status

    gauge = GaugeMetricFamily("vendorwatch_feed_days_late", "Days a vendor's expected feed is late (0: on time).",
                              labels=["practice", "vendor"])
    for row in feed_status(session, config, today):
        gauge.add_metric([row["practice"], row["vendor"]], row["days_late"] if row["late"] else 0)
    return gauge


def beat_metrics(settings: Settings) -> Iterator[Metric]:
    """On Redis: is a beat holding its lock, and how long since it renewed it (worker.status.check_beat). The
    embedded broker has no lock: nothing is reported, rather than a guess."""
    from worker.status import check_beat, probe

    check = probe("beat", lambda: check_beat(settings))
    if check.healthy is None:
        return
    up = GaugeMetricFamily("vendorwatch_beat_up", "1 when a beat holds the schedule lock.")
    up.add_metric([], 1 if check.healthy else 0)
    yield up
    if check.age_seconds is not None:
        age = GaugeMetricFamily("vendorwatch_beat_lock_age_seconds", "Seconds since the beat renewed its lock.")
        age.add_metric([], check.age_seconds)
        yield age


def as_utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def exposition(settings: Settings, config: Callable[[], Config]) -> bytes:
    """One scrape: task events (every process's, in multiprocess mode; else this one's) and the state."""
    registry = CollectorRegistry(auto_describe=False)
    folder = multiprocess_dir()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        MultiProcessCollector(registry, path=str(folder))
    else:
        registry.register(TASK_SECONDS)
        registry.register(DELIVERY_ATTEMPTS)
    registry.register(DatabaseCollector(settings, config))
    return generate_latest(registry)
