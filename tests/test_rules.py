"""Threshold rules: overrides, direction, hold periods, staleness and the learning period."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.rules import Point, Thresholds, in_learning_period, is_stale, judge_threshold, thresholds_for
from config import BUNDLED_DIR, load_config


def series(*values: float) -> list[Point]:
    points = []
    for index, value in enumerate(values):
        start = dt.date(2026, 1 + index, 1)
        points.append(Point(start.strftime("%Y-%m"), start, start + dt.timedelta(days=27), value))
    return points


def test_practice_overrides_replace_catalog_thresholds_and_vendor_overrides_win() -> None:
    config = load_config(BUNDLED_DIR)
    oakridge = config.practice("oakridge-fm")
    assert oakridge is not None
    vendor = oakridge.vendor("acme-billing")
    assert vendor is not None
    denial = config.kpi("denial_rate")
    assert denial is not None
    assert thresholds_for(denial, oakridge, vendor, "denial_rate") == Thresholds("lower", 7, 9, 1)
    lakeside = config.practice("lakeside-peds")
    assert lakeside is not None
    lakeside_vendor = lakeside.vendor("acme-billing")
    assert lakeside_vendor is not None
    assert thresholds_for(denial, lakeside, lakeside_vendor, "denial_rate") == Thresholds("lower", 8, 10, 1)


@pytest.mark.parametrize(
    ("thresholds", "values", "severity", "held", "bound"),
    [
        (Thresholds("lower", 8, 10, 1), (10.4,), "critical", True, 10),
        (Thresholds("lower", 8, 10, 1), (9.0,), "warning", True, 8),
        (Thresholds("lower", 8, 10, 1), (8.0,), None, False, 8),  # at the bound is not over it
        (Thresholds("higher", 95, 90, 1), (89.0,), "critical", True, 90),
        (Thresholds("higher", 95, 90, 1), (96.0,), None, False, 95),
        (Thresholds("lower", 45, 50, 3), (46, 47, 48), "warning", True, 45),
        (Thresholds("lower", 45, 50, 3), (40, 47, 48), "warning", False, 45),  # 2 of 3: pending
        (Thresholds("lower", 45, 50, 3), (47, 48), "warning", False, 45),  # too short a history to hold
    ],
)
def test_judge_threshold(thresholds: Thresholds, values: tuple[float, ...], severity: str | None, held: bool,
                         bound: float) -> None:
    verdict = judge_threshold(series(*values), thresholds)
    assert verdict is not None
    assert (verdict.severity, verdict.held, verdict.threshold) == (severity, held, bound)
    assert verdict.value == values[-1]


def test_an_empty_series_has_no_verdict() -> None:
    assert judge_threshold([], Thresholds("lower", 8, 10, 1)) is None


def test_data_older_than_two_periods_is_stale() -> None:
    assert not is_stale(dt.date(2026, 10, 31), "monthly", dt.date(2026, 11, 23))
    assert is_stale(dt.date(2026, 8, 31), "monthly", dt.date(2026, 11, 23))
    assert is_stale(dt.date(2026, 10, 31), "weekly", dt.date(2026, 11, 23))


def test_the_learning_period_starts_at_go_live_and_lasts_its_days() -> None:
    go_live = dt.date(2026, 3, 1)
    assert not in_learning_period(dt.date(2026, 2, 1), go_live, 60)
    assert in_learning_period(dt.date(2026, 3, 1), go_live, 60)
    assert in_learning_period(dt.date(2026, 4, 1), go_live, 60)
    assert not in_learning_period(dt.date(2026, 5, 1), go_live, 60)
