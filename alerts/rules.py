"""Rules as pure functions: a KPI series in, a verdict out. No database, no clock.

Kinds (SPEC section 5): threshold (warn/crit, for_periods, recover), baseline (worse than the pre-go-live
median by more than a tolerance), glide path (behind the expected first-year improvement), trend (worse in N
consecutive periods), spc (a deteriorating special cause on an XmR chart: alerts/spc.py). Freshness lives in
feeds/freshness.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import median
from typing import Any, NamedTuple

from alerts.spc import Chart, Limits, Signal, judge, newest
from config import Kpi, Practice, ThresholdOverride, Vendor
from config.schema import CatalogDefaults, GlidePath, SpcRule, Tolerance
from pulse.schedule import pending_checkins

SEVERITY_ORDER = {"warning": 1, "critical": 2}


@dataclass(frozen=True)
class Thresholds:
    """Every setting the rules need for one KPI of one vendor, after overrides."""

    better: str
    warn: float | None
    crit: float | None
    for_periods: int
    recover: float | None = None
    tolerance: Tolerance | None = None
    glide: GlidePath | None = None
    trend_periods: int = 0
    escalate_after: int = 3  # months in breach in a row (alerts/record.py); 0: never
    spc: SpcRule | None = None


class Point(NamedTuple):
    """One observed value. A named tuple, not a frozen dataclass: every evaluation and digest builds hundreds per
    practice, and a frozen dataclass's __init__ (object.__setattr__ per field) cost several times as much."""

    period: str
    period_start: dt.date
    period_end: dt.date
    value: float
    feed_file_id: int | None = None  # the file it came in (evaluation reads when it arrived, for late data)


@dataclass(frozen=True)
class Verdict:
    """What the latest data says. severity None: no breach. held: breach seen for `for_periods` periods."""

    severity: str | None
    held: bool
    value: float
    threshold: float | None
    period: str
    period_end: dt.date
    baseline: float | None = None
    expected: float | None = None
    recover: float | None = None  # set while a firing alert is held open only by its recovery line
    # spc: the special cause (outside, shift, trend, crossings), its side (up, down), how many periods it spans and
    # the line it is about (the limit it crossed, the centre line of a shift or crossings, a trend's first value).
    signal: str | None = None
    side: str | None = None
    run: int | None = None
    line: float | None = None


# The rules whose verdict is a limit the value is held to; glide path and trend judge a path, not a limit.
LIMIT_RULES = ("threshold", "baseline")


def thresholds_for(kpi: Kpi, practice: Practice, vendor: Vendor, kpi_key: str,
                   defaults: CatalogDefaults | None = None) -> Thresholds:
    """Catalog default, then the practice's override, then the vendor's: the most specific wins."""
    overrides = [o for o in (practice.overrides.get(kpi_key), vendor.overrides.get(kpi_key)) if o is not None]
    return thresholds_with(kpi, defaults, overrides)


def thresholds_with(kpi: Kpi, defaults: CatalogDefaults | None,
                    overrides: Sequence[ThresholdOverride] = ()) -> Thresholds:
    settings: dict[str, Any] = {
        "warn": kpi.warn, "crit": kpi.crit, "for_periods": kpi.for_periods, "recover": kpi.recover,
        "tolerance": kpi.baseline or (defaults.baseline if defaults and kpi.rule == "baseline" else None),
        "glide": kpi.glide_path,
        "trend_periods": kpi.trend_periods if kpi.trend_periods is not None else (
            defaults.trend_periods if defaults else 0),
        "escalate_after": kpi.escalate_after if kpi.escalate_after is not None else (
            defaults.escalate_after if defaults else 3),
    }
    for override in overrides:
        settings.update(override_settings(override))
    return Thresholds(better=kpi.better, spc=spc_rule_for(kpi, defaults, overrides), **settings)


def spc_rule_for(kpi: Kpi, defaults: CatalogDefaults | None, overrides: Sequence[ThresholdOverride]
                 ) -> SpcRule | None:
    """The catalog's default SPC settings, the KPI's, then each override's fields: None when SPC is off."""
    rule = defaults.spc if defaults is not None else None
    if kpi.spc is not None or kpi.rule == "spc":
        rule = (rule or SpcRule()).merged(kpi.spc)
    for override in overrides:
        if override.spc is not None:
            rule = (rule or SpcRule()).merged(override.spc)
    return rule if rule is not None and rule.enabled else None


def override_settings(override: ThresholdOverride) -> dict[str, Any]:
    given = {"warn": override.warn, "crit": override.crit, "for_periods": override.for_periods,
             "recover": override.recover, "tolerance": override.baseline, "glide": override.glide_path,
             "trend_periods": override.trend_periods, "escalate_after": override.escalate_after}
    return {key: value for key, value in given.items() if value is not None}


def worse_than(value: float, bound: float | None, better: str) -> bool:
    if bound is None:
        return False
    return value > bound if better == "lower" else value < bound


def severity_of(value: float, thresholds: Thresholds) -> tuple[str | None, float | None]:
    if worse_than(value, thresholds.crit, thresholds.better):
        return "critical", limit_for(thresholds, "critical")
    if worse_than(value, thresholds.warn, thresholds.better):
        return "warning", limit_for(thresholds, "warning")
    return None, None


def limit_for(thresholds: Thresholds, severity: str | None) -> float | None:
    """The one limit vendorwatch states for a KPI: the bound a critical value crossed, else the warning line (the
    critical one when there is none), which a warning crossed and a healthy or recovering value stays inside.
    Alert messages, digest lines, the scorecard and recovery lines all state this number, never `recover`."""
    if severity == "critical" and thresholds.crit is not None:
        return thresholds.crit
    return thresholds.warn if thresholds.warn is not None else thresholds.crit


def judge_threshold(series: Sequence[Point], thresholds: Thresholds, firing: bool = False) -> Verdict | None:
    """Judge the newest point of a series ordered oldest first; None for an empty series.

    `firing`: the alert is firing now. With `recover` set it then stays firing (as a warning) until the value is
    better than `recover`, so a KPI hovering at the line does not flap; the verdict still states the warning line
    as its limit, and `recover` as the line it must pass to clear."""
    if not series:
        return None
    latest = series[-1]
    severity, _ = severity_of(latest.value, thresholds)
    recover = None
    recovering = firing and thresholds.recover is not None
    if severity is None and recovering and not worse_than(thresholds.recover, latest.value, thresholds.better):  # type: ignore[arg-type]
        severity, recover = "warning", thresholds.recover
    recent = series[-thresholds.for_periods:]
    held = len(recent) == thresholds.for_periods and all(severity_of(p.value, thresholds)[0] for p in recent)
    return Verdict(severity, held or (firing and severity is not None), latest.value,
                   limit_for(thresholds, severity), latest.period, latest.period_end, recover=recover)


def baseline_of(points: Sequence[Point], go_live: dt.date, months: int, min_periods: int = 3) -> float | None:
    """Median of the values before go-live, within `months`; None below `min_periods` periods."""
    window_start = go_live - dt.timedelta(days=months * 31)
    before = [p.value for p in points if window_start <= p.period_start < go_live]
    return round(median(before), 2) if len(before) >= min_periods else None


def baseline_bound(baseline: float, tolerance_pct: float | None, tolerance_points: float | None,
                   better: str) -> float | None:
    """The value past which the KPI is worse than baseline by more than the tolerance (the tighter one wins)."""
    sign = 1 if better == "lower" else -1
    bounds = []
    if tolerance_pct is not None:
        bounds.append(baseline + sign * abs(baseline) * tolerance_pct / 100)
    if tolerance_points is not None:
        bounds.append(baseline + sign * tolerance_points)
    if not bounds:
        return None
    return min(bounds) if better == "lower" else max(bounds)


def judge_baseline(series: Sequence[Point], baseline: float | None, thresholds: Thresholds) -> Verdict | None:
    tolerance = thresholds.tolerance
    if not series or baseline is None or tolerance is None:
        return None
    latest = series[-1]
    warn = baseline_bound(baseline, tolerance.warn_pct, tolerance.warn_points, thresholds.better)
    crit = baseline_bound(baseline, tolerance.crit_pct, tolerance.crit_points, thresholds.better)
    as_thresholds = Thresholds(thresholds.better, warn, crit, 1)
    severity, _ = severity_of(latest.value, as_thresholds)
    return Verdict(severity, True, latest.value, round_or_none(limit_for(as_thresholds, severity)), latest.period,
                   latest.period_end, baseline=baseline)


def months_after(go_live: dt.date, day: dt.date) -> int:
    return max(0, (day.year - go_live.year) * 12 + day.month - go_live.month)


def glide_expected(baseline: float, glide: GlidePath, better: str, months: int) -> float:
    """baseline x (1 - improvement x m/12) for the first year (SPEC section 5), then flat."""
    progress = glide.improvement * min(months, 12) / 12
    return baseline * (1 - progress) if better == "lower" else baseline * (1 + progress)


def judge_glide(series: Sequence[Point], baseline: float | None, thresholds: Thresholds,
                go_live: dt.date) -> Verdict | None:
    glide = thresholds.glide
    if not series or baseline is None or glide is None:
        return None
    if glide.starting_above is not None and not worse_than(baseline, glide.starting_above, thresholds.better):
        return None  # the path is for practices that started in trouble
    recent = series[-glide.for_periods:]
    off = [worse_than(p.value, glide_expected(baseline, glide, thresholds.better,
                                              months_after(go_live, p.period_start)), thresholds.better)
           for p in recent]
    latest = series[-1]
    expected = round(glide_expected(baseline, glide, thresholds.better, months_after(go_live, latest.period_start)), 2)
    held = len(recent) == glide.for_periods and all(off)
    return Verdict("warning" if off[-1] else None, held, latest.value, expected, latest.period, latest.period_end,
                   baseline=baseline, expected=expected)


def judge_trend(series: Sequence[Point], thresholds: Thresholds) -> Verdict | None:
    """Worse in each of the last N periods, even while inside the threshold: a warning."""
    n = thresholds.trend_periods
    if n <= 0 or len(series) < n + 1:
        return None
    window = series[-(n + 1):]
    worsening = all(worse_than(later.value, earlier.value, thresholds.better)
                    for earlier, later in pairwise(window))
    latest = series[-1]
    return Verdict("warning" if worsening else None, True, latest.value, window[0].value, latest.period,
                   latest.period_end)


@dataclass(frozen=True)
class SpcView:
    """A series' control chart: the points it judges (the baseline window first) and what it found."""

    points: Sequence[Point]
    chart: Chart


# The special cause an alert states when several hold at once: the plainest evidence first.
SIGNAL_ORDER = {"outside": 0, "shift": 1, "trend": 2, "crossings": 3}


def spc_points(series: Sequence[Point], history: Sequence[Point], rule: SpcRule, go_live: dt.date,
               learning_days: int) -> Sequence[Point] | None:
    """The points a series' chart judges, its baseline window first: the first `window` points after the learning
    period, or the last `window` before go-live (`history`) and then the series from go-live. None while that
    window is not full."""
    if rule.baseline == "pre_go_live":
        return [*history[-rule.window:], *series] if len(history) >= rule.window else None
    settled = go_live + dt.timedelta(days=learning_days)
    if len(series) < rule.window or series[-rule.window].period_start < settled:
        return None  # fewer than `window` points in all, or in the last `window`: cheap, and the usual case
    judged = [p for p in series if p.period_start >= settled]
    return judged if len(judged) >= rule.window else None


def spc_view(series: Sequence[Point], history: Sequence[Point], thresholds: Thresholds, go_live: dt.date,
             learning_days: int) -> SpcView | None:
    """The whole chart of a series (the digest draws it); None while its window is not full, or SPC is off."""
    rule = thresholds.spc
    judged = None if rule is None or not series else spc_points(series, history, rule, go_live, learning_days)
    if rule is None or judged is None:
        return None
    chart = judge([p.value for p in judged], rule.window, thresholds.better, shift=rule.shift, trend=rule.trend,
                  crossings=rule.crossings)
    return SpcView(judged, chart)


def judge_spc(series: Sequence[Point], history: Sequence[Point], thresholds: Thresholds, go_live: dt.date,
              learning_days: int) -> Verdict | None:
    """A warning while a deteriorating special cause includes the newest value; its limit is the control limit
    on the worse side, its baseline the centre line (the baseline window's mean). Only the newest value's
    signals are read (alerts.spc.newest): evaluation judges every series of every practice."""
    rule = thresholds.spc
    judged = None if rule is None or not series else spc_points(series, history, rule, go_live, learning_days)
    if rule is None or judged is None:
        return None
    limits, current = newest([p.value for p in judged], rule.window, thresholds.better, shift=rule.shift,
                             trend=rule.trend, crossings=rule.crossings)
    latest = judged[-1]
    worse_limit = limits.upper if thresholds.better == "lower" else limits.lower
    worst = sorted((s for s in current if s.direction == "deteriorating"), key=lambda s: SIGNAL_ORDER[s.kind])
    signal = worst[0] if worst else None
    return Verdict("warning" if signal else None, True, latest.value, round(worse_limit, 2), latest.period,
                   latest.period_end, baseline=round(limits.mean, 2), signal=signal.kind if signal else None,
                   side=signal.side if signal else None, run=signal.length if signal else None,
                   line=signal_line(judged, limits, signal, rule) if signal else None)


def signal_line(judged: Sequence[Point], limits: Limits, signal: Signal, rule: SpcRule) -> float:
    """The line a signal is about: the limit a point crossed, the centre line a shift or too few crossings sit
    on one side of (the median for Anhoej's rules, the mean for a fixed shift), a trend's first value."""
    if signal.kind == "outside":
        return round(limits.upper if signal.side == "up" else limits.lower, 2)
    if signal.kind == "trend":
        return judged[signal.start].value
    fixed_shift = signal.kind == "shift" and isinstance(rule.shift, int)
    return round(limits.mean if fixed_shift else limits.median, 2)


def judge_latest(points: Sequence[Point], thresholds: Thresholds, baseline: float | None, go_live: dt.date,
                 learning: bool, firing: bool, history: Sequence[Point] = (),
                 learning_days: int = 0) -> dict[str, Verdict]:
    """The verdict of each rule kind that applies, for evaluation and the digest's scorecard alike. In the
    learning period, only the threshold rule speaks. `firing`: the threshold alert is firing (its hysteresis).
    `history`: the points before go-live (an SPC baseline window may be there)."""
    verdicts: dict[str, Verdict | None] = {}
    if thresholds.warn is not None or thresholds.crit is not None:
        verdicts["threshold"] = judge_threshold(points, thresholds, firing)
    if not learning:
        verdicts["baseline"] = judge_baseline(points, baseline, thresholds)
        verdicts["glide_path"] = judge_glide(points, baseline, thresholds, go_live)
        verdicts["trend"] = judge_trend(points, thresholds)
        breached = any(v is not None and v.severity for rule, v in verdicts.items() if rule in LIMIT_RULES)
        if thresholds.spc is not None and not breached:
            # While a limit rule speaks for the value, its alert tells it: an SPC alert would say the same
            # twice. No verdict: an SPC alert already open stays as it is until the limit rule is quiet again.
            verdicts["spc"] = judge_spc(points, history, thresholds, go_live, learning_days)
    return {rule: verdict for rule, verdict in verdicts.items() if verdict is not None}


def round_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def is_stale(latest_end: dt.date, cadence: str, as_of: dt.date, allowed_days: int | None = None) -> bool:
    """Older than two reporting periods: the feed is late, and a stale value must not open or close an alert.
    allowed_days: the window when it is not a vendor feed's (the staff pulse's own cadence)."""
    if allowed_days is None:
        allowed_days = 21 if cadence == "weekly" else 62
    return as_of - latest_end > dt.timedelta(days=allowed_days)


def arrived_late(period_end: dt.date, received: dt.date, cadence: str, as_of: dt.date,
                 allowed_days: int | None = None) -> bool:
    """Stale already when it arrived, so never judged as current, and arrived within the stale window before
    as_of: news, however old its period. A feed months late is judged for as long as one on time would be,
    counted from the day it came; data that was judged when current stays quiet once stale."""
    return (is_stale(period_end, cadence, received, allowed_days) and received <= as_of
            and not is_stale(received, cadence, as_of, allowed_days))


def in_learning_period(period_start: dt.date, go_live: dt.date, learning_days: int) -> bool:
    return go_live <= period_start < go_live + dt.timedelta(days=learning_days)


# The staff check-in schedule is pulse/'s; what being late means as an alert is decided here.
def overdue_verdict(practice: Practice, closings: Sequence[dt.date], as_of: dt.date,
                    start: dt.date | None = None) -> Verdict:
    """The 'pulse overdue' verdict: value = days since the oldest missed check-in was due; period = that day."""
    grace = dt.timedelta(days=practice.pulse.grace_days)
    pending = pending_checkins(practice, closings, as_of, start)
    late = [checkin for checkin in pending if as_of > checkin.due_on + grace]
    if not late:
        due = pending[0].due_on if pending else as_of
        return Verdict(None, True, 0.0, None, due.isoformat(), due)
    oldest = late[0]
    further = dt.timedelta(days=practice.pulse.cadence_days or 0)
    severity = "critical" if as_of > oldest.due_on + grace + further else "warning"
    return Verdict(severity, True, float((as_of - oldest.due_on).days), None, oldest.due_on.isoformat(),
                   oldest.due_on)
