"""Exactly once per (practice, week) and per (region, week): claim, then build and send, then record.

The claim is a DigestRun row on a unique (key, week), taken before anything is sent, as healthchecks advances a
report date before mailing: a second beat, a rerun or a redelivered task finds it taken and sends nothing.
States: claimed -> sent | dry_run | failed (transient: retried) | rejected (permanent: the operator must fix the
configuration). A claim left `claimed` by a worker killed mid-send is taken again once it is STALE_CLAIM old;
the Message-ID stays the same for that week's digest, so the rare copy that follows a kill after the server
took the message is de-duplicated by mail systems that honour it. `--resend` sends again on purpose.

Region runs share the table: their key is "region:<name>", which no practice id (a slug) can spell.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.operator import UnsentDigest, enqueue_operator_alert
from config import Config, Practice
from config.secrets import redact_optional
from digest.build import build_digest
from digest.mail import DigestNotSent, compose_message, digest_channel, email_plugin, send_email, sender_of
from digest.region import build_region_digest, region_practices, region_timezone, regions_of
from digest.render import RenderedDigest, render_digest, render_region
from digest.schedule import due_week
from storage.models import DigestRun, utcnow

log = logging.getLogger(__name__)
STALE_CLAIM = dt.timedelta(minutes=30)  # above the task time limit (10 min): a live worker never looks dead
RETRY_FAILED_AFTER = dt.timedelta(hours=1)  # the beat's pace for digests whose task retries ran out
REGION_PREFIX = "region:"


@dataclass(frozen=True)
class DigestOutcome:
    key: str  # practice id, or region:<name>
    week: str
    status: str  # sent | dry_run | already_sent | in_progress | no_recipients
    subject: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class DueDigest:
    kind: str  # practice | region
    key: str  # practice id or region name
    week: str

    @property
    def run_key(self) -> str:
        return run_key(self.kind, self.key)


def run_key(kind: str, key: str) -> str:
    return REGION_PREFIX + key if kind == "region" else key


# -- sending ---------------------------------------------------------------------------------------------------
def send_digest(
    session: Session,
    config: Config,
    practice: Practice,
    week: str,
    *,
    resend: bool = False,
    now: dt.datetime | None = None,
    dry_run_dir: Path | None = None,
) -> DigestOutcome:
    return send_once(
        session, config, practice.id, practice.digest_to, week,
        lambda: render_digest(build_digest(session, config, practice, week, now)),
        resend=resend, dry_run_dir=dry_run_dir,
    )


def send_region_digest(
    session: Session,
    config: Config,
    region: str,
    week: str,
    *,
    resend: bool = False,
    now: dt.datetime | None = None,
    dry_run_dir: Path | None = None,
) -> DigestOutcome:
    recipients = regions_of(config)[region].digest_to
    return send_once(
        session, config, run_key("region", region), recipients, week,
        lambda: render_region(build_region_digest(session, config, region, week, now)),
        resend=resend, dry_run_dir=dry_run_dir,
    )


def send_once(
    session: Session,
    config: Config,
    key: str,
    recipients: list[str],
    week: str,
    render: Callable[[], RenderedDigest],
    *,
    resend: bool,
    dry_run_dir: Path | None,
) -> DigestOutcome:
    """`render` builds the digest (as of its own `now`); the claim is stamped with the clock, which is what other
    workers judge its staleness by."""
    if not recipients:
        return DigestOutcome(key, week, "no_recipients")
    claimed_at = utcnow()
    claim = claim_week(session, key, week, resend=resend, now=claimed_at, dry_run=config.dry_run)
    if claim != "claimed":
        return DigestOutcome(key, week, claim)
    try:
        rendered = render()
        status, note = deliver(config, rendered, recipients, resend=resend, dry_run_dir=dry_run_dir)
    except Exception as exc:
        # Release the claim whatever went wrong (a refused email or a bug while building), recording why.
        permanent = isinstance(exc, DigestNotSent) and exc.permanent
        session.rollback()
        mark(session, key, week, claimed_at, "rejected" if permanent else "failed", None,
             f"{type(exc).__name__}: {exc}")
        raise
    mark(session, key, week, claimed_at, status, rendered.subject, note)
    return DigestOutcome(key, week, status, rendered.subject, note)


def deliver(
    config: Config, rendered: RenderedDigest, recipients: list[str], *, resend: bool, dry_run_dir: Path | None
) -> tuple[str, str | None]:
    if config.dry_run:
        if dry_run_dir is not None:
            write_files(dry_run_dir, rendered, compose_for(config, rendered, recipients, resend=resend))
        log.info("dry run: would send %s to %d recipient(s)", rendered.name, len(recipients))
        return "dry_run", None
    channel = digest_channel(config)
    if channel is None:
        raise DigestNotSent("no channel carries the digest tag (channels.yaml `digest:`)", permanent=True)
    return "sent", send_email(channel, rendered, recipients, resend=resend)


# -- the claim -------------------------------------------------------------------------------------------------
def claim_week(session: Session, key: str, week: str, *, resend: bool, now: dt.datetime, dry_run: bool) -> str:
    """'claimed' (this caller sends), 'already_sent' or 'in_progress' (someone else holds a fresh claim)."""
    if insert_claim(session, key, week, now) or take_over(session, key, week, resend=resend, now=now,
                                                           dry_run=dry_run):
        return "claimed"
    status = session.scalar(select(DigestRun.status).where(DigestRun.practice_id == key, DigestRun.week == week))
    return "in_progress" if status == "claimed" else "already_sent"


def insert_claim(session: Session, key: str, week: str, now: dt.datetime) -> bool:
    try:
        session.add(DigestRun(practice_id=key, week=week, status="claimed", claimed_at=now))
        session.commit()
        return True
    except IntegrityError:
        session.rollback()
        return False


def take_over(session: Session, key: str, week: str, *, resend: bool, now: dt.datetime, dry_run: bool) -> bool:
    """A conditional UPDATE: of two callers, the second finds the row already re-claimed and changes nothing.

    Never a fresh claim (someone is sending right now). A stale claim or a failed send, always; a sent digest
    only with --resend; a dry-run 'send' also once delivery is real, so switching dry_run off does not skip
    the week."""
    stale = (DigestRun.status == "claimed") & (DigestRun.claimed_at < now - STALE_CLAIM)
    retryable = ["failed", "rejected"] + ([] if dry_run else ["dry_run"])
    condition = stale | DigestRun.status.in_(retryable)
    if resend:
        condition = stale | (DigestRun.status != "claimed")
    result = session.execute(
        update(DigestRun)
        .where(DigestRun.practice_id == key, DigestRun.week == week, condition)
        .values(status="claimed", claimed_at=now, error=None)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def mark(
    session: Session, key: str, week: str, claimed_at: dt.datetime, status: str, subject: str | None,
    error: str | None,
) -> None:
    """Record the outcome of our own claim only: if it went stale and another worker took it over, theirs
    stands."""
    session.execute(
        update(DigestRun)
        .where(DigestRun.practice_id == key, DigestRun.week == week, DigestRun.claimed_at == claimed_at)
        .values(status=status, subject=subject, error=redact_optional(error),
                sent_at=utcnow() if status in ("sent", "dry_run") else None)
    )
    session.commit()


# -- what is due -----------------------------------------------------------------------------------------------
def due_digests(session: Session, config: Config, now: dt.datetime | None = None) -> list[DueDigest]:
    """Every practice and region whose send time has passed in its own time zone this week and whose digest is
    not sent: never claimed, claimed by a worker that died (stale), or failed more than an hour ago."""
    now = now or utcnow()
    candidates = practice_candidates(config, now) + region_candidates(config, now)
    if not candidates:
        return []
    runs = {
        (row.practice_id, row.week): row
        for row in session.scalars(
            select(DigestRun).where(
                DigestRun.practice_id.in_({item.run_key for item in candidates}),
                DigestRun.week.in_({item.week for item in candidates}),
            )
        )
    }
    return [item for item in candidates if needs_sending(runs.get((item.run_key, item.week)), now)]


def needs_sending(run: DigestRun | None, now: dt.datetime) -> bool:
    if run is None:
        return True
    if run.status == "claimed":
        return run.claimed_at < now - STALE_CLAIM
    return run.status == "failed" and run.claimed_at < now - RETRY_FAILED_AFTER


def practice_candidates(config: Config, now: dt.datetime) -> list[DueDigest]:
    return [
        DueDigest("practice", practice.id, week)
        for practice in config.practices
        if practice.digest_to and (week := due_week(practice.digest, practice.timezone, now))
    ]


def region_candidates(config: Config, now: dt.datetime) -> list[DueDigest]:
    due = []
    for key, region in regions_of(config).items():
        practices = region_practices(config, key)
        if practices and (week := due_week(region.digest, region_timezone(region, practices), now)):
            due.append(DueDigest("region", key, week))
    return due


# -- operator and preview --------------------------------------------------------------------------------------
def tell_operator(session: Session, config: Config, key: str, week: str, error: str) -> int | None:
    """The digest is not going out by itself: an operator alert on the other channels (not the digest's)."""
    channel = digest_channel(config)
    region = key.removeprefix(REGION_PREFIX) if key.startswith(REGION_PREFIX) else None
    return enqueue_operator_alert(
        session, config, UnsentDigest(key, week, region),
        details=[error],
        practice_id=None if region else key,
        exclude_channels=[channel.key] if channel else [],
    )


def compose_for(config: Config, rendered: RenderedDigest, recipients: list[str], *, resend: bool) -> bytes:
    """The message exactly as it would go out: the sender from the digest channel when there is one."""
    channel = digest_channel(config)
    try:
        plugin = email_plugin(channel, recipients) if channel else None
    except DigestNotSent:
        plugin = None
    return bytes(compose_message(rendered, sender_of(plugin), recipients, resend=resend))


def write_files(directory: Path, rendered: RenderedDigest, message: bytes) -> list[Path]:
    """<name>.html and .txt to open in a browser or editor, and <name>.eml, the whole message, to open in a
    mail client."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {".html": rendered.html.encode(), ".txt": rendered.text.encode(), ".eml": message}
    paths = []
    for suffix, content in files.items():
        path = directory / f"{rendered.name}{suffix}"
        path.write_bytes(content)
        paths.append(path)
    return paths


def preview(
    session: Session, config: Config, practice: Practice, week: str, directory: Path, now: dt.datetime | None = None
) -> list[Path]:
    rendered = render_digest(build_digest(session, config, practice, week, now))
    return write_files(directory, rendered, compose_for(config, rendered, practice.digest_to, resend=False))


def preview_region(
    session: Session, config: Config, region: str, week: str, directory: Path, now: dt.datetime | None = None
) -> list[Path]:
    rendered = render_region(build_region_digest(session, config, region, week, now))
    recipients = regions_of(config)[region].digest_to
    return write_files(directory, rendered, compose_for(config, rendered, recipients, resend=False))
