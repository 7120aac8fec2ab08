"""Statistical process control as pure functions: values in, centre line, limits and signals out. No database, no
clock, no configuration objects (alerts/rules.py turns settings and points into these calls).

An XmR (individuals) chart as NHS "Making Data Count" draws it: the centre line is the mean of a baseline window
and the limits are mean +/- 2.66 x the average moving range of that window. Judged against them, every point from
the window's first on:
- outside: a point beyond a limit;
- shift: a run of points on one side of a centre line. Either Anhoej's run chart rule (the median; a signal when
  the longest run is longer than round(log2(n) + 3), n the points not on the median) or a fixed length on the mean
  (NHS: 7). Points on the line neither count nor break a run;
- trend: `trend` points each higher (or each lower) than the one before; a repeated value counts once;
- crossings: Anhoej's other rule, too few crossings of the median (fewer than the 5th percentile of
  Binomial(n - 1, 0.5)), a whole-series signal.
Each signal says its side (up or down) and, from the KPI's `better`, whether it is improving or deteriorating.
tests/test_spc.py has them as tables; tests/test_spc_crosscheck.py compares them with controlchartspy (the
PowerBI-SPC engine, NHS rules) on generated series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from statistics import fmean, median
from typing import Literal

XMR_CONSTANT = 2.66  # 3 / d2 (1.128) for moving ranges of two, as NHS Making Data Count rounds it
NHS_SHIFT = 7
ANHOEJ = "anhoej"
Side = Literal["up", "down"]
Kind = Literal["outside", "shift", "trend", "crossings"]


@dataclass(frozen=True)
class Limits:
    """The baseline window's centre lines and natural process limits."""

    mean: float
    median: float
    lower: float
    upper: float
    average_moving_range: float
    window: int  # points in the baseline window


@dataclass(frozen=True)
class Signal:
    """One special cause. `start`/`end`: indexes (inclusive) into the judged values; `current`: it includes the
    newest value (a crossings signal is of the whole series, so always current)."""

    kind: Kind
    side: Side
    direction: Literal["improving", "deteriorating"]
    start: int
    end: int
    current: bool

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class Chart:
    """The chart of a judged series: its limits, signals, and the Anhoej counts behind the run chart rules."""

    limits: Limits
    signals: tuple[Signal, ...]
    useful: int  # points not on the median
    longest_run: int
    run_limit: int  # a longest run above this is a shift (Anhoej)
    crossings: int
    crossings_limit: int  # fewer crossings than this is a signal (Anhoej)

    def current(self, direction: str | None = None) -> tuple[Signal, ...]:
        return tuple(s for s in self.signals if s.current and direction in (None, s.direction))


def xmr_limits(window: Sequence[float]) -> Limits:
    """Mean +/- 2.66 x average moving range of the window (at least two values)."""
    if len(window) < 2:
        raise ValueError("an XmR chart needs at least two values in its baseline window")
    ranges = [abs(later - earlier) for earlier, later in pairwise(window)]
    centre, spread = fmean(window), fmean(ranges)
    return Limits(centre, median(window), centre - XMR_CONSTANT * spread, centre + XMR_CONSTANT * spread, spread,
                  len(window))


def anhoej_run_limit(useful: int) -> int:
    """The longest run expected of random data: round(log2(n) + 3) (Anhoej and Olesen 2014, as qicharts2)."""
    return round(math.log2(useful) + 3) if useful > 0 else 0


@cache  # a few dozen distinct n, asked for every series of every practice
def anhoej_crossings_limit(useful: int) -> int:
    """The fewest crossings expected of random data: qbinom(0.05, n - 1, 0.5), exactly."""
    if useful < 2:
        return 0
    trials, total, cumulative = useful - 1, 2 ** (useful - 1), 0
    for k in range(trials + 1):
        cumulative += math.comb(trials, k)
        if cumulative * 20 >= total:  # P(X <= k) >= 0.05, in integers
            return k
    return trials


def side_of(value: float, line: float) -> Side | None:
    if value > line:
        return "up"
    return "down" if value < line else None


def direction_of(side: Side, better: str) -> Literal["improving", "deteriorating"]:
    improving = (side == "up") == (better == "higher")
    return "improving" if improving else "deteriorating"


def runs(values: Sequence[float], line: float) -> list[tuple[Side, int, int, int]]:
    """Runs of points on one side of `line`: (side, first index, last index, points counted). A point on the line
    neither counts nor breaks the run it sits in."""
    found: list[tuple[Side, int, int, int]] = []
    for index, value in enumerate(values):
        side = side_of(value, line)
        if side is None:
            continue
        if found and found[-1][0] == side:
            _, start, _, count = found[-1]
            found[-1] = (side, start, index, count + 1)
        else:
            found.append((side, index, index, 1))
    return found


def trends(values: Sequence[float], length: int) -> list[tuple[Side, int, int]]:
    """Stretches of at least `length` points each above (or below) the one before; a value equal to the one
    before counts once (it neither extends nor breaks the stretch, and belongs to it). (side, first index, last
    index)."""
    if length < 2 or not values:
        return []
    distinct = [0] + [i for i in range(1, len(values)) if values[i] != values[i - 1]]
    steps: list[Side | None] = [side_of(values[b], values[a]) for a, b in pairwise(distinct)]
    found: list[tuple[Side, int, int]] = []
    first = 0  # position in `distinct` where the current stretch starts
    for position in range(1, len(distinct) + 1):
        if position < len(distinct) and (position == first + 1 or steps[position - 1] == steps[position - 2]):
            continue
        side = steps[position - 2] if position - 1 > first else None
        if side is not None and position - first >= length:
            found.append((side, distinct[first], through_repeats(values, distinct[position - 1])))
        first = position - 1
    return found


def through_repeats(values: Sequence[float], index: int) -> int:
    """The last index of the repeats of values[index] that follow it."""
    while index + 1 < len(values) and values[index + 1] == values[index]:
        index += 1
    return index


def judge(values: Sequence[float], window: int, better: str, shift: int | str = ANHOEJ, trend: int = 6,
          crossings: bool = True) -> Chart:
    """The chart of `values` (oldest first) whose first `window` values are the baseline."""
    limits = xmr_limits(values[:window])
    last = len(values) - 1
    signals: list[Signal] = []

    def add(kind: Kind, side: Side, start: int, end: int) -> None:
        signals.append(Signal(kind, side, direction_of(side, better), start, end, end == last))

    for index, value in enumerate(values):
        if value > limits.upper or value < limits.lower:
            add("outside", "up" if value > limits.upper else "down", index, index)
    median_runs = runs(values, limits.median)
    useful = sum(count for *_, count in median_runs)
    run_limit = anhoej_run_limit(useful)
    longest = max((count for *_, count in median_runs), default=0)
    if shift == ANHOEJ:
        for side, start, end, count in median_runs:
            if count > run_limit:
                add("shift", side, start, end)
    else:
        for side, start, end, count in runs(values, limits.mean):
            if count >= int(shift):
                add("shift", side, start, end)
    for side, start, end in trends(values, trend):
        add("trend", side, start, end)
    crossings_limit = anhoej_crossings_limit(useful)
    crossed = max(0, len(median_runs) - 1)
    if crossings and median_runs and crossed < crossings_limit:
        side = median_runs[-1][0]  # the side the series sits on now
        signals.append(Signal("crossings", side, direction_of(side, better), 0, last, True))
    return Chart(limits, tuple(signals), useful, longest, run_limit, crossed, crossings_limit)


def assurance(limits: Limits, target: float | None, better: str) -> str | None:
    """NHS assurance: will the process meet its target? 'pass' (every value the limits allow meets it), 'fail'
    (none does) or 'hit and miss'; None without a target."""
    if target is None:
        return None
    if better == "higher":
        return "pass" if limits.lower > target else "fail" if limits.upper < target else "hit and miss"
    return "pass" if limits.upper < target else "fail" if limits.lower > target else "hit and miss"


def newest(values: Sequence[float], window: int, better: str, shift: int | str = ANHOEJ, trend: int = 6,
           crossings: bool = True) -> tuple[Limits, tuple[Signal, ...]]:
    """What `judge(...).current()` finds, in one pass and a walk back from the newest value: evaluation asks only
    whether a special cause includes the newest value, for every series of every practice, so it must stay cheap
    (bench/evaluate.py). tests/test_spc.py checks it against `judge` on generated series."""
    limits = xmr_limits(values[:window])
    last = len(values) - 1
    found: list[Signal] = []

    def add(kind: Kind, side: Side, start: int) -> None:
        found.append(Signal(kind, side, direction_of(side, better), start, last, True))

    value = values[last]
    if value > limits.upper or value < limits.lower:
        add("outside", "up" if value > limits.upper else "down", last)
    line = limits.median
    useful = changes = run_start = run_count = 0
    run_side: Side | None = None
    for index, point in enumerate(values):
        side: Side | None = "up" if point > line else "down" if point < line else None
        if side is None:
            continue
        useful += 1
        if side == run_side:
            run_count += 1
        else:
            changes += run_side is not None
            run_side, run_start, run_count = side, index, 1
    newest_side = side_of(value, line)
    if shift == ANHOEJ:
        if newest_side is not None and run_count > anhoej_run_limit(useful):
            add("shift", newest_side, run_start)
    else:
        mean_run = run_back(values, limits.mean)
        if mean_run is not None and mean_run[2] >= int(shift):
            add("shift", mean_run[0], mean_run[1])
    rise = trend_back(values, trend)
    if rise is not None:
        add("trend", rise[0], rise[1])
    if crossings and run_side is not None and changes < anhoej_crossings_limit(useful):
        add("crossings", run_side, 0)
    return limits, tuple(found)


def run_back(values: Sequence[float], line: float) -> tuple[Side, int, int] | None:
    """The run on one side of `line` that includes the newest value: (side, first index, points counted)."""
    side = side_of(values[-1], line)
    if side is None:
        return None
    start, count = len(values) - 1, 0
    for index in range(len(values) - 1, -1, -1):
        here = side_of(values[index], line)
        if here is None:
            continue
        if here != side:
            break
        start, count = index, count + 1
    return side, start, count


def trend_back(values: Sequence[float], length: int) -> tuple[Side, int] | None:
    """The trend that includes the newest value, if it is `length` distinct values long: (side, first index)."""
    index = len(values) - 1
    while index > 0 and values[index - 1] == values[index]:
        index -= 1  # trailing repeats count once, with the value they repeat
    if length < 2 or index == 0:
        return None
    side = side_of(values[index], values[index - 1])
    count, start = 1, index
    for previous in range(index - 1, -1, -1):
        if values[previous] != values[start]:
            if side_of(values[start], values[previous]) != side:
                break
            count += 1
        start = previous  # a repeat joins the trend at its first index, as `trends` counts it
    if side is None or count < length:
        return None
    return side, start
