"""The verification rule (issue 16): the latest monthly value of a KPI that the payers' remittances also give
(kpis.yaml `remits.checks`) against those remittances, judged by remits.verify and then handled like every rule:
the same lifecycle, outbox, routes and learning period."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Sequence

from alerts.rules import Point, Verdict
from config import Config, Practice
from remits.figures import ALL_PAYERS, figures_of
from remits.verify import Check, compare
from storage.models import RemitMonth

REMITS_RULE = "remits"
MonthReader = Callable[[dt.date], Sequence[RemitMonth]]  # a practice's stored months of one month, every payer


def is_month(point: Point) -> bool:
    start, end = point.period_start, point.period_end
    return start.day == 1 and end.year == start.year and end.month == start.month and \
        end.day == calendar.monthrange(start.year, start.month)[1]


def remits_check(months: MonthReader, config: Config, practice: Practice, kpi_key: str, segment: str,
                 latest: Point) -> Check | None:
    figure = config.catalog.remits.checks.get(kpi_key)
    kpi = config.kpi(kpi_key)
    if figure is None or kpi is None or segment != "all" or not is_month(latest):
        return None
    rows = months(latest.period_start)
    if not rows:
        return None
    figures = figures_of(rows, ALL_PAYERS, latest.period_start)
    remitted = getattr(figures, figure, None)  # kpis.yaml names figures; tests/test_remits.py checks each exists
    if remitted is None:
        return None
    tolerance = practice.remits or config.catalog.remits.tolerance
    return compare(latest.value, float(remitted), kpi.unit, figures.claims_adjudicated, tolerance)


def remits_verdicts(months: MonthReader, config: Config, practice: Practice, kpi_key: str, segment: str,
                    latest: Point) -> dict[str, Verdict]:
    """{"remits": verdict} when the month can be judged, else nothing (an open alert keeps its state)."""
    check = remits_check(months, config, practice, kpi_key, segment, latest)
    if check is None:
        return {}
    # threshold and expected carry the remitted figure, which the message states beside the reported one.
    return {REMITS_RULE: Verdict(check.severity, True, latest.value, check.remitted, latest.period,
                                 latest.period_end, expected=check.remitted)}
