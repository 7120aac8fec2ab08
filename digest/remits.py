"""What the digest shows from the payers' 835s (issue 16): beside each verifiable KPI, the same month recomputed
from the remittances; and the month's denial reasons by payer against the months before the billing vendor's
go-live. Read-only."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from sqlalchemy.orm import Session

from config import Config, Practice
from digest.model import DenialReason, DenialReasons, KpiRow, RemitsCheck, VendorCard
from remits.categories import PREVENTABLE
from remits.figures import ALL_PAYERS, figures_of
from remits.summary import stored_months
from remits.verify import compare
from storage.models import RemitMonth

TOP_REASONS = 3  # categories shown per payer
BILLING_SERVICES = ("billing", "bundled")


def with_remits_checks(session: Session, config: Config, practice: Practice,
                       vendors: Iterable[VendorCard]) -> tuple[VendorCard, ...]:
    return tuple(replace(card, rows=tuple(checked_row(session, config, practice, row) for row in card.rows))
                 for card in vendors)


def checked_row(session: Session, config: Config, practice: Practice, row: KpiRow) -> KpiRow:
    figure = config.catalog.remits.checks.get(row.key)
    month = month_of(row.period)
    if figure is None or row.segment != "all" or month is None:
        return row
    stored = stored_months(session, practice.id, month)
    if not stored:
        return row
    figures = figures_of(stored, ALL_PAYERS, month)
    remitted = getattr(figures, figure, None)  # kpis.yaml names figures; tests/test_remits.py checks each exists
    if remitted is None:
        return row
    check = compare(row.value, float(remitted), row.unit, figures.claims_adjudicated,
                    practice.remits or config.catalog.remits.tolerance)
    judged = check is not None
    agrees = judged and check is not None and check.severity is None
    return replace(row, remits=RemitsCheck(figures.claims_adjudicated, float(remitted), judged, agrees))


def month_of(period: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        return None


def denial_reasons(session: Session, config: Config, practice: Practice, as_of: dt.date) -> DenialReasons | None:
    """The latest month of payment up to `as_of` with denials, its top categories by payer (and over all payers),
    each beside its share before the billing vendor's go-live."""
    rows = [row for row in stored_months(session, practice.id) if row.month <= as_of]
    denied = [row for row in rows if row.denied]
    if not denied:
        return None
    month = max(row.month for row in denied)
    go_lives = [v.go_live for v in practice.vendors if v.service in BILLING_SERVICES]
    before = [row for row in rows if go_lives and row.month < min(go_lives).replace(day=1)]
    now = [row for row in rows if row.month == month]
    names = config.catalog.remits.payers
    lines = [*payer_reasons(now, before, ALL_PAYERS, None)]
    for payer_id in sorted({row.payer_id for row in now if row.denied}, key=lambda p: names.get(p, p)):
        lines += payer_reasons(now, before, names.get(payer_id, payer_id), payer_id)
    return DenialReasons(month.isoformat()[:7], sum(r.claims for r in now), sum(r.denied for r in now), tuple(lines),
                         preventable_share(categories(now, None)), preventable_share(categories(before, None)))


def preventable_share(found: Counter[str]) -> float | None:
    total = sum(found.values())
    return None if not total else round(sum(found[c] for c in PREVENTABLE) / total * 100, 1)


def payer_reasons(now: list[RemitMonth], before: list[RemitMonth], payer: str,
                  payer_id: str | None) -> list[DenialReason]:
    current, earlier = categories(now, payer_id), categories(before, payer_id)
    total, earlier_total = sum(current.values()), sum(earlier.values())
    return [DenialReason(payer, category, count, round(count / total * 100, 1),
                         round(earlier[category] / earlier_total * 100, 1) if earlier_total else None)
            for category, count in current.most_common(TOP_REASONS)]


def categories(rows: Iterable[RemitMonth], payer_id: str | None) -> Counter[str]:
    found: Counter[str] = Counter()
    for row in rows:
        if payer_id is None or row.payer_id == payer_id:
            found.update({category: int(count) for category, count in row.denial_categories.items()})
    return found
