"""`vendorwatch status`: is the monitor itself doing its job? One check per part, each with a verdict.

Unhealthy (exit 1) when: the broker or the database does not answer, the database is not migrated to head, no
worker answers a ping (on Redis; the embedded broker has no remote control, so there it is 'unknown'), no beat holds
the redbeat lock (on Redis), a notification has waited in the outbox longer than PENDING_LIMIT, or a file has waited
in the inbox longer than INBOX_LIMIT. Every probe has a short timeout, so a dead service makes the command fail
fast, never hang. Texts pass through config.secrets.redact: an error from a driver may quote its URL.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from config.secrets import redact
from config.settings import Settings

# Delivery retries a failing target for about half an hour (30 s doubling, 6 times) and deliver_pending runs every
# 10 minutes; a notification pending for an hour is stuck.
PENDING_LIMIT = dt.timedelta(hours=1)
# The inbox is scanned every minute (and `watch` reacts within seconds); a file waiting 15 minutes is not moving.
INBOX_LIMIT = dt.timedelta(minutes=15)
PROBE_SECONDS = 3.0
BEAT_LOCK_KEY = "vendorwatch:beat:lock"
CHECK_NAMES = ("broker", "database", "workers", "beat", "outbox", "inbox")


@dataclass
class Check:
    name: str
    healthy: bool | None  # None: cannot be known here (e.g. no remote control on the embedded broker)
    detail: str
    age_seconds: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def probe(name: str, run: Callable[[], Check]) -> Check:
    """A check that raises is an unhealthy check, said in one line."""
    try:
        return run()
    except Exception as exc:  # any failure of a probe is its answer, not a crash of the command
        return Check(name, False, redact(f"{type(exc).__name__}: {exc}")[:300])


def check_broker(settings: Settings) -> Check:
    from worker.app import app

    if settings.embedded_broker:
        return Check("broker", True, "embedded (filesystem) broker")
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=PROBE_SECONDS)
    return Check("broker", True, f"{connection.transport_cls} reachable")


def check_database(settings: Settings) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from storage.db import MIGRATIONS_DIR, get_engine

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with get_engine().connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        return Check("database", False, f"reachable, schema at {current}, head is {head}: run `vendorwatch db upgrade`")
    return Check("database", True, f"reachable, schema at head ({head})")


def check_workers(settings: Settings) -> Check:
    from worker.app import app

    if settings.embedded_broker:
        return Check("workers", None, "unknown: the embedded broker has no remote control")
    replies = app.control.inspect(timeout=PROBE_SECONDS / 2).ping() or {}
    if not replies:
        return Check("workers", False, "no worker answered a ping")
    return Check("workers", True, f"{len(replies)} answered: {', '.join(sorted(replies))}")


def check_beat(settings: Settings) -> Check:
    """On Redis, the active beat renews the redbeat lock on every tick (TTL reset to the lock timeout), so its
    age since the last renewal is the timeout minus the time left."""
    import redis

    if not (settings.broker_url or "").startswith(("redis://", "rediss://")):
        return Check("beat", None, "unknown: no lock on the embedded broker (one beat, one machine)")
    client = redis.Redis.from_url(
        settings.broker_url or "", socket_connect_timeout=PROBE_SECONDS, socket_timeout=PROBE_SECONDS
    )
    with client:
        holder, left_ms = client.get(BEAT_LOCK_KEY), client.pttl(BEAT_LOCK_KEY)
    if holder is None:
        return Check("beat", False, f"no beat holds the lock {BEAT_LOCK_KEY}: nothing is scheduled")
    renewed = max(0.0, settings.beat_lock_seconds - left_ms / 1000)
    token = (holder.decode(errors="replace") if isinstance(holder, bytes) else str(holder))[:8]
    return Check("beat", True, f"lock {BEAT_LOCK_KEY} held by {token}..., renewed {renewed:.0f} s ago", renewed)


def check_outbox(now: dt.datetime) -> Check:
    from sqlalchemy import func, select

    from storage.db import session_scope
    from storage.models import Notification

    with session_scope() as session:
        oldest = session.scalar(
            select(func.min(Notification.created_at)).where(Notification.status.in_(("pending", "sending")))
        )
    if oldest is None:
        return Check("outbox", True, "no notification waiting")
    age = (now - as_utc(oldest)).total_seconds()
    healthy = age <= PENDING_LIMIT.total_seconds()
    return Check("outbox", healthy, f"oldest waiting notification: {describe_age(age)} (limit "
                 f"{describe_age(PENDING_LIMIT.total_seconds())})", age)


def check_inbox(inbox: Path, now: float) -> Check:
    from intake.inbox import list_inbox

    ages = [now - path.stat().st_mtime for path in list_inbox(inbox)]
    if not ages:
        return Check("inbox", True, "no file waiting")
    age = max(ages)
    healthy = age <= INBOX_LIMIT.total_seconds()
    return Check("inbox", healthy, f"{len(ages)} file(s) waiting, the oldest for {describe_age(age)} (limit "
                 f"{describe_age(INBOX_LIMIT.total_seconds())})", age)


def as_utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def describe_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def system_status(settings: Settings, now: dt.datetime | None = None) -> list[Check]:
    """Every check; those that need a service that is down say so instead of waiting for it."""
    now = now or dt.datetime.now(dt.UTC)
    broker = probe("broker", lambda: check_broker(settings))
    database = probe("database", lambda: check_database(settings))
    unreachable = "unknown: the broker is unreachable"
    checks = [broker, database]
    if broker.healthy is False:
        checks += [Check("workers", False, unreachable), Check("beat", False, unreachable)]
    else:
        checks += [probe("workers", lambda: check_workers(settings)), probe("beat", lambda: check_beat(settings))]
    if database.healthy:
        checks.append(probe("outbox", lambda: check_outbox(now)))
    else:
        checks.append(Check("outbox", False, "unknown: see the database check"))
    checks.append(probe("inbox", lambda: check_inbox(settings.inbox, time.time())))
    return checks


def is_healthy(checks: list[Check]) -> bool:
    return all(check.healthy is not False for check in checks)
