"""A vendor's record on one KPI over time, as pure figures: months within target of the last 12, months in breach
in a row, the longest run, and whether it is getting better; and the escalation a long breach calls for.

Seed 003: pain that persists 3 to 6 months is the signal to act. A month is in breach when its value is past the
KPI's warning or critical limit (alerts.rules.severity_of, the limit the threshold rule holds it to); within
target when it is no worse than the target (or, with no target, not in breach). Only monthly periods count, after
go-live: the months before it are the practice's own, never the vendor's record. A month missing from the feed
breaks a run (nothing says it was in breach).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from alerts.rules import Point, Thresholds, Verdict, severity_of, worse_than
from storage.periods import MONTH

RECORD_MONTHS = 12
TREND_MONTHS = 3  # "getting better": the last 3 months' mean against the 3 before
ESCALATION_RULE = "escalation"


@dataclass(frozen=True)
class MonthMark:
    period: str
    value: float
    in_breach: bool
    within_target: bool


@dataclass(frozen=True)
class Record:
    months: tuple[MonthMark, ...]  # the last 12 months on record after go-live, oldest first

    @property
    def within_target(self) -> int:
        return sum(mark.within_target for mark in self.months)

    @property
    def breach_run(self) -> int:
        """Months in breach in a row, up to the latest month."""
        runs = breach_runs(self.months)
        return runs[-1] if runs and self.months and self.months[-1].in_breach else 0

    @property
    def longest_run(self) -> int:
        return max(breach_runs(self.months), default=0)


def month_index(period: str) -> int | None:
    match = MONTH.match(period)
    return None if match is None else int(match[1]) * 12 + int(match[2])


def breach_runs(months: Sequence[MonthMark]) -> list[int]:
    """The lengths of the runs of consecutive months in breach, in order."""
    runs: list[int] = []
    previous: int | None = None  # the previous month's index, while it was in breach
    for mark in months:
        if not mark.in_breach:
            previous = None
            continue
        index = month_index(mark.period)
        if runs and previous is not None and index == previous + 1:
            runs[-1] += 1
        else:
            runs.append(1)
        previous = index
    return runs


def record_of(points: Sequence[Point], thresholds: Thresholds, target: float | None, go_live: dt.date,
              months: int = RECORD_MONTHS) -> Record:
    """The last `months` monthly points after go-live, each marked in breach or not, within target or not."""
    monthly = [p for p in points if p.period_start >= go_live and month_index(p.period) is not None][-months:]
    marks = []
    for point in monthly:
        in_breach = severity_of(point.value, thresholds)[0] is not None
        within = not in_breach if target is None else not worse_than(point.value, target, thresholds.better)
        marks.append(MonthMark(point.period, point.value, in_breach, within))
    return Record(tuple(marks))


def improving(record: Record, better: str) -> bool | None:
    """Getting better: the mean of the last 3 months is better than the mean of the 3 before (None: fewer than 6
    months, or no change)."""
    values = [mark.value for mark in record.months]
    if len(values) < 2 * TREND_MONTHS:
        return None
    recent, before = fmean(values[-TREND_MONTHS:]), fmean(values[-2 * TREND_MONTHS:-TREND_MONTHS])
    if recent == before:
        return None
    return worse_than(before, recent, better)


def escalation_verdict(record: Record, escalate_after: int, latest: Point) -> Verdict:
    """Critical once the KPI has been in breach `escalate_after` months running. value: the months in breach in a
    row; threshold: escalate_after. Held at once: the months already waited."""
    run = record.breach_run
    severity = "critical" if run >= escalate_after else None
    return Verdict(severity, True, float(run), float(escalate_after), latest.period, latest.period_end)
