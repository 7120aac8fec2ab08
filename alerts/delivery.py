"""Send one outbox notification: claim it, send to each selected target once, record every attempt.

Claim is a conditional UPDATE (status pending -> sending), so two workers never send the same notification at
once. A target that already confirmed success is skipped on a retry. Each failure is classified: a transient one
("failed": a 5xx, a timeout, SMTP 4xx) leaves the row pending and raises DeliveryIncomplete, which the Celery task
retries with exponential backoff; a permanent one ("rejected": 404, invalid token, SMTP 5xx) is never tried again.
When only rejected targets remain, or the retries run out, the notification is "failed" and an operator alert goes
to the channels that did not fail.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import apprise
from sqlalchemy import ColumnElement, false, or_, select, update
from sqlalchemy.orm import Session

from alerts.messages import Rendered, channel_family, render_alert, render_operator
from alerts.operator import DeliveryFailed, enqueue_operator_alert
from config import Channel, Config
from config.secrets import redact
from storage.models import DeliveryAttempt, Notification, utcnow

log = logging.getLogger(__name__)
# Longer than the longest a delivery task may run (worker.app.TASK_TIME_LIMIT): a claim this old has lost its worker.
STALE_CLAIM = dt.timedelta(minutes=15)
# Passes over the targets a notification gets in all, across task chains and the 10-minute safety net; then it fails
# and the operator hears of it.
MAX_ROUNDS = 12

PERMANENT_HTTP = frozenset({400, 401, 403, 404, 410})
# Answers no retry can fix: Slack's error codes for a dead token, channel or webhook, and a URL Apprise cannot load.
PERMANENT_TEXTS = (
    "invalid_token", "invalid_auth", "not_authed", "token_revoked", "account_inactive",
    "channel_not_found", "channel_is_archived", "no_service", "could not load the channel url",
)
# Every Apprise HTTP plugin ends its failure warning with "error=<status>."
HTTP_STATUS = re.compile(r"\berror=(\d{3})\b")
# Our own rendering of an SMTP reply ("SMTP 535 ...") and Apprise's partial-refusal warning ("was refused: 550 ...").
SMTP_REPLY = re.compile(r"\bSMTP (\d{3})\b|\bwas refused: (\d{3})\b")
# smtplib errors print as (code, b'reply'), or {recipient: (code, b'reply')} when every recipient was refused.
SMTP_EXCEPTION = re.compile(r"\((\d{3}), b?['\"](.*?)['\"]\)")
# A service's machine-readable error: Slack's JSON "error" field, or a webhook's bare body such as b'no_service'.
SERVICE_ERROR = re.compile(r"\"error\"\s*:\s*\"([a-z_]+)\"|b'([a-z_]+)'")
NETWORK_PHRASES = (
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
)
WARNING_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
APPRISE_LOG = logging.getLogger("apprise")
_apprise_debug = threading.Lock()


class DeliveryIncomplete(Exception):
    """Some targets failed; the notification stays pending for a retry."""


@dataclass(frozen=True)
class Failure:
    """Why one target did not take a message, and whether trying again could help."""

    permanent: bool
    status: int | None
    reason: str

    def __str__(self) -> str:
        kind = "permanent" if self.permanent else "transient"
        return f"{kind}, status {self.status}: {self.reason}" if self.status else f"{kind}: {self.reason}"


@dataclass
class DeliveryReport:
    notification_id: int
    claimed: bool
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dry_run: list[str] = field(default_factory=list)
    operator_notification_id: int | None = None


def status_codes(reasons: Iterable[str]) -> list[tuple[str, int]]:
    codes: list[tuple[str, int]] = []
    for reason in reasons:
        codes += [("http", int(code)) for code in HTTP_STATUS.findall(reason)]
        codes += [("smtp", int(a or b)) for a, b in SMTP_REPLY.findall(reason)]
    return codes


def is_permanent_code(family: str, code: int) -> bool:
    # SMTP says it itself: 5yz replies are permanent, 4yz ones are worth another try.
    return code in PERMANENT_HTTP if family == "http" else 500 <= code < 600


def classify(reasons: list[str]) -> Failure:
    """Permanent on 400/401/403/404/410, SMTP 5xx or a known dead-token text; anything else may pass later."""
    codes = status_codes(reasons)
    permanent_codes = [code for family, code in codes if is_permanent_code(family, code)]
    lowered = " ".join(reasons).lower()
    permanent = bool(permanent_codes) or any(text in lowered for text in PERMANENT_TEXTS)
    status = permanent_codes[0] if permanent_codes else (codes[-1][1] if codes else None)
    return Failure(permanent=permanent, status=status, reason="; ".join(reasons) or "no reason given")


def claimable(now: dt.datetime, token: str | None = None) -> ColumnElement[bool]:
    """Pending, or claimed by a worker that is gone (stale), or claimed by `token` itself (the same task retrying
    after it lost the database mid-delivery)."""
    sending = Notification.status == "sending"
    mine = sending & (Notification.claim_token == token) if token else sending & false()
    return or_(Notification.status == "pending", sending & (Notification.claimed_at < now - STALE_CLAIM), mine)


def claim(session: Session, notification_id: int, now: dt.datetime, token: str | None = None) -> bool:
    """Take the notification for this worker and count the round; False if another worker holds it, it is
    finished, or its rounds are used up."""
    result = session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.rounds < MAX_ROUNDS, claimable(now, token))
        .values(status="sending", claimed_at=now, claim_token=token, rounds=Notification.rounds + 1)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def undelivered(session: Session, now: dt.datetime) -> list[tuple[int, bool]]:
    """Notifications that no live task is delivering: pending ones (their task was lost, say with a broker that
    restarted empty) and stale claims (their worker died, or lost the database, mid-delivery); with whether their
    rounds are used up."""
    rows = session.execute(
        select(Notification.id, Notification.rounds).where(claimable(now)).order_by(Notification.id)
    ).all()
    return [(notification_id, rounds >= MAX_ROUNDS) for notification_id, rounds in rows]


def targets_for(config: Config, tags: list[str], exclude: Sequence[str] = ()) -> list[Channel]:
    """The channels a notification goes to; `exclude` (channel keys) keeps an operator alert off the failed ones."""
    return [channel for channel in config.channels if channel.tags & set(tags) and channel.key not in exclude]


def render(notification: Notification, channel: Channel) -> Rendered:
    family = channel_family(channel.url)
    if notification.kind == "operator":
        return render_operator(notification.payload, notification.title, family)
    return render_alert(notification.payload, notification.title, family)


@contextmanager
def apprise_debug_kept_private() -> Iterator[None]:
    """Let Apprise log at DEBUG for one call, where the SMTP reply code of a failure lives.

    Those DEBUG lines also carry full URLs and payloads, so while the window is open they reach only the per-call
    result (its capture handler sits on Apprise's own logger), never our log handlers. The lock keeps two threads
    from restoring each other's saved level."""
    with _apprise_debug:
        level, propagate = APPRISE_LOG.level, APPRISE_LOG.propagate
        APPRISE_LOG.setLevel(logging.DEBUG)
        APPRISE_LOG.propagate = False
        try:
            yield
        finally:
            APPRISE_LOG.setLevel(level)
            APPRISE_LOG.propagate = propagate


def safe_details(debug_lines: Iterable[str]) -> list[str]:
    """Only the facts that classify a failure are taken from DEBUG lines (never a line itself, which may hold a
    URL): SMTP replies, a service's error code, and a few fixed network phrases."""
    details: list[str] = []
    for line in debug_lines:
        if line.startswith("Socket Exception"):
            if match := SMTP_EXCEPTION.search(line):
                details.append(f"SMTP {match[1]} {match[2][:200]}")
            details += [phrase for marker, phrase in NETWORK_PHRASES if marker in line]
        elif line.startswith("Response Details") and (match := SERVICE_ERROR.search(line)):
            details.append(f"service said {match[1] or match[2]}")
    return list(dict.fromkeys(details))


def send_to(channel: Channel, message: Rendered, notify_type: str) -> Failure | None:
    """Send to one target; None on success, else the classified failure (its reasons name the label, not the URL)."""
    target = apprise.Apprise()
    if not target.add(channel.url):
        return classify(["Apprise could not load the channel URL"])
    with apprise_debug_kept_private():
        result = target.notify(
            body=message.body, title=message.title, notify_type=notify_type, body_format=message.body_format,
            log_level=logging.DEBUG,
        )
    if result:
        return None
    entries = list(result.logs())
    reasons = [entry.message for entry in entries if entry.level in WARNING_LEVELS]
    reasons += safe_details(entry.message for entry in entries if entry.level == "DEBUG")
    reasons = reasons or [f"Apprise status {result.status.name}"]
    # Apprise's texts may quote the URL, whole or in parts (a request line with its `sig=`): mask every secret.
    return classify([redact(reason.replace(channel.url, channel.label)) for reason in reasons])


def send_one(channel: Channel, message: Rendered, notify_type: str) -> str | None:
    """Send to one target; None on success, else why (for `vendorwatch notify test`)."""
    failure = send_to(channel, message, notify_type)
    return None if failure is None else str(failure)


def previous_outcomes(session: Session, notification_id: int) -> tuple[set[str], set[str]]:
    """Channel keys that took the notification already, and those that refused it for good."""
    rows = session.execute(
        select(DeliveryAttempt.channel_key, DeliveryAttempt.outcome).where(
            DeliveryAttempt.notification_id == notification_id,
            DeliveryAttempt.outcome.in_(("sent", "dry_run", "rejected")),
        )
    ).all()
    done = {key for key, outcome in rows if outcome != "rejected"}
    return done, {key for key, outcome in rows if outcome == "rejected"}


def notify_type_for(notification: Notification) -> str:
    if notification.kind == "alert" and all(c["event"] == "resolved" for c in notification.payload["changes"]):
        return apprise.NotifyType.SUCCESS
    return apprise.NotifyType.FAILURE if notification.severity == "critical" else apprise.NotifyType.WARNING


def deliver(
    session: Session,
    config: Config,
    notification_id: int,
    *,
    dry_run_dir: Path | None = None,
    now: dt.datetime | None = None,
    token: str | None = None,
) -> DeliveryReport:
    """One pass over the targets. The report's operator_notification_id, when set, is the caller's to deliver."""
    now = now or utcnow()
    if not claim(session, notification_id, now, token):
        return DeliveryReport(notification_id, claimed=False)
    notification = session.get_one(Notification, notification_id)
    done, rejected = previous_outcomes(session, notification_id)
    report = DeliveryReport(notification_id, claimed=True)
    notify_type = notify_type_for(notification)
    for channel in targets_for(config, notification.tags, notification.payload.get("exclude_channels", [])):
        if channel.key in done:
            report.skipped.append(channel.label)
            continue
        if channel.key in rejected:
            report.rejected.append(channel.label)
            continue
        message = render(notification, channel)
        outcome, error = attempt(channel, message, notify_type, config.dry_run, dry_run_dir, notification_id)
        session.add(
            DeliveryAttempt(
                notification_id=notification_id,
                channel_key=channel.key,
                channel_label=channel.label,
                outcome=outcome,
                error=error,
                at=utcnow(),
            )
        )
        session.commit()
        outcomes = {"sent": report.sent, "failed": report.failed, "rejected": report.rejected,
                    "dry_run": report.dry_run}
        outcomes[outcome].append(channel.label)
    finish(session, config, notification, report)
    return report


def attempt(
    channel: Channel,
    message: Rendered,
    notify_type: str,
    dry_run: bool,
    dry_run_dir: Path | None,
    notification_id: int,
) -> tuple[str, str | None]:
    if dry_run:
        log.info("dry run: would send notification %s to %s", notification_id, channel.label)
        if dry_run_dir is not None:
            write_dry_run(dry_run_dir, notification_id, channel, message)
        return "dry_run", None
    failure = send_to(channel, message, notify_type)
    if failure is None:
        log.info("notification %s sent to %s", notification_id, channel.label)
        return "sent", None
    log.warning("notification %s to %s failed (%s)", notification_id, channel.label, failure)
    return ("rejected" if failure.permanent else "failed"), str(failure)


def write_dry_run(directory: Path, notification_id: int, channel: Channel, message: Rendered) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    family = channel_family(channel.url)
    suffix = {"email": "html", "teams": "md", "slack": "slack"}.get(family, "txt")
    path = directory / f"notification-{notification_id}-{family}-{'-'.join(sorted(channel.tags))}.{suffix}"
    path.write_text(f"{message.title}\n\n{message.body}\n", encoding="utf-8")


def finish(session: Session, config: Config, notification: Notification, report: DeliveryReport) -> None:
    """Transient failures wait for a retry; if only permanent ones are left, retrying cannot help: fail now."""
    if report.failed:
        notification.status, notification.finished_at = "pending", None
        session.commit()
        raise DeliveryIncomplete(
            f"notification {notification.id}: {len(report.failed)} target(s) failed: " + ", ".join(report.failed)
        )
    notification.finished_at = utcnow()
    if report.rejected:
        notification.status = "failed"
        # Same transaction as the status: the operator alert exists exactly when the notification has failed.
        report.operator_notification_id = escalate(session, config, notification)
    else:
        notification.status = "sent"
    session.commit()


def rounds_used_up(session: Session, notification_id: int) -> bool:
    return (session.scalar(select(Notification.rounds).where(Notification.id == notification_id)) or 0) >= MAX_ROUNDS


def give_up(session: Session, config: Config, notification_id: int, token: str | None = None) -> int | None:
    """After the last round: mark it failed (only if still unfinished and nobody else holds it, so a rerun
    escalates nothing twice) and alert the operator. Returns the operator notification's id for the caller to
    deliver."""
    gave_up = session.execute(
        update(Notification)
        .where(Notification.id == notification_id, claimable(utcnow(), token))
        .values(status="failed", finished_at=utcnow())
    )
    if gave_up.rowcount != 1:  # type: ignore[attr-defined]
        session.commit()
        return None
    operator_id = escalate(session, config, session.get_one(Notification, notification_id))
    session.commit()
    return operator_id


def unsuccessful_attempts(session: Session, notification_id: int) -> list[DeliveryAttempt]:
    """The last attempt of each target that never took the notification."""
    last: dict[str, DeliveryAttempt] = {}
    for row in session.scalars(
        select(DeliveryAttempt).where(DeliveryAttempt.notification_id == notification_id).order_by(DeliveryAttempt.id)
    ):
        last[row.channel_key] = row
    return [row for row in last.values() if row.outcome in ("failed", "rejected")]


def escalate(session: Session, config: Config, notification: Notification) -> int | None:
    """Write an operator alert about a failed notification, for the channels that did not fail (not committed)."""
    failures = unsuccessful_attempts(session, notification.id)
    labels = ", ".join(row.channel_label for row in failures)
    if notification.kind == "operator":
        # An alert about an undeliverable operator alert could fail the same way, and so on forever.
        log.error("operator notification %s could not be delivered to %s", notification.id, labels)
        return None
    operator_id = enqueue_operator_alert(
        session,
        config,
        DeliveryFailed(notification.title),
        details=[f"{row.channel_label}: {row.error}" for row in failures],
        practice_id=notification.practice_id,
        exclude_channels=[row.channel_key for row in failures],
    )
    if operator_id is None:
        log.error("notification %s failed for %s and no other channel takes operator alerts", notification.id,
                  labels)
    return operator_id


def load_channel_plugins() -> None:
    """Import every Apprise plugin now. Apprise imports its 200-odd plugin modules on the first URL it parses
    (about 200 ms here); a worker calls this before it forks its pool, so no task pays it (issue 18 item 5)."""
    from apprise.manager_plugins import NotificationManager

    NotificationManager().load_modules()
