"""The Celery app, its settings and the beat schedule.

Broker: VENDORWATCH_BROKER_URL (redis://... in production). Unset, kombu's filesystem transport under
<data_dir>/broker: no server, one machine only, and a task in flight when the worker is killed is lost (the
transport cannot redeliver it); the next inbox scan or scheduled evaluation redoes the work.
"""

from __future__ import annotations

import logging
from pathlib import Path

from celery import Celery, signals
from celery.schedules import crontab
from celery.signals import worker_process_init

from config import secrets
from config.settings import Settings, get_settings
from worker import metrics

# The tasks are Celery shared tasks (tasks/ never imports this module): each app that includes them gets its own
# copy, and `task.delay()` sends through the current app, which importing this module makes ours.
TASK_MODULES = ["tasks.ingest", "tasks.evaluate", "tasks.deliver", "tasks.digest", "tasks.pull", "tasks.pulse",
                "tasks.heartbeat", "tasks.retention"]
# The longest task may run this long before the worker kills it ...
TASK_TIME_LIMIT = 600
# ... and Redis hands an unacknowledged task to another worker only after this long. It must stay well above the
# time limit, or a slow task would run twice while acks_late holds its acknowledgement.
VISIBILITY_TIMEOUT = 3600


def broker_options(settings: Settings) -> tuple[str, dict[str, object]]:
    if settings.broker_url:
        return settings.broker_url, {"visibility_timeout": VISIBILITY_TIMEOUT}
    folder = (settings.data_dir / "broker").resolve()
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return "filesystem://localhost/", {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def beat_schedule() -> dict[str, dict[str, object]]:
    return {
        "scan-inbox": {
            "task": "ingest.scan_inbox",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
        "evaluate-daily": {
            "task": "alerts.evaluate",
            "schedule": crontab(minute=15, hour=6),
            "options": {"expires": 3600},
        },
        "retry-undelivered": {
            "task": "alerts.deliver_pending",
            "schedule": crontab(minute="*/10"),
            "options": {"expires": 540},
        },
        # Every 5 minutes, because each practice's send time (Monday 07:00 by default) falls at its own UTC
        # minute (India is UTC+5:30, a practice may pick 07:30); the (practice, week) claim makes the extra
        # runs harmless.
        "digest-due": {"task": "digest.due", "schedule": crontab(minute="*/5"), "options": {"expires": 240}},
        # Vendors publish at unknown times; a pull is cheap and the same bytes again write nothing.
        "pull-feeds": {
            "task": "feeds.pull_all",
            "schedule": crontab(minute=30, hour="*/6"),
            "options": {"expires": 3000},
        },
        # Daily, after the morning evaluation; the (practice, check-in) claim makes reruns and a second beat harmless.
        "pulse-reminders": {
            "task": "pulse.remind",
            "schedule": crontab(minute=40, hour=13),
            "options": {"expires": 3600},
        },
        # The dead man's switch (VENDORWATCH_HEARTBEAT_URL): a ping every 5 minutes while beat and a worker live.
        "heartbeat": {"task": "monitor.heartbeat", "schedule": crontab(minute="*/5"), "options": {"expires": 240}},
        # Retention (storage.retention): daily in the quiet hours, in small batches that never hold long locks.
        "purge-old": {
            "task": "maintenance.purge",
            "schedule": crontab(minute=20, hour=3),
            "options": {"expires": 3600},
        },
    }


def beat_options(settings: Settings) -> dict[str, object]:
    """On Redis, beat is highly available: celery-redbeat keeps the schedule in Redis behind a lock, so a second
    `vendorwatch beat` (or `worker --beat`) waits as a standby and takes over when the active one stops renewing
    the lock. Each beat renews it on every tick, at most every lock/5 seconds. The embedded broker serves one
    machine, so there Celery's file-based scheduler stays."""
    if not (settings.broker_url or "").startswith(("redis://", "rediss://")):
        return {}
    return {
        "beat_scheduler": "worker.beat.ResilientRedBeatScheduler",
        "redbeat_redis_url": settings.broker_url,
        "redbeat_redis_options": {},  # not the broker's transport options, which redbeat would borrow
        "redbeat_key_prefix": "vendorwatch:beat:",
        "redbeat_lock_key": "vendorwatch:beat:lock",
        "redbeat_lock_timeout": settings.beat_lock_seconds,
        "beat_max_loop_interval": max(1, settings.beat_lock_seconds // 5),
    }


def create_app(settings: Settings) -> Celery:
    broker_url, transport_options = broker_options(settings)
    # Not current on creation: a second app made here (a test's producer, `status`'s client) must not take over
    # the shared tasks' `.delay()` from the deployment's app below.
    app = Celery("vendorwatch", broker=broker_url, backend=settings.result_backend, include=TASK_MODULES,
                 set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_TIME_LIMIT - 60,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker outage of any length
        task_serializer="json",
        accept_content=["json"],
        result_expires=86400,
        timezone="UTC",
        beat_schedule=beat_schedule(),
        beat_schedule_filename=str(Path(settings.data_dir) / "celerybeat-schedule"),
        worker_hijack_root_logger=False,
        task_default_queue="vendorwatch",
    )
    app.conf.update(beat_options(settings))
    if (settings.broker_url or "").startswith(("redis://", "rediss://")):
        from worker.broker import TRANSPORT

        app.conf.broker_transport = TRANSPORT  # kombu's Redis transport, minus a crash on connection loss
    if settings.embedded_broker:
        # The filesystem transport has no fanout for remote control commands across machines; keep it local.
        app.conf.worker_enable_remote_control = False
    return app


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def redact_celery_logs(logger: logging.Logger, **_: object) -> None:
    """Celery adds its own handlers when the worker or beat starts; each gets the secret-masking filter."""
    secrets.install(logger)
    secrets.install()


app = create_app(get_settings())
metrics.install()  # task durations and delivery attempts, counted in whichever process runs them
app.set_default()  # every thread, Celery's pool threads too, sends the shared tasks through this app
app.set_current()


@worker_process_init.connect
def _fresh_pools_in_each_child(**_: object) -> None:
    from storage.db import forget_inherited_connections

    forget_inherited_connections()
