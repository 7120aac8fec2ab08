"""alerts/spc.py against two existing SPC implementations on 240 generated series: same series, same answers.

- controlchartspy (the PowerBI-SPC engine of Western Australia Health, faithful to NHS Making Data Count): the
  centre line, the XmR limits from the first `window` points (num_points_subset), points beyond the limits, shifts
  of 7 on one side of the mean, trends of 6, each with its direction (improvement or deterioration), and the
  variation and assurance icons as its code derives them. It takes sigma as average moving range / 1.128 (3 sigma =
  2.6596 x), where NHS guidance and we round to 2.66: the limits are compared to that difference, and a point that
  falls between the two is not counted either way (with these seeds none does; the test says how many did).
- clinical-qikit's run chart (qicharts2's method, baseline frozen at `window`): the median, the points off it, the
  longest run and the number of crossings, and the too-few-crossings signal. Its run-length signal is not
  compared: it flags a run of floor(log2(n)) + 3 or more, where Anhoej and Olesen (2014) and qicharts2 flag one
  longer than round(log2(n) + 3) (tests/test_spc.py checks ours against the paper's table).
"""

from __future__ import annotations

import datetime as dt
import random
import warnings
from collections.abc import Iterator

import pytest

from alerts.spc import XMR_CONSTANT, Chart, assurance, judge

SERIES, WINDOW_SIZES = 240, (8, 12, 15)
SIGMA_FACTOR = 3 / 1.128  # controlchartspy's


def generated() -> Iterator[tuple[int, list[float], int, str, float]]:
    """(seed, values, window, better, target): noise around a level, with a shift, a drift or an outlier now and
    then, so every kind of signal turns up."""
    for seed in range(SERIES):
        rng = random.Random(seed)
        window = WINDOW_SIZES[seed % len(WINDOW_SIZES)]
        length = rng.randint(window + 6, window + 30)
        level, spread = rng.uniform(5, 95), rng.uniform(0.5, 4)
        values = [rng.gauss(level, spread) for _ in range(length)]
        start = rng.randint(window, length - 1)
        change = seed % 4
        for index in range(start, length):
            if change == 1:  # a shift
                values[index] += spread * rng.uniform(1, 2.5)
            elif change == 2:  # a drift
                values[index] += spread * 0.6 * (index - start)
        if change == 3:
            values[start] += spread * rng.choice((-5, 5))
        better = rng.choice(("lower", "higher"))
        target = level + spread * rng.uniform(-6, 6)
        yield seed, [round(value, 3) for value in values], window, better, target


def reference(values: list[float], window: int, better: str) -> list[dict[str, object]]:
    from controlchartspy import spc

    keys = [dt.date(2020 + i // 12, i % 12 + 1, 1) for i in range(len(values))]
    direction = "increase" if better == "higher" else "decrease"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chart = spc(data={"month": keys, "y": values}, keys="month", numerators="y", return_objs="limits",
                    spc_settings={"num_points_subset": window, "outliers_in_limits": True},
                    outlier_settings={"improvement_direction": direction, "astronomical": True, "shift": True,
                                      "shift_n": 7, "trend": True, "trend_n": 6})
    assert chart.limits is not None
    return chart.limits


def flags(chart: Chart, kind: str, length: int) -> list[str]:
    """Per point, as controlchartspy flags it: 'improvement', 'deterioration' or 'none'."""
    marked = ["none"] * length
    for signal in chart.signals:
        if signal.kind == kind:
            for index in range(signal.start, signal.end + 1):
                marked[index] = "improvement" if signal.direction == "improving" else "deterioration"
    return marked


def variation_icon(last_flags: list[str], better: str) -> str:
    """controlchartspy's variation icon from the newest point's flags (its function `h`)."""
    high = better == "higher"
    icons = {"improvement": "improvementHigh" if high else "improvementLow",
             "deterioration": "concernLow" if high else "concernHigh"}
    found = [icons[flag] for flag in ("improvement", "deterioration") if flag in last_flags]
    return "/".join(found) or "commonCause"


def our_variation_icon(chart: Chart, better: str) -> str:
    newest = {signal.direction for signal in chart.current() if signal.kind in ("outside", "shift", "trend")}
    return variation_icon(["improvement" if "improving" in newest else "",
                           "deterioration" if "deteriorating" in newest else ""], better)


CASES = list(generated())


def test_enough_series_and_every_signal_seen() -> None:
    kinds = {signal.kind for _, values, window, better, _ in CASES
             for signal in judge(values, window, better, shift=7).signals}
    assert len(CASES) >= 200
    assert kinds == {"outside", "shift", "trend", "crossings"}


@pytest.mark.parametrize(("seed", "values", "window", "better", "target"), CASES, ids=lambda v: None)
def test_same_as_controlchartspy(seed: int, values: list[float], window: int, better: str, target: float) -> None:
    ours = judge(values, window, better, shift=7, trend=6, crossings=False)
    theirs = reference(values, window, better)
    limits = ours.limits
    centre = theirs[0]["target"]
    assert limits.mean == pytest.approx(centre, rel=1e-9, abs=1e-9)
    sigma = (float(theirs[0]["ul99"]) - float(centre)) / 3  # type: ignore[arg-type]
    assert limits.average_moving_range == pytest.approx(sigma * 1.128, rel=1e-9, abs=1e-9)
    rounding = (XMR_CONSTANT - SIGMA_FACTOR) * limits.average_moving_range
    assert limits.upper - float(theirs[0]["ul99"]) == pytest.approx(rounding, abs=1e-9)  # type: ignore[arg-type]
    assert float(theirs[0]["ll99"]) - limits.lower == pytest.approx(rounding, abs=1e-9)  # type: ignore[arg-type]
    between = {i for i, v in enumerate(values) if float(theirs[0]["ul99"]) < v <= limits.upper  # type: ignore[arg-type]
               or limits.lower <= v < float(theirs[0]["ll99"])}  # type: ignore[arg-type]
    for kind, column in (("outside", "astpoint"), ("shift", "shift"), ("trend", "trend")):
        expected = [row[column] for row in theirs]
        got = flags(ours, kind, len(values))
        if kind == "outside":
            expected = [flag for i, flag in enumerate(expected) if i not in between]
            got = [flag for i, flag in enumerate(got) if i not in between]
        assert got == expected, f"{kind} differs for seed {seed}"
    if len(values) - 1 not in between:
        last_flags = [str(theirs[-1][column]) for column in ("astpoint", "shift", "trend")]
        assert our_variation_icon(ours, better) == variation_icon(last_flags, better)
    # Assurance (its function `c`, on its limits): target beyond the upper limit fails when higher is better.
    upper, lower = float(theirs[0]["ul99"]), float(theirs[0]["ll99"])  # type: ignore[arg-type]
    if not (upper < target <= limits.upper or limits.lower <= target < lower):
        theirs_assurance = ("fail" if target > upper else "pass" if target < lower else "hit and miss")
        if better == "lower" and theirs_assurance != "hit and miss":
            theirs_assurance = "pass" if theirs_assurance == "fail" else "fail"
        assert assurance(limits, target, better) == theirs_assurance


@pytest.mark.parametrize(("seed", "values", "window", "better", "target"), CASES, ids=lambda v: None)
def test_same_run_chart_counts_as_qikit(seed: int, values: list[float], window: int, better: str,
                                        target: float) -> None:
    from qikit.spc import qic

    ours = judge(values, window, better)
    result = qic(y=values, chart="run", freeze=window)
    theirs = result.summary
    assert ours.limits.median == pytest.approx(float(result.data["cl"].iloc[0]), rel=1e-12)
    assert (ours.useful, ours.longest_run, ours.crossings) == (
        theirs["n_useful"], theirs["longest_run"], theirs["n_crossings"])
    assert any(s.kind == "crossings" for s in ours.signals) == theirs["crossings_signal"]
