""""Reported figure disagrees with remittances": a vendor's KPI against the same month's figure recomputed from the
payers' 835s (pure). Rates are compared in points, dollars in percent of the remitted figure; a warning beyond
the tolerance, critical beyond twice it; a month with fewer remitted claims than `min_claims` is not judged."""

from __future__ import annotations

from dataclasses import dataclass

from config.schema import RemitTolerance


@dataclass(frozen=True)
class Check:
    severity: str | None  # None: they agree
    reported: float
    remitted: float
    claims: int  # the remitted claims behind the figure
    gap: float  # points for rates, percent of the remitted figure for dollars
    limit: float  # the warning line, in the same measure


def compare(reported: float, remitted: float, unit: str, claims: int, tolerance: RemitTolerance) -> Check | None:
    """None when there is too little to judge (few claims, or nothing remitted to compare dollars with)."""
    if claims < tolerance.min_claims:
        return None
    if unit == "%":
        gap, limit = abs(reported - remitted), tolerance.rate_points
    elif remitted:
        gap, limit = abs(reported - remitted) / abs(remitted) * 100, tolerance.dollars_pct
    else:
        return None
    severity = "critical" if gap > 2 * limit else "warning" if gap > limit else None
    return Check(severity, reported, remitted, claims, round(gap, 2), limit)
