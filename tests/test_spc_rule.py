"""Rule kind `spc`: its settings in kpis.yaml and overrides, and a shift that never crosses a threshold told as a
warning through the alert lifecycle (timeline helpers of tests/test_timelines.py, real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from alerts.messages import render_alert
from alerts.rules import Point, Thresholds, judge_latest, thresholds_for
from config import ConfigError, load_config
from config.schema import SpcRule
from tests.conftest import TEST_CONFIG
from tests.test_timelines import (  # noqa: F401 - fixtures
    GO_LIVE,
    Timeline,
    database_url,
    environment,
    new_timeline,
    timeline_database,
)

CATALOG = Path(__file__).resolve().parents[1] / "config" / "kpis.yaml"


def periods(first: dt.date, count: int) -> list[str]:
    return [f"{first.year + (first.month - 1 + i) // 12}-{(first.month - 1 + i) % 12 + 1:02d}" for i in range(count)]


def point(period: str, value: float) -> Point:
    year, month = map(int, period.split("-"))
    start = dt.date(year, month, 1)
    return Point(period, start, (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1), value)


@pytest.fixture
def channel_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL"):
        monkeypatch.setenv(name, "json://127.0.0.1:9/")


def config_with(tmp_path: Path, catalog_defaults: dict[str, object], kpi: dict[str, object],
                overrides: dict[str, object]) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(TEST_CONFIG / "channels.yaml", folder / "channels.yaml")
    catalog = yaml.safe_load(CATALOG.read_text())
    catalog["defaults"].update(catalog_defaults)
    catalog["kpis"]["denial_rate"].update(kpi)
    (folder / "kpis.yaml").write_text(yaml.safe_dump(catalog))
    practices = yaml.safe_load((TEST_CONFIG / "practices.yaml").read_text())
    practices["practices"][0]["overrides"] = overrides
    (folder / "practices.yaml").write_text(yaml.safe_dump(practices))
    return folder


def test_settings_merge_catalog_kpi_then_override(tmp_path: Path, channel_urls: None) -> None:
    folder = config_with(tmp_path, {"spc": {"window": 10}}, {"spc": {"trend": 0}},
                         {"denial_rate": {"spc": {"shift": 7}}})
    config = load_config(folder)
    practice = config.practices[0]
    vendor = practice.vendors[0]
    kpi = config.kpi("denial_rate")
    assert kpi is not None
    rule = thresholds_for(kpi, practice, vendor, "denial_rate", config.catalog.defaults).spc
    assert rule == SpcRule(window=10, trend=0, shift=7)
    other = config.kpi("clean_claim_rate")
    assert other is not None
    assert thresholds_for(other, practice, vendor, "clean_claim_rate", config.catalog.defaults).spc == SpcRule(
        window=10)


def test_a_practice_can_turn_spc_off(tmp_path: Path, channel_urls: None) -> None:
    folder = config_with(tmp_path, {}, {"rule": "spc", "warn": None, "crit": None},
                         {"denial_rate": {"spc": {"enabled": False}}})
    config = load_config(folder)
    practice, kpi = config.practices[0], config.kpi("denial_rate")
    assert kpi is not None and kpi.rule == "spc"
    assert thresholds_for(kpi, practice, practice.vendors[0], "denial_rate", config.catalog.defaults).spc is None


@pytest.mark.parametrize(("settings", "reason"), [
    ({"shift": 1}, "at least 2 points"),
    ({"window": 2}, "greater than or equal to 3"),
    ({"baseline": "last_year"}, "after_learning"),
    ({"windw": 12}, "windw"),
])
def test_bad_spc_settings_are_refused_with_file_and_reason(tmp_path: Path, settings: dict[str, object],
                                                           reason: str, channel_urls: None) -> None:
    folder = config_with(tmp_path, {}, {"spc": settings}, {})
    with pytest.raises(ConfigError) as refused:
        load_config(folder)
    message = str(refused.value)
    assert "kpis.yaml" in message and "spc" in message and reason in message


def test_learning_period_and_a_window_not_yet_full_are_quiet() -> None:
    thresholds = Thresholds("lower", None, None, 1, spc=SpcRule(window=6))
    series = [point(p, v) for p, v in zip(periods(GO_LIVE, 8), [9, 9, 6, 6.4, 5.8, 6.3, 6.2, 30], strict=True)]
    # 60 learning days: July and August are learning, the window (Sept..Feb) is not full by February.
    assert "spc" not in judge_latest(series[:7], thresholds, None, GO_LIVE, False, False, learning_days=60)
    assert "spc" not in judge_latest(series, thresholds, None, GO_LIVE, True, False, learning_days=60)
    verdict = judge_latest(series, thresholds, None, GO_LIVE, False, False, learning_days=60)["spc"]
    assert (verdict.severity, verdict.signal, verdict.side, verdict.value) == ("warning", "outside", "up", 30)


def test_pre_go_live_window_judges_the_change_since_go_live() -> None:
    thresholds = Thresholds("higher", None, None, 1, spc=SpcRule(window=6, baseline="pre_go_live"))
    history = [point(p, v) for p, v in zip(periods(dt.date(2025, 1, 1), 6), [90, 91, 90.5, 91.5, 90, 91],
                                             strict=True)]
    after = [point("2025-07", 85.0)]  # far below the limits: deteriorating for a higher-is-better KPI
    verdict = judge_latest(after, thresholds, None, GO_LIVE, False, False, history=history)["spc"]
    assert (verdict.severity, verdict.signal, verdict.side) == ("warning", "outside", "down")
    assert verdict.baseline == 90.67  # the mean of the six months before go-live
    assert verdict.threshold == verdict.line == round(544 / 6 - 2.66 * 1.0, 2)  # moving ranges 1, .5, 1, 1.5, 1


WINDOW = [6.0, 6.4, 5.8, 6.3, 6.2, 5.9]  # mean 6.1, average moving range 0.38: limits 5.09 to 7.11
SHIFT = [6.5, 6.6, 6.7, 6.5, 6.6, 6.8, 6.6]  # above the mean, inside the limits, far below the 8% warning line


def test_a_shift_below_the_threshold_fires_a_warning_and_resolves(tmp_path: Path, database_url: str,  # noqa: F811
                                                                   environment: None) -> None:  # noqa: F811
    overrides = {"denial_rate": {"trend_periods": 0, "spc": {"window": 6, "shift": 7, "trend": 0}}}
    timeline: Timeline = new_timeline(tmp_path, database_url, "denial_rate", overrides=overrides)
    learning = [("2025-07", 6.1), ("2025-08", 6.2)]
    months = periods(dt.date(2025, 9, 1), len(WINDOW) + len(SHIFT) + 1)
    series = [*learning, *zip(months, [*WINDOW, *SHIFT, 5.9], strict=True)]
    rows = timeline.run(series)
    fired_at = months[len(WINDOW) + len(SHIFT) - 1]
    events = {period: events for period, _, events, _ in rows if events}
    assert events == {fired_at: [("spc", "firing", "warning")], months[-1]: [("spc", "resolved", "warning")]}
    [fired] = next(m for m in timeline.months if m.period == fired_at).changes
    assert (fired.signal, fired.side, fired.run, fired.line, fired.per) == ("shift", "up", 7, 6.1, "month")
    assert (fired.threshold, fired.baseline) == (7.11, 6.1)
    assert all(row[3] is None for row in rows)  # a warning goes to the digest: no route pushes it here
    text = render_alert({"practice": "birch-clinic", "practice_name": "Birch", "changes": [asdict(fired)]},
                        "t", "text").body
    assert "Initial denial rate (control chart), LedgerLine" in text
    assert "6.6% for Sep 2026, a shift up: 7 months in a row above the centre line of 6.1%." in text
    [resolved] = timeline.months[-1].changes
    text = render_alert({"practice": "birch-clinic", "practice_name": "Birch", "changes": [asdict(resolved)]},
                        "t", "text").body
    assert "back to common-cause variation around the centre line of 6.1% (control limit 7.1%)" in text


def test_no_spc_verdict_while_the_threshold_speaks_for_the_value() -> None:
    series = [point(p, v) for p, v in zip(periods(dt.date(2025, 9, 1), 7), [*WINDOW, 12.0], strict=True)]
    quiet_threshold = Thresholds("lower", 20, 30, 1, spc=SpcRule(window=6))
    assert judge_latest(series, quiet_threshold, None, GO_LIVE, False, False)["spc"].signal == "outside"
    breached = Thresholds("lower", 8, 10, 1, spc=SpcRule(window=6))
    verdicts = judge_latest(series, breached, None, GO_LIVE, False, False)
    assert verdicts["threshold"].severity == "critical" and "spc" not in verdicts
