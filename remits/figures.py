"""The figures of kpis.yaml's `remits.figures`, from stored month rows (pure: no database here).

Rows of several payers (or files) add up first, then the rates and percentiles are taken, so "all payers" is a
true figure over every claim, not an average of payers' rates.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

ALL_PAYERS = "all payers"


class MonthRow(Protocol):
    """A stored remit_month row (storage.models.RemitMonth) or anything shaped like it."""

    payer_id: str
    month: dt.date
    claims: int
    denied: int
    first_pass_claims: int
    first_pass_denied: int
    billed: Decimal
    first_pass_billed: Decimal
    first_pass_denied_billed: Decimal
    payments: Decimal
    provider_adjustments: Decimal
    patient_responsibility: Decimal
    contractual: Decimal
    days: dict[str, Any]
    denial_categories: dict[str, Any]
    denial_carcs: dict[str, Any]
    reversed_later: int
    unmatched_reversals: int


@dataclass(frozen=True)
class Figures:
    payer: str
    month: dt.date
    claims_adjudicated: int
    claims_denied: int
    first_pass_claims: int
    first_pass_denied: int
    first_pass_denial_rate: float | None
    first_pass_denial_rate_dollars: float | None
    payments: Decimal
    provider_adjustments: Decimal
    net_payments: Decimal
    patient_responsibility: Decimal
    contractual_adjustments: Decimal
    days_to_payment_median: float | None
    days_to_payment_p90: int | None
    denial_categories: dict[str, int] = field(default_factory=dict)
    denial_carcs: dict[str, int] = field(default_factory=dict)
    # Claims of this month a later file's reversal took back (already out of the counts above), and reversals
    # paid this month whose original claim is stored nowhere: not figures of kpis.yaml, the operator's to read.
    reversed_later: int = 0
    unmatched_reversals: int = 0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, value in vars(self).items():
            out[name] = (value.isoformat()[:7] if isinstance(value, dt.date)
                         else float(value) if isinstance(value, Decimal) else value)
        return out


def percent(part: int | Decimal, whole: int | Decimal) -> float | None:
    return None if not whole else round(float(part) / float(whole) * 100, 2)


def median(histogram: Mapping[int, int]) -> float | None:
    values = sorted(histogram.items())
    total = sum(count for _, count in values)
    if not total:
        return None
    lower, upper = nth(values, (total - 1) // 2), nth(values, total // 2)
    return (lower + upper) / 2


def nearest_rank(histogram: Mapping[int, int], pct: float) -> int | None:
    """The pct-th percentile by nearest rank: the smallest value with at least pct% of claims at or below it."""
    values = sorted(histogram.items())
    total = sum(count for _, count in values)
    return None if not total else nth(values, max(math.ceil(pct / 100 * total), 1) - 1)


def nth(values: list[tuple[int, int]], index: int) -> int:
    """The index-th (0-based) value of a sorted histogram."""
    seen = 0
    for value, count in values:
        seen += count
        if index < seen:
            return value
    raise IndexError(index)


def figures_of(rows: Iterable[MonthRow], payer: str, month: dt.date) -> Figures:
    rows = list(rows)
    days: Counter[int] = Counter()
    categories: Counter[str] = Counter()
    carcs: Counter[str] = Counter()
    for row in rows:
        days.update({int(k): int(v) for k, v in row.days.items()})
        categories.update({k: int(v) for k, v in row.denial_categories.items()})
        carcs.update({k: int(v) for k, v in row.denial_carcs.items()})

    def total(name: str) -> Any:
        return sum((getattr(row, name) for row in rows), Decimal(0) if name not in INTEGERS else 0)

    payments, plb = Decimal(total("payments")), Decimal(total("provider_adjustments"))
    return Figures(
        payer=payer, month=month, claims_adjudicated=total("claims"), claims_denied=total("denied"),
        first_pass_claims=total("first_pass_claims"), first_pass_denied=total("first_pass_denied"),
        first_pass_denial_rate=percent(total("first_pass_denied"), total("first_pass_claims")),
        first_pass_denial_rate_dollars=percent(total("first_pass_denied_billed"), total("first_pass_billed")),
        payments=payments, provider_adjustments=plb, net_payments=payments - plb,
        patient_responsibility=Decimal(total("patient_responsibility")),
        contractual_adjustments=Decimal(total("contractual")),
        days_to_payment_median=median(days), days_to_payment_p90=nearest_rank(days, 90),
        denial_categories=dict(categories.most_common()), denial_carcs=dict(carcs.most_common()),
        reversed_later=total("reversed_later"), unmatched_reversals=total("unmatched_reversals"))


INTEGERS = frozenset({"claims", "denied", "first_pass_claims", "first_pass_denied", "reversed_later",
                      "unmatched_reversals"})


def by_payer_and_month(rows: Iterable[MonthRow], payer_names: Mapping[str, str]) -> list[Figures]:
    """One Figures per (payer, month), then one per month over every payer (payer = ALL_PAYERS), months in
    order."""
    rows = list(rows)
    out = []
    for month in sorted({row.month for row in rows}):
        in_month = [row for row in rows if row.month == month]
        for payer_id in sorted({row.payer_id for row in in_month}):
            name = payer_names.get(payer_id, payer_id)
            out.append(figures_of([row for row in in_month if row.payer_id == payer_id], name, month))
        out.append(figures_of(in_month, ALL_PAYERS, month))
    return out
