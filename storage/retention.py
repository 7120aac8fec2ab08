"""Retention: what is older than its configured age goes, in small batches, and what went is logged.

Goes (ages from config.settings, defaults in the README): files under archive/ and quarantine/ (their
.errors.json too), delivery_attempt rows, and the events of alerts resolved longer ago than their age. Kept for good:
observations, revisions, feed_file rows (values point at them), alerts themselves, digest runs, reruns.

Each batch of rows is its own short transaction (BATCH rows, a lock wait of at most LOCK_TIMEOUT on PostgreSQL), so
a purge never holds locks that evaluation or delivery would queue behind; a purge stopped half-way has removed whole
batches, and the next run carries on.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, TextClause, bindparam, text

from config.settings import Settings
from storage.db import get_engine
from storage.models import UTCDateTime, utcnow

log = logging.getLogger(__name__)
BATCH = 1000
LOCK_TIMEOUT = "5s"
# intake.ingest.file_away names each filed file `<UTC stamp>-<name>`: the day it was filed, which its modification
# time (kept by the move from the inbox) is not.
STAMP = re.compile(r"^(\d{8}T\d{6})-")

ATTEMPTS_WHERE = "FROM delivery_attempt WHERE at < :cutoff"
EVENTS_WHERE = ("FROM alert_event WHERE alert_id IN (SELECT id FROM alert WHERE state = 'resolved'"
                " AND resolved_at < :cutoff)")


@dataclass(frozen=True)
class Cutoffs:
    files: dt.datetime
    attempts: dt.datetime
    alert_events: dt.datetime

    @classmethod
    def of(cls, settings: Settings, now: dt.datetime) -> Cutoffs:
        return cls(files=now - dt.timedelta(days=settings.retain_files_days),
                   attempts=now - dt.timedelta(days=settings.retain_attempts_days),
                   alert_events=now - dt.timedelta(days=settings.retain_alert_events_days))


@dataclass
class PurgeReport:
    dry_run: bool
    cutoffs: Cutoffs
    files: int = 0
    file_bytes: int = 0
    delivery_attempts: int = 0
    alert_events: int = 0
    file_names: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def purge(settings: Settings, now: dt.datetime | None = None, dry_run: bool = False, batch: int = BATCH,
          engine: Engine | None = None) -> PurgeReport:
    """Remove (or, dry, only count) what is older than its age; log each kind removed."""
    cutoffs = Cutoffs.of(settings, now or utcnow())
    engine = engine or get_engine()
    report = PurgeReport(dry_run=dry_run, cutoffs=cutoffs)
    for path in old_files((settings.archive, settings.quarantine), cutoffs.files):
        report.files += 1
        report.file_bytes += path.lstat().st_size
        report.file_names.append(str(path))
        if not dry_run:
            path.unlink()
    if not dry_run:
        remove_empty_folders((settings.archive, settings.quarantine))
    run = count if dry_run else delete_in_batches
    report.delivery_attempts = run(engine, ATTEMPTS_WHERE, cutoffs.attempts, batch)
    report.alert_events = run(engine, EVENTS_WHERE, cutoffs.alert_events, batch)
    verb = "would remove" if dry_run else "removed"
    log.info("retention %s %d files (%d bytes) filed before %s, %d delivery attempts before %s, %d events of alerts "
             "resolved before %s", verb, report.files, report.file_bytes, cutoffs.files.date(),
             report.delivery_attempts, cutoffs.attempts.date(), report.alert_events, cutoffs.alert_events.date())
    return report


def filed_at(path: Path) -> dt.datetime:
    """When the file was filed: the stamp file_away put in its name, else (an .errors.json, an ignored file) its
    modification time."""
    if (match := STAMP.match(path.name)) is not None:
        return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(path.lstat().st_mtime, dt.UTC)


def old_files(roots: tuple[Path, ...], cutoff: dt.datetime) -> Iterator[Path]:
    """Files (and links, never followed) under the roots filed before the cutoff, oldest folder order."""
    for root in roots:
        if not root.is_dir():
            continue
        for folder, _, names in os.walk(root, followlinks=False):
            for name in sorted(names):
                path = Path(folder) / name
                if filed_at(path) < cutoff:
                    yield path


def remove_empty_folders(roots: tuple[Path, ...]) -> None:
    """Folders a purge emptied (a practice's archive of a vendor long gone); the roots stay."""
    for root in roots:
        if not root.is_dir():
            continue
        for folder, subfolders, names in os.walk(root, topdown=False, followlinks=False):
            if Path(folder) != root and not subfolders and not names:
                Path(folder).rmdir()


def count(engine: Engine, where: str, cutoff: dt.datetime, batch: int) -> int:
    with engine.connect() as connection:
        return int(connection.execute(timed(f"SELECT count(*) {where}"), {"cutoff": cutoff}).scalar_one())


def delete_in_batches(engine: Engine, where: str, cutoff: dt.datetime, batch: int) -> int:
    """Delete `batch` rows per transaction until none is left; the total deleted."""
    statement = timed(f"DELETE FROM {table_of(where)} WHERE id IN (SELECT id {where} ORDER BY id LIMIT :batch)")
    total = 0
    while True:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            removed = connection.execute(statement, {"cutoff": cutoff, "batch": batch}).rowcount
        total += removed
        if removed < batch:
            return total


def timed(sql: str) -> TextClause:
    """The cutoff bound as the columns store times (aware UTC; SQLite compares them as text)."""
    return text(sql).bindparams(bindparam("cutoff", type_=UTCDateTime()))


def table_of(where: str) -> str:
    return where.split()[1]
