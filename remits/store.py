"""Add one file's aggregates to the stored months, in the caller's transaction.

First the file's reversals of claims stored from earlier files take those claims out of their months
(`take_back`). Then the claims go to a temporary table (COPY on PostgreSQL): from it the digests stored by earlier
files are read (those claims are resubmissions), then all are upserted into remit_claim with where each was
counted, so two workers with overlapping files never fail on each other's rows.
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

from remits.categories import category_of
from remits.read import Bucket, FileFigures, Sight
from storage.models import RemitClaim, RemitFile, RemitMonth, utcnow

STAGING_DDL = ("CREATE TEMPORARY TABLE IF NOT EXISTS remit_sight_staging (digest {} NOT NULL, month DATE,"
               " days INTEGER, denied BOOLEAN NOT NULL, carc VARCHAR(8), first_pass BOOLEAN NOT NULL)")
STAGED = ("digest", "month", "days", "denied", "carc", "first_pass")
ADDITIVE = ("claims", "denied", "first_pass_claims", "first_pass_denied", "billed", "first_pass_billed",
            "first_pass_denied_billed", "payments", "provider_adjustments", "patient_responsibility", "contractual",
            "unmatched_reversals")
IN_CHUNK = 1000  # digests per IN (...) list
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


def seen_and_record(connection: Connection, practice_id: str, sights: Iterable[Sight]) -> set[bytes]:
    """The digests stored before this file; then every claim of the file is stored, with where it was counted
    when it was (its latest counted sight: the one a later file's reversal takes back). A claim stored before is
    no first pass; a claim this file does not count keeps what an earlier file recorded."""
    stage_sights(connection, sights)
    seen = set(connection.execute(text(
        "SELECT s.digest FROM remit_sight_staging s JOIN remit_claim c ON c.digest = s.digest"
        " AND c.practice_id = :practice"), {"practice": practice_id}).scalars())
    connection.execute(text(
        "INSERT INTO remit_claim (practice_id, digest, month, days, denied, carc, first_pass)"
        " SELECT :practice, digest, month, days, denied, carc, first_pass FROM remit_sight_staging"
        " WHERE true"  # SQLite needs it before ON CONFLICT
        " ON CONFLICT (practice_id, digest) DO UPDATE SET month = excluded.month, days = excluded.days,"
        " denied = excluded.denied, carc = excluded.carc, first_pass = false WHERE excluded.month IS NOT NULL"),
        {"practice": practice_id})
    return {bytes(digest) for digest in seen}


def stage_sights(connection: Connection, sights: Iterable[Sight]) -> None:
    postgresql = connection.dialect.name == "postgresql"
    connection.execute(text(STAGING_DDL.format("BYTEA" if postgresql else "BLOB")))
    connection.execute(text("DELETE FROM remit_sight_staging"))
    if not postgresql:
        rows = [{"digest": x.digest, "month": None if x.month is None else x.month.isoformat(), "days": x.days,
                 "denied": x.denied, "carc": x.carc, "first_pass": x.first_pass} for x in sights]
        if rows:
            connection.execute(text("INSERT INTO remit_sight_staging (digest, month, days, denied, carc, first_pass)"
                                    " VALUES (:digest, :month, :days, :denied, :carc, :first_pass)"), rows)
        return
    raw = cast(psycopg.Connection[Any], connection.connection.driver_connection)
    with raw.cursor() as cursor, cursor.copy(f"COPY remit_sight_staging ({', '.join(STAGED)}) FROM STDIN") as copy:
        for x in sights:
            copy.write_row((x.digest, x.month, x.days, x.denied, x.carc, x.first_pass))
    connection.execute(text("ANALYZE remit_sight_staging"))


def take_back(session: Session, practice_id: str, figures: FileFigures) -> Counter[int]:
    """The file's reversals of claims counted in earlier files: each takes its claim out of the month it was
    counted in, once (the claim's month is cleared, so the same reversal in another file finds nothing). Returns,
    per bucket index of the file, the reversals whose original is stored nowhere."""
    unmatched: Counter[int] = Counter()
    wanted = sorted({digest for digest, _, _ in figures.reversals})
    stored: dict[bytes, RemitClaim] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        query = select(RemitClaim).where(RemitClaim.practice_id == practice_id, RemitClaim.month.is_not(None),
                                         RemitClaim.digest.in_(wanted[start:start + IN_CHUNK]))
        stored.update((bytes(claim.digest), claim) for claim in session.scalars(query.with_for_update()))
    for digest, index, charge in figures.reversals:
        claim = stored.pop(digest, None)  # popped: a second reversal of it in this file has nothing to take back
        payer_id = figures.claims.buckets[index][0]
        if claim is None or claim.month is None:
            unmatched[index] += 1
            continue
        take_out(locked_month(session, practice_id, payer_id, claim.month), claim, Decimal(-charge) / 100)
        claim.month = None
    session.flush()
    return unmatched


def take_out(row: RemitMonth, claim: RemitClaim, billed: Decimal) -> None:
    """One claim's counts out of its month; `billed` is the reversal's CLP03 negated, the original's charge.
    The dollars paid stay where they were: the reversal's own (negative) amounts count in its own month."""
    row.claims -= 1
    row.billed -= billed
    if claim.days is not None:
        row.days = less_one(row.days, str(claim.days))
    if claim.denied:
        row.denied -= 1
        row.denial_carcs = less_one(row.denial_carcs, claim.carc or "none")
        row.denial_categories = less_one(row.denial_categories, category_of(claim.carc or ""))
    if claim.first_pass:
        row.first_pass_claims -= 1
        row.first_pass_billed -= billed
        if claim.denied:
            row.first_pass_denied -= 1
            row.first_pass_denied_billed -= billed
    row.reversed_later += 1
    row.updated_at = utcnow()


def less_one(counts: dict[str, Any], key: str) -> dict[str, int]:
    found = Counter({name: int(value) for name, value in counts.items()})
    found[key] -= 1
    return {name: value for name, value in sorted(found.items()) if value > 0}


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
                      denial_carcs={}, files=0, reversed_later=0, unmatched_reversals=0)


