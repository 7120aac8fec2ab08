"""Add one file's aggregates to the stored months, in the caller's transaction.

The claim digests go to a temporary table first (COPY on PostgreSQL): from it the digests stored by earlier files
are read (those claims are resubmissions), then the new ones are added with ON CONFLICT DO NOTHING, so two
workers with overlapping files never fail on each other's rows.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from remits.read import Bucket
from storage.models import RemitFile, RemitMonth, utcnow

STAGING_DDL = "CREATE TEMPORARY TABLE IF NOT EXISTS remit_digest_staging (digest {} NOT NULL)"
ADDITIVE = ("claims", "denied", "first_pass_claims", "first_pass_denied", "billed", "first_pass_billed",
            "first_pass_denied_billed", "payments", "provider_adjustments", "patient_responsibility", "contractual")
COUNTERS = {"days": "days", "denial_categories": "denial_categories", "denial_carcs": "denial_carcs"}


class DuplicateRemit(Exception):
    """These bytes were stored before for this practice."""


def lock_practice(session: Session, practice_id: str) -> None:
    """One practice's 835s are stored one at a time (PostgreSQL: a transaction-scoped advisory lock; SQLite has
    one writer anyway): two files naming the same new claim at once must not both count it a first pass."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"remits:{practice_id}"})


def already_stored(session: Session, sha256: str, practice_id: str) -> bool:
    query = select(RemitFile.id).where(RemitFile.sha256 == sha256, RemitFile.practice_id == practice_id)
    return session.scalar(query) is not None


def claim_remit_file(session: Session, *, sha256: str, practice_id: str, filename: str, source: str,
                     claims: int) -> None:
    """The file's row first: its unique key makes a second copy (even from a second worker at once) fail."""
    session.add(RemitFile(sha256=sha256, practice_id=practice_id, filename=filename, source=source, claims=claims))
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateRemit(sha256) from exc


def seen_and_record(connection: Connection, practice_id: str, digests: Iterable[bytes]) -> set[bytes]:
    """The digests stored before this file; then every digest of the file is stored."""
    stage_digests(connection, digests)
    seen = set(connection.execute(text(
        "SELECT s.digest FROM remit_digest_staging s JOIN remit_claim c ON c.digest = s.digest"
        " AND c.practice_id = :practice"), {"practice": practice_id}).scalars())
    connection.execute(text(
        "INSERT INTO remit_claim (practice_id, digest) SELECT DISTINCT :practice, digest FROM remit_digest_staging"
        " WHERE true ON CONFLICT DO NOTHING"), {"practice": practice_id})  # WHERE: SQLite needs it
    return {bytes(digest) for digest in seen}


def stage_digests(connection: Connection, digests: Iterable[bytes]) -> None:
    postgresql = connection.dialect.name == "postgresql"
    connection.execute(text(STAGING_DDL.format("BYTEA" if postgresql else "BLOB")))
    connection.execute(text("DELETE FROM remit_digest_staging"))
    if not postgresql:
        rows = [{"digest": digest} for digest in digests]
        if rows:
            connection.execute(text("INSERT INTO remit_digest_staging (digest) VALUES (:digest)"), rows)
        return
    raw = cast(psycopg.Connection[Any], connection.connection.driver_connection)
    with raw.cursor() as cursor, cursor.copy("COPY remit_digest_staging (digest) FROM STDIN") as copy:
        for digest in digests:
            copy.write_row((digest,))
    connection.execute(text("ANALYZE remit_digest_staging"))


def add_months(session: Session, practice_id: str, buckets: Iterable[Bucket]) -> None:
    """Each (payer, month) row locked, then its figures added: two files of one month, even at once, add up."""
    for bucket in sorted(buckets, key=lambda b: (b.payer_id, b.month)):
        row = locked_month(session, practice_id, bucket.payer_id, bucket.month)
        for name in ADDITIVE:
            setattr(row, name, getattr(row, name) + getattr(bucket, name))
        for column, attribute in COUNTERS.items():
            stored: Counter[str] = Counter(getattr(row, column))
            stored.update({str(key): count for key, count in getattr(bucket, attribute).items()})
            setattr(row, column, dict(sorted(stored.items())))
        row.files += 1
        row.updated_at = utcnow()
    session.flush()


def locked_month(session: Session, practice_id: str, payer_id: str, month: dt.date) -> RemitMonth:
    key = (RemitMonth.practice_id == practice_id, RemitMonth.payer_id == payer_id, RemitMonth.month == month)
    row = session.scalars(select(RemitMonth).where(*key).with_for_update()).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            session.add(empty_month(practice_id, payer_id, month))
    except IntegrityError:
        pass  # another worker made it first: lock theirs
    return session.scalars(select(RemitMonth).where(*key).with_for_update()).one()


def empty_month(practice_id: str, payer_id: str, month: dt.date) -> RemitMonth:
    zero = Decimal(0)
    return RemitMonth(practice_id=practice_id, payer_id=payer_id, month=month, claims=0, denied=0,
                      first_pass_claims=0, first_pass_denied=0, billed=zero, first_pass_billed=zero,
                      first_pass_denied_billed=zero, payments=zero, provider_adjustments=zero,
                      patient_responsibility=zero, contractual=zero, days={}, denial_categories={},
                      denial_carcs={}, files=0)


