"""Read one 835 into aggregates per (payer, month of the payment date BPR16), keeping nothing about a patient.

oxedi (Rust) walks the file one ST/SE transaction at a time and hands each as Arrow tables; only the columns the
figures need are read (never NM1 names or member ids), each claim id only as an HMAC. Any finding of the parser
(truncation, a control count, a balancing rule, a code not in the spec) rejects the file: figures recomputed from a
file that does not balance would be wrong. Problems name segment numbers and element positions, never contents.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import oxedi
import pyarrow as pa
import pyarrow.compute as pc

from remits.categories import DENIAL_GROUPS, category_of

ZERO = Decimal(0)
REVERSAL_BYTES = b"22"
DENIED = "4"
DENIED_BYTES = b"4"
EXACT_DUPLICATE = "18"
SPEC = oxedi.Spec.builtin("5010")
EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class SegmentProblem:
    segment: int | None  # 1-based, the ISA is 1; None: at the end of the file
    element: str | None  # e.g. "BPR02"
    message: str


class RemitRejected(Exception):
    def __init__(self, problems: list[SegmentProblem], total: int):
        super().__init__(f"{total} problem(s)")
        self.problems = problems  # the first MAX_PROBLEMS
        self.total = total


MAX_PROBLEMS = 50  # listed; a file failing on every claim must not hold a million messages


@dataclass
class Bucket:
    """Additive figures of one payer and month; several files of the same month add up."""

    payer_id: str
    month: dt.date
    claims: int = 0
    denied: int = 0
    billed: Decimal = ZERO
    payments: Decimal = ZERO
    provider_adjustments: Decimal = ZERO
    patient_responsibility: Decimal = ZERO
    contractual: Decimal = ZERO
    first_pass_claims: int = 0
    first_pass_denied: int = 0
    first_pass_billed: Decimal = ZERO
    first_pass_denied_billed: Decimal = ZERO
    days: Counter[int] = field(default_factory=Counter)
    denial_categories: Counter[str] = field(default_factory=Counter)
    denial_carcs: Counter[str] = field(default_factory=Counter)
    unmatched_reversals: int = 0  # reversals whose original claim is stored nowhere (remits.store.take_back)


class Claims:
    """The file's counted claims, one slot each in compact arrays (200,000 claims in a few megabytes)."""

    def __init__(self) -> None:
        self.buckets: list[tuple[str, dt.date]] = []
        self.bucket: array[int] = array("H")
        self.cents: array[int] = array("q")  # CLP03, billed
        self.days: array[int] = array("i")  # -1: no service date
        self.flags = bytearray()  # DENIED_FLAG | EARLIER_FLAG | EXCLUDED_FLAG
        self.carcs: dict[int, str] = {}  # slot -> the main denial reason, for denied claims only

    def add(self, bucket: int, cents: int, days: int | None, flags: int, carc: str | None) -> int:
        slot = len(self.flags)
        self.bucket.append(bucket)
        self.cents.append(cents)
        self.days.append(-1 if days is None else days)
        self.flags.append(flags)
        if carc is not None:
            self.carcs[slot] = carc
        return slot


DENIED_FLAG, EARLIER_FLAG, EXCLUDED_FLAG = 1, 2, 4


@dataclass
class FileFigures:
    """What one file adds: buckets still without their first-pass figures (they need the stored claim hashes)."""

    buckets: dict[tuple[str, dt.date], Bucket] = field(default_factory=dict)
    claims: Claims = field(default_factory=Claims)
    digests: dict[bytes, int] = field(default_factory=dict)  # every claim id of the file, hashed -> first slot
    repeats: dict[bytes, int] = field(default_factory=dict)  # a claim id counted again in this file -> last slot
    # Reversals with no original counted earlier in this file: (claim digest, bucket index, CLP03 in cents). Their
    # originals are looked for among the claims stored from earlier files (remits.store.take_back).
    reversals: list[tuple[bytes, int, int]] = field(default_factory=list)

    @property
    def claim_count(self) -> int:
        return sum(1 for flags in self.claims.flags if not flags & EXCLUDED_FLAG)


def read_835(data: Any, key: bytes, payers: Mapping[str, str]) -> FileFigures:
    """Aggregate a whole 835 (bytes or a memory map), transaction by transaction. After a first problem the file
    is only walked for more (a truncation shows only at its end); RemitRejected lists them."""
    figures = FileFigures()
    problems: list[SegmentProblem] = []
    total = 0
    try:
        for batch in oxedi.stream(data, spec=SPEC, by="transaction"):
            total += len(batch.diagnostics)
            problems.extend(diagnostic_problem(d) for d in batch.diagnostics[:MAX_PROBLEMS - len(problems)])
            if not total:
                total += add_transaction(figures, batch.tables, key, payers, problems)
    except oxedi.ParseError:
        problems.append(SegmentProblem(1, "ISA", "the interchange header cannot be read"))
        total += 1
    if total:
        raise RemitRejected(problems, total)
    return figures


def diagnostic_problem(diagnostic: oxedi.Diagnostic) -> SegmentProblem:
    """The parser's finding by kind and position only: its own text quotes the offending value."""
    segment = None if diagnostic.segment is None else diagnostic.segment + 1
    element = None if diagnostic.element is None else f"element {diagnostic.element}"
    words = DIAGNOSTIC_WORDS.get(diagnostic.kind, diagnostic.kind)
    rule = BALANCE_RULE.match(diagnostic.rule) if diagnostic.kind == "BalanceMismatch" else None
    if rule:  # the spec's rule name only, never the amounts it quotes
        words = BALANCE_WORDS.get(rule.group(1), f"the amounts do not balance: rule {rule.group(1)}")
    return SegmentProblem(segment, element, words)


BALANCE_RULE = re.compile(r'balancing rule "([a-z_]+)"')
DIAGNOSTIC_WORDS = {
    "ControlCountMismatch": "a control count (SE01, GE01 or IEA01) does not match what the file holds",
    "UnterminatedLoop": "the file ends before its closing segment (truncated?)",
    "BalanceMismatch": "the amounts do not balance",
    "CodeNotInList": "a code the 835 does not allow here",
    "RequiredOccurrenceMissing": "a required segment is missing (truncated?)",
    "RequiredElementMissing": "a required element is empty",
}
BALANCE_WORDS = {
    "transaction_balance": "the amounts do not balance: BPR02 is not the claims' CLP04 less the PLB adjustments "
                           "(rule transaction_balance)",
    "claim_balance": "the amounts do not balance: CLP03 - CLP04 is not the claim's adjustments (rule claim_balance)",
    "service_balance": "the amounts do not balance: SVC02 - SVC03 is not the service line's adjustments "
                       "(rule service_balance)",
}


def columns(table: pa.Table, wanted: list[str]) -> Iterator[tuple[Any, ...]]:
    return zip(*(table.column(column).to_pylist() for column in wanted), strict=True)


def total(values: pa.ChunkedArray | pa.Array) -> Decimal:
    return pc.sum(values).as_py() or ZERO


def add_transaction(figures: FileFigures, tables: Any, key: bytes, payers: Mapping[str, str],
                    problems: list[SegmentProblem]) -> int:
    """One ST/SE: one payment (BPR) from one payer, its claims, their adjustments and the PLBs. Returns how many
    problems it found (0 or 1)."""
    payments = pa.table(tables["payments"])
    if payments.num_rows != 1:
        problems.append(SegmentProblem(None, "BPR", "a transaction without its payment (BPR)"))
        return 1
    segment, payer_id, trn_payer, paid_on = next(columns(payments, ["segment", "payer_id", "payer_identifier",
                                                                     "payment_date"]))
    payer = (payer_id or trn_payer or b"").decode("ascii", "replace")
    if payer not in payers:
        problems.append(SegmentProblem(segment + 1, "N1*PR N104 / TRN03", "the payer id of the transaction "
                                                                          "starting here is not listed in "
                                                                          "kpis.yaml remits.payers"))
        return 1
    if paid_on is None:
        problems.append(SegmentProblem(segment + 2, "BPR16", "no payment date"))  # BPR follows ST
        return 1
    bucket = figures.buckets.setdefault((payer, paid_on.replace(day=1)), Bucket(payer, paid_on.replace(day=1)))
    claims = pa.table(tables["claims"])
    bucket.provider_adjustments += total(pa.table(tables["provider_adjustments"]).column("amount"))
    bucket.payments += total(claims.column("payment_amount"))
    adjustments = pa.table(tables["adjustments"])
    add_adjustment_sums(bucket, adjustments)
    add_claims(figures, bucket, claims, denial_reasons(claims, adjustments), service_dates(tables), key, paid_on)
    return 0


def add_adjustment_sums(bucket: Bucket, adjustments: pa.Table) -> None:
    groups = adjustments.column("group_code")
    bucket.patient_responsibility += total(adjustments.column("amount").filter(pc.equal(groups, b"PR")))
    bucket.contractual += total(adjustments.column("amount").filter(pc.equal(groups, b"CO")))


def denial_reasons(claims: pa.Table, adjustments: pa.Table) -> dict[int, list[tuple[Decimal, str]]]:
    """The CO/OA/PI and CARC 18 adjustments of the claims that may be denials (nothing paid, or CLP02 = 4): the
    few rows the per-claim rules need, picked in Arrow so the contractual write-off of every paid claim is not
    walked in Python."""
    unpaid = pc.or_(pc.equal(claims.column("payment_amount"), pa.scalar(ZERO, claims.schema.field(
        "payment_amount").type)), pc.equal(claims.column("claim_status"), DENIED.encode()))
    candidates = claims.column("row").filter(unpaid)
    reasons = adjustments.column("reason_code")
    wanted = pc.or_(pc.is_in(adjustments.column("claim"), value_set=candidates.combine_chunks()),
                    pc.equal(reasons, EXACT_DUPLICATE.encode()))
    found: dict[int, list[tuple[Decimal, str]]] = {}
    for claim_row, group, reason, amount in columns(adjustments.filter(wanted), ["claim", "group_code",
                                                                                "reason_code", "amount"]):
        carc = (reason or b"").decode()
        if claim_row is not None and (carc == EXACT_DUPLICATE or (group or b"").decode() in DENIAL_GROUPS):
            found.setdefault(claim_row, []).append((amount or ZERO, carc))
    return found


def service_dates(tables: Any) -> dict[int, dt.date]:
    """Each claim's earliest service-line date (DTM*472)."""
    earliest: dict[int, dt.date] = {}
    for claim_row, served in columns(pa.table(tables["services"]), ["claim", "service_date"]):
        if served is not None and (claim_row not in earliest or served < earliest[claim_row]):
            earliest[claim_row] = served
    return earliest


def cents(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dollars (decimal, two places) as whole cents: Python ints are far cheaper to make than Decimals."""
    narrow = pc.cast(values, pa.decimal128(18, 2))  # an amount over 10^16 dollars fails the cast, loudly
    return pc.cast(pc.multiply(narrow, pa.scalar(Decimal(100), pa.decimal128(3, 0))), pa.int64())


def epoch_days(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(values, pa.int32())


def add_claims(figures: FileFigures, bucket: Bucket, claims: pa.Table, reasons: dict[int, list[tuple[Decimal, str]]],
               served_on: dict[int, dt.date], key: bytes, paid_on: dt.date) -> None:
    """A reversal (CLP02 = 22) is not counted and takes its original (earlier in this file, else as stored from an
    earlier file: FileFigures.reversals) out of the counts; an exact duplicate (CARC 18) is not counted. Dollars
    were summed for every claim all the same: that money moved. Each claim id is kept only as
    HMAC(key, payer id | CLP01), which tells a resubmission from a first pass."""
    bucket_slot = list(figures.buckets).index((bucket.payer_id, bucket.month))
    if len(figures.claims.buckets) <= bucket_slot:
        figures.claims.buckets.append((bucket.payer_id, bucket.month))
    paid_day = (paid_on - EPOCH).days
    served_days = {row: (day - EPOCH).days for row, day in served_on.items()}
    prefix = bucket.payer_id.encode() + b"|"
    rows = zip(claims.column("row").to_pylist(), claims.column("claim_id").to_pylist(),
               claims.column("claim_status").to_pylist(), cents(claims.column("charge_amount")).to_pylist(),
               cents(claims.column("payment_amount")).to_pylist(),
               epoch_days(claims.column("statement_from")).to_pylist(), strict=True)
    for row, claim_id, status, charge, paid, statement in rows:
        digest = hmac.digest(key, prefix + (claim_id or b""), "sha256")
        earlier = figures.digests.get(digest)
        if status == REVERSAL_BYTES:
            reversed_slot = figures.repeats.pop(digest, earlier)
            if reversed_slot is not None and reversed_slot >= 0:
                figures.claims.flags[reversed_slot] |= EXCLUDED_FLAG
            else:  # paid in an earlier file, if anywhere
                figures.reversals.append((digest, bucket_slot, charge or 0))
            figures.digests.setdefault(digest, -1)
            continue
        adjustments = reasons.get(row, ())
        if adjustments and any(carc == EXACT_DUPLICATE for _, carc in adjustments):
            figures.digests.setdefault(digest, -1)
            continue
        denied = status == DENIED_BYTES or (paid == 0 and bool(adjustments))
        served = served_days.get(row, statement)
        flags = (DENIED_FLAG if denied else 0) | (EARLIER_FLAG if earlier is not None else 0)
        slot = figures.claims.add(bucket_slot, charge or 0, None if served is None else paid_day - served, flags,
                                  max(adjustments)[1] if denied and adjustments else None)
        if earlier is None or earlier < 0:
            figures.digests[digest] = slot  # the first counted sight: the one a stored digest makes a resubmission
        else:
            figures.repeats[digest] = slot  # a later sight in this file: the one a reversal takes back


@dataclass(frozen=True)
class Sight:
    """What a claim of this file added to its month, as remit_claim keeps it (no id, amount or date)."""

    digest: bytes
    month: dt.date | None  # None: not counted (reversed, an exact duplicate, a reversal only)
    days: int | None
    denied: bool
    carc: str | None
    first_pass: bool  # within this file; a claim stored before is no first pass (remits.store.record_sights)


def sights(figures: FileFigures) -> Iterator[Sight]:
    """Each claim id of the file once, with its latest counted sight (the one a later reversal takes back)."""
    claims = figures.claims

    def counted(slot: int | None) -> bool:
        return slot is not None and slot >= 0 and not claims.flags[slot] & EXCLUDED_FLAG

    for digest, first in figures.digests.items():
        later = figures.repeats.get(digest)
        slot = later if counted(later) else first if counted(first) else None
        if slot is None:
            yield Sight(digest, None, None, False, None, False)
            continue
        flags = claims.flags[slot]
        days = claims.days[slot]
        yield Sight(digest, claims.buckets[claims.bucket[slot]][1], days if days >= 0 else None,
                    bool(flags & DENIED_FLAG), claims.carcs.get(slot), not flags & EARLIER_FLAG)


def settle(figures: FileFigures, seen_before: set[bytes]) -> dict[tuple[str, dt.date], Bucket]:
    """The file's buckets with the claim counts, given the digests stored from earlier files."""
    claims = figures.claims
    before = {slot for digest, slot in figures.digests.items() if digest in seen_before and slot >= 0}
    billed: Counter[tuple[int, bool]] = Counter()  # cents by bucket
    first_pass_billed: Counter[tuple[int, bool]] = Counter()  # cents by (bucket, denied)
    for slot, flags in enumerate(claims.flags):
        if flags & EXCLUDED_FLAG:
            continue
        bucket = figures.buckets[claims.buckets[claims.bucket[slot]]]
        denied = bool(flags & DENIED_FLAG)
        bucket.claims += 1
        billed[claims.bucket[slot], False] += claims.cents[slot]
        if claims.days[slot] >= 0:
            bucket.days[claims.days[slot]] += 1
        if denied:
            carc = claims.carcs.get(slot, "")
            bucket.denied += 1
            bucket.denial_carcs[carc or "none"] += 1
            bucket.denial_categories[category_of(carc)] += 1
        if flags & EARLIER_FLAG or slot in before:
            continue
        bucket.first_pass_claims += 1
        bucket.first_pass_denied += denied
        first_pass_billed[claims.bucket[slot], denied] += claims.cents[slot]
    for index, key in enumerate(claims.buckets):
        bucket = figures.buckets[key]
        bucket.billed = Decimal(billed[index, False]) / 100
        bucket.first_pass_denied_billed = Decimal(first_pass_billed[index, True]) / 100
        bucket.first_pass_billed = bucket.first_pass_denied_billed + Decimal(first_pass_billed[index, False]) / 100
    return figures.buckets
