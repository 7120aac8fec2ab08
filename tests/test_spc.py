"""The SPC statistics as tables of hand-worked series (alerts/spc.py)."""

from __future__ import annotations

import pytest

from alerts.spc import (
    Limits,
    anhoej_crossings_limit,
    anhoej_run_limit,
    assurance,
    judge,
    runs,
    trends,
    xmr_limits,
)

# Window 10, 12, 11, 13, 12, 14, 13, 12, 11, 12, 13, 11: sum 144, mean 12; moving ranges 2 1 2 1 2 1 1 1 1 1 2
# (sum 15, average 15/11 = 1.3636); limits 12 -/+ 2.66 x 1.3636 = 8.3727 and 15.6273; median 12.
WINDOW: list[float] = [10, 12, 11, 13, 12, 14, 13, 12, 11, 12, 13, 11]


def test_xmr_limits_by_hand() -> None:
    limits = xmr_limits(WINDOW)
    assert limits.mean == 12
    assert limits.median == 12
    assert limits.average_moving_range == pytest.approx(15 / 11)
    assert limits.lower == pytest.approx(12 - 2.66 * 15 / 11)
    assert limits.upper == pytest.approx(12 + 2.66 * 15 / 11)


def test_a_window_of_one_value_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two values"):
        xmr_limits([4.0])


# Anhoej and Olesen (2014), table 1 (also qicharts2's): n useful points -> longest run allowed, fewest crossings.
@pytest.mark.parametrize(("n", "longest", "fewest"), [
    (10, 6, 2), (11, 6, 2), (12, 7, 3), (13, 7, 3), (14, 7, 4), (15, 7, 4), (16, 7, 4), (17, 7, 5), (18, 7, 5),
    (19, 7, 6), (20, 7, 6), (21, 7, 6), (22, 7, 7), (23, 8, 7), (24, 8, 8), (25, 8, 8), (26, 8, 8), (27, 8, 9),
    (28, 8, 9), (29, 8, 10), (30, 8, 10),
])
def test_anhoej_limits(n: int, longest: int, fewest: int) -> None:
    assert (anhoej_run_limit(n), anhoej_crossings_limit(n)) == (longest, fewest)


@pytest.mark.parametrize(("values", "line", "expected"), [
    ([1, 2, 3], 2, [("down", 0, 0, 1), ("up", 2, 2, 1)]),  # the point on the line is in no run
    ([3, 2, 3, 3], 2, [("up", 0, 3, 3)]),  # ... and does not break one
    ([1, 1, 3, 1], 2, [("down", 0, 1, 2), ("up", 2, 2, 1), ("down", 3, 3, 1)]),
    ([], 2, []),
])
def test_runs(values: list[float], line: float, expected: list[tuple[str, int, int, int]]) -> None:
    assert runs(values, line) == expected


@pytest.mark.parametrize(("values", "length", "expected"), [
    ([1, 2, 3, 4, 5, 6, 5], 6, [("up", 0, 5)]),
    ([1, 2, 3, 4, 5, 5], 6, []),  # a repeated value counts once
    ([1, 2, 2, 3, 4, 5, 6], 6, [("up", 0, 6)]),  # ... and does not break the trend
    ([6, 5, 4, 3, 2, 1, 2, 3], 6, [("down", 0, 5)]),
    ([1, 2, 3, 4, 5, 4, 3, 2, 1, 0], 5, [("up", 0, 4), ("down", 4, 9)]),  # the turning point is in both
    ([1, 2, 1, 2, 1, 2], 2, [("up", 0, 1), ("down", 1, 2), ("up", 2, 3), ("down", 3, 4), ("up", 4, 5)]),
    ([5, 5, 5], 2, []),
])
def test_trends(values: list[float], length: int, expected: list[tuple[str, int, int]]) -> None:
    assert trends(values, length) == expected


def kinds(values: list[float], better: str = "lower", **settings: object) -> list[tuple[str, str, str, int, bool]]:
    chart = judge(values, 12, better, **settings)  # type: ignore[arg-type]
    return [(s.kind, s.side, s.direction, s.length, s.current) for s in chart.signals]


def test_common_cause_has_no_signal() -> None:
    assert kinds([*WINDOW, 13, 11, 12, 10, 13, 12]) == []


def test_a_point_outside_the_limits_deteriorating_when_lower_is_better() -> None:
    assert kinds([*WINDOW, 16]) == [("outside", "up", "deteriorating", 1, True)]
    assert kinds([*WINDOW, 16], better="higher") == [("outside", "up", "improving", 1, True)]
    assert kinds([*WINDOW, 8, 12]) == [("outside", "down", "improving", 1, False)]


def test_a_shift_by_anhoej_needs_a_run_longer_than_its_limit() -> None:
    # The window has 8 points off its median 12 and ends below it; seven values above 12 make 15 useful points,
    # a run limit of round(log2(15) + 3) = 7 and a run of 7: not longer, no shift.
    assert kinds([*WINDOW, 13, 14, 13, 14, 13, 14, 13], crossings=False) == []
    # An eighth: 16 useful, limit 7, run 8 > 7: a shift up, deteriorating for a lower-is-better KPI.
    assert kinds([*WINDOW, 13, 14, 13, 14, 13, 14, 13, 14], crossings=False) == [
        ("shift", "up", "deteriorating", 8, True)]


def test_a_fixed_shift_counts_points_on_one_side_of_the_mean() -> None:
    assert kinds([*WINDOW, 13, 14, 13, 14, 13, 14], shift=7, crossings=False) == []
    assert kinds([*WINDOW, 13, 14, 13, 14, 13, 14, 13], shift=7, crossings=False, better="higher") == [
        ("shift", "up", "improving", 7, True)]


def test_a_trend_of_six() -> None:
    # The window ends at 11; 10.5 is lower, so the rise starts there: 10.5 .. 13.5 is six points.
    assert kinds([*WINDOW, 10.5, 11, 11.5, 12.5, 13, 13.5], crossings=False) == [
        ("trend", "up", "deteriorating", 6, True)]
    assert kinds([*WINDOW, 11, 11.5, 12.5, 13, 13.5], crossings=False) == []  # 11 repeats 11: five points


def test_too_few_crossings() -> None:
    # The window has 8 points off its median 12 in 5 runs; then 8 below and 8 above: 24 useful points in 6 runs,
    # 5 crossings where at least qbinom(0.05, 23, 0.5) = 8 are expected.
    values = [*WINDOW, 11, 10, 11, 10, 11, 10, 11, 10, 13, 14, 13, 14, 13, 14, 13, 14]
    chart = judge(values, 12, "lower", shift=99, trend=0)
    assert (chart.useful, chart.crossings, chart.crossings_limit) == (24, 5, 8)
    assert [(s.kind, s.side, s.direction) for s in chart.signals] == [("crossings", "up", "deteriorating")]


@pytest.mark.parametrize(("lower", "upper", "target", "better", "expected"), [
    (90, 95, 97, "higher", "fail"),  # the limits never reach the target
    (96, 99, 97, "higher", "hit and miss"),
    (97.5, 99, 97, "higher", "pass"),
    (35, 39, 40, "lower", "pass"),
    (38, 44, 40, "lower", "hit and miss"),
    (41, 44, 40, "lower", "fail"),
    (41, 44, None, "lower", None),
])
def test_assurance(lower: float, upper: float, target: float | None, better: str, expected: str | None) -> None:
    chart_limits = Limits((lower + upper) / 2, (lower + upper) / 2, lower, upper, 1.0, 12)
    assert assurance(chart_limits, target, better) == expected


def test_newest_finds_what_judge_finds_for_the_newest_value() -> None:
    """The evaluation's one-pass reading against the whole chart, on generated series with ties, shifts and
    trends, for both shift rules."""
    import random

    from alerts.spc import newest

    for seed in range(400):
        rng = random.Random(seed)
        noise = 1 if seed % 2 else 0.15  # steady series make trends, and ties at one decimal
        values = [round(rng.gauss(10, noise), 1) for _ in range(rng.randint(12, 36))]
        start = rng.randint(6, len(values) - 1)
        for index in range(start, len(values)):
            values[index] += (index - start) * 0.4 if seed % 3 == 0 else 1.5 if seed % 3 == 1 else 0
        window = rng.choice((6, 8, 12))
        for shift in ("anhoej", 7):
            for better in ("lower", "higher"):
                chart = judge(values, window, better, shift=shift, trend=6)
                limits, found = newest(values, window, better, shift=shift, trend=6)
                assert limits == chart.limits
                assert found == chart.current(), (seed, shift, better)
