"""What happened, read back: files received, revisions, deliveries with every attempt, reruns, pulls, digest runs.

Plain read-only queries over the tables the flow already writes; `vendorwatch history` and the console print them.
Each returns plain dicts (newest first), so the CLI's --json and its tables show the same facts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session, aliased

from storage.models import (
    DeliveryAttempt,
    DigestRun,
    FeedFile,
    FeedPull,
    FeedRejection,
    Notification,
    ObservationRevision,
    ObservationValue,
    RemitFile,
    Rerun,
    Series,
)

Query = TypeVar("Query", bound=Select[*tuple[Any, ...]])
DEFAULT_LIMIT = 200
REMITS_FOLDER = "remits"  # inbox/<practice>/remits/: what remits.ingest records a rejected 835's vendor as
KINDS = ("feeds", "revisions", "deliveries", "reruns", "pulls", "digests")


@dataclass(frozen=True)
class Filters:
    """What an operator narrows the history to; None matches anything."""

    practice: str | None = None
    vendor: str | None = None
    kpi: str | None = None
    since: dt.datetime | None = None
    limit: int = DEFAULT_LIMIT


def feeds(session: Session, filters: Filters) -> list[dict[str, Any]]:
    """Files accepted and rejected, merged by time; a rejection carries every problem (row, column, message)."""
    accepted = select(FeedFile).order_by(FeedFile.received_at.desc(), FeedFile.id.desc()).limit(filters.limit)
    rejected = select(FeedRejection).order_by(FeedRejection.received_at.desc(), FeedRejection.id.desc())
    accepted = narrow(accepted, replace(filters, practice=None, vendor=None), None, None, FeedFile.received_at)
    accepted = accepted.where(*stored_for(filters))
    rejected = narrow(rejected.limit(filters.limit), filters, FeedRejection.practice_id, FeedRejection.vendor_id,
                      FeedRejection.received_at)
    rows: list[dict[str, Any]] = [{"at": f.received_at, "status": "accepted", "file": f.filename, "source": f.source,
             "practice": f.practice_id, "vendor": f.vendor_id, "rows": f.rows, "sha256": f.sha256, "problems": []}
            for f in session.scalars(accepted)]
    rows += [{"at": r.received_at, "status": "rejected", "file": r.filename, "source": r.source,
              "practice": r.practice_id, "vendor": r.vendor_id, "rows": None, "sha256": r.sha256,
              "problems": list(r.errors)} for r in session.scalars(rejected)]
    rows += remit_files(session, filters)
    return newest_first(rows, filters.limit)


def stored_for(filters: Filters) -> list[ColumnElement[bool]]:
    """Accepted files as --practice and --vendor name them: by their delivery (inbox folder, --practice/--vendor),
    or, for a file that names them in its rows (an inbox root, `ingest FILE`), by the values it stored for them:
    those it still holds, and those a later file corrected (observation_revision keeps the old file)."""
    if filters.practice is None and filters.vendor is None:
        return []
    series = select(Series.id)
    if filters.practice is not None:
        series = series.where(Series.practice_id == filters.practice)
    if filters.vendor is not None:
        series = series.where(Series.vendor_id == filters.vendor)
    holds = select(ObservationValue.feed_file_id).where(ObservationValue.series_id.in_(series))
    corrected = select(ObservationRevision.old_feed_file_id).where(ObservationRevision.series_id.in_(series))
    delivered = [column == wanted for column, wanted in ((FeedFile.practice_id, filters.practice),
                                                         (FeedFile.vendor_id, filters.vendor)) if wanted is not None]
    return [or_(and_(*delivered), FeedFile.id.in_(holds.union(corrected)))]


def remit_files(session: Session, filters: Filters) -> list[dict[str, Any]]:
    """Accepted 835s (a rejected one is a FeedRejection like any file), under the vendor their inbox folder names,
    `remits`; `rows` counts their claims. None when the filters name another vendor or a KPI."""
    if filters.vendor not in (None, REMITS_FOLDER) or filters.kpi is not None:
        return []
    query = select(RemitFile).order_by(RemitFile.received_at.desc(), RemitFile.id.desc()).limit(filters.limit)
    query = narrow(query, replace(filters, vendor=None), RemitFile.practice_id, None, RemitFile.received_at)
    return [{"at": f.received_at, "status": "accepted", "file": f.filename, "source": f.source,
             "practice": f.practice_id, "vendor": REMITS_FOLDER, "rows": f.claims, "sha256": f.sha256, "problems": []}
            for f in session.scalars(query)]


def revisions(session: Session, filters: Filters) -> list[dict[str, Any]]:
    """Each corrected value: old and new, and the file that held each."""
    old_file, new_file = aliased(FeedFile), aliased(FeedFile)
    query = (
        select(ObservationRevision, Series, old_file, new_file)
        .join(Series, Series.id == ObservationRevision.series_id)
        .join(old_file, old_file.id == ObservationRevision.old_feed_file_id)
        .join(new_file, new_file.id == ObservationRevision.new_feed_file_id)
        .order_by(ObservationRevision.revised_at.desc(), ObservationRevision.id.desc())
        .limit(filters.limit)
    )
    query = narrow(query, filters, Series.practice_id, Series.vendor_id, ObservationRevision.revised_at)
    if filters.kpi is not None:
        query = query.where(Series.kpi == filters.kpi)
    return [{"at": rev.revised_at, "practice": series.practice_id, "vendor": series.vendor_id, "kpi": series.kpi,
             "segment": series.segment, "period_start": rev.period_start, "period_end": rev.period_end,
             "old_value": rev.old_value, "new_value": rev.new_value,
             "old_file": old.filename, "old_file_received_at": old.received_at,
             "new_file": new.filename, "new_file_received_at": new.received_at}
            for rev, series, old, new in session.execute(query)]


def deliveries(session: Session, filters: Filters) -> list[dict[str, Any]]:
    """Each outbox message with every attempt per target, in the order tried, and its error."""
    query = select(Notification).order_by(Notification.created_at.desc(), Notification.id.desc()).limit(filters.limit)
    if filters.practice is not None:
        query = query.where(Notification.practice_id == filters.practice)
    if filters.since is not None:
        query = query.where(Notification.created_at >= filters.since)
    notifications = [n for n in session.scalars(query) if payload_matches(n.payload, filters)]
    attempts = attempts_by_notification(session, [n.id for n in notifications])
    return [{"id": n.id, "at": n.created_at, "kind": n.kind, "practice": n.practice_id, "severity": n.severity,
             "title": n.title, "status": n.status, "rounds": n.rounds, "finished_at": n.finished_at,
             "attempts": attempts.get(n.id, [])} for n in notifications]


def payload_matches(payload: dict[str, Any], filters: Filters) -> bool:
    """--vendor and --kpi narrow the outbox by what its payload names: an alert message's changes each name a
    vendor and KPI; an operator message may name a vendor itself."""
    named = [payload, *payload.get("changes", [])]
    return all(wanted is None or any(part.get(key) == wanted for part in named)
               for key, wanted in (("vendor", filters.vendor), ("kpi", filters.kpi)))


def attempts_by_notification(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    if not ids:
        return grouped
    query = select(DeliveryAttempt).where(DeliveryAttempt.notification_id.in_(ids)).order_by(
        DeliveryAttempt.at, DeliveryAttempt.id)
    for attempt in session.scalars(query):
        grouped.setdefault(attempt.notification_id, []).append(
            {"at": attempt.at, "target": attempt.channel_label, "outcome": attempt.outcome, "error": attempt.error})
    return grouped


def reruns(session: Session, filters: Filters) -> list[dict[str, Any]]:
    """Who asked for what to run again, and when (CLI `rerun`, a direct `digest --resend`, the console)."""
    query = select(Rerun).order_by(Rerun.requested_at.desc(), Rerun.id.desc())
    if filters.since is not None:
        query = query.where(Rerun.requested_at >= filters.since)
    rows = [{"at": r.requested_at, "task": r.task, "arguments": r.arguments, "requested_by": r.requested_by,
             "task_id": r.task_id} for r in session.scalars(query) if arguments_match(r.arguments, filters)]
    return rows[:filters.limit]


def arguments_match(arguments: dict[str, Any], filters: Filters) -> bool:
    return all(wanted is None or arguments.get(key) == wanted
               for key, wanted in (("practice_id", filters.practice), ("vendor_id", filters.vendor)))


def pulls(session: Session, filters: Filters) -> list[dict[str, Any]]:
    query = select(FeedPull).order_by(FeedPull.attempted_at.desc(), FeedPull.id.desc()).limit(filters.limit)
    query = narrow(query, filters, FeedPull.practice_id, FeedPull.vendor_id, FeedPull.attempted_at)
    return [{"at": p.attempted_at, "practice": p.practice_id, "vendor": p.vendor_id, "status": p.status,
             "http_status": p.http_status, "file": p.file_name, "error": p.error} for p in session.scalars(query)]


def digests(session: Session, filters: Filters) -> list[dict[str, Any]]:
    query = select(DigestRun).order_by(DigestRun.claimed_at.desc(), DigestRun.id.desc()).limit(filters.limit)
    if filters.practice is not None:
        query = query.where(DigestRun.practice_id == filters.practice)
    if filters.since is not None:
        query = query.where(DigestRun.claimed_at >= filters.since)
    return [{"at": d.claimed_at, "practice": d.practice_id, "week": d.week, "status": d.status,
             "subject": d.subject, "error": d.error, "sent_at": d.sent_at} for d in session.scalars(query)]


def narrow(query: Query, filters: Filters, practice: Any, vendor: Any, at: Any) -> Query:
    """A column given as None is one the caller narrows by itself: its filter must be None here."""
    if filters.practice is not None:
        query = query.where(practice == filters.practice)
    if filters.vendor is not None:
        query = query.where(vendor == filters.vendor)
    if filters.since is not None:
        query = query.where(at >= filters.since)
    return query


def newest_first(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: row["at"], reverse=True)[:limit]


READERS = {"feeds": feeds, "revisions": revisions, "deliveries": deliveries, "reruns": reruns, "pulls": pulls,
           "digests": digests}


def history(session: Session, kind: str, filters: Filters) -> list[dict[str, Any]]:
    return READERS[kind](session, filters)
