"""The notify decision as a table (in the spirit of Alertmanager's dedup stage tests)."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.decide import AlertState, SilenceWindow, decide, is_silenced
from alerts.rules import Verdict

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)


def verdict(severity: str | None, held: bool = True) -> Verdict:
    return Verdict(severity, held, 10.4, 10.0, "2026-10", dt.date(2026, 10, 31))


def state(name: str, severity: str = "critical", notified_days_ago: float | None = 1) -> AlertState:
    notified = None if notified_days_ago is None else NOW - dt.timedelta(days=notified_days_ago)
    return AlertState(name, severity, "2026-09", notified)


def acknowledged(name: str, severity: str = "critical", notified_days_ago: float | None = 8) -> AlertState:
    """An acknowledged alert, by default told long enough ago that it would otherwise be due a repeat."""
    notified = None if notified_days_ago is None else NOW - dt.timedelta(days=notified_days_ago)
    return AlertState(name, severity, "2026-09", notified, acknowledged=True)


@pytest.mark.parametrize(
    ("previous", "today", "expected"),
    [
        pytest.param(None, verdict(None), None, id="no alert, no breach: nothing"),
        pytest.param(None, verdict("critical"), "firing", id="first breach held: firing"),
        pytest.param(None, verdict("warning", held=False), "pending", id="breach not yet held: pending"),
        pytest.param(state("pending"), verdict("warning", held=False), None, id="still pending: nothing new"),
        pytest.param(state("pending"), verdict("critical"), "firing", id="pending then held: firing"),
        pytest.param(state("pending"), verdict(None), "cleared", id="pending then fine: cleared quietly"),
        pytest.param(state("firing"), verdict("critical"), None, id="firing, same severity, notified recently"),
        pytest.param(state("firing", notified_days_ago=8), verdict("critical"), "repeat",
                     id="firing past the repeat interval: repeat"),
        pytest.param(state("firing", notified_days_ago=None), verdict("critical"), "repeat",
                     id="firing but never notified: repeat"),
        pytest.param(state("firing", "critical"), verdict("warning"), "severity_changed", id="critical to warning"),
        pytest.param(state("firing", "warning"), verdict("critical"), "severity_changed", id="warning to critical"),
        pytest.param(state("firing"), verdict("critical", held=False), None,
                     id="firing stays firing even if the hold window is broken"),
        pytest.param(state("firing"), verdict(None), "resolved", id="firing then fine: resolved"),
        pytest.param(state("resolved"), verdict(None), None, id="resolved stays quiet"),
        pytest.param(state("resolved"), verdict("critical"), "firing", id="resolved then breach again: firing"),
        pytest.param(acknowledged("firing"), verdict("critical"), None,
                     id="acknowledged, past the repeat interval: no repeat"),
        pytest.param(acknowledged("firing", notified_days_ago=None), verdict("critical"), None,
                     id="acknowledged, never notified: no repeat"),
        pytest.param(acknowledged("firing", notified_days_ago=1), verdict("critical"), None,
                     id="acknowledged, notified recently: nothing"),
        pytest.param(acknowledged("firing", "critical"), verdict("warning"), "severity_changed",
                     id="acknowledged critical to warning: the change still speaks"),
        pytest.param(acknowledged("firing", "warning"), verdict("critical"), "severity_changed",
                     id="acknowledged warning to critical: the change still speaks"),
        pytest.param(acknowledged("firing"), verdict(None), "resolved", id="acknowledged then fine: resolved"),
        pytest.param(acknowledged("firing"), verdict("critical", held=False), None,
                     id="acknowledged, hold window broken: still nothing"),
    ],
)
def test_decide(previous: AlertState | None, today: Verdict, expected: str | None) -> None:
    assert decide(previous, today, NOW, WEEK) == expected


START = dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
END = dt.datetime(2026, 11, 27, 0, 0, tzinfo=dt.UTC)
ALERT = ("maple-clinic", "claimright", "denial_rate")  # (practice, vendor, kpi) of the alert under test


def window(practice: str | None = None, vendor: str | None = None, kpi: str | None = None,
           starts_at: dt.datetime = START, ends_at: dt.datetime = END) -> SilenceWindow:
    return SilenceWindow(practice, vendor, kpi, starts_at, ends_at)


@pytest.mark.parametrize(
    ("silences", "now", "expected"),
    [
        pytest.param([], NOW, False, id="no silence: not silenced"),
        pytest.param([window()], NOW, True, id="every matcher None: matches any alert"),
        pytest.param([window(practice="maple-clinic")], NOW, True, id="same practice: silenced"),
        pytest.param([window(practice="oakridge-fm")], NOW, False, id="another practice: not silenced"),
        pytest.param([window(vendor="claimright")], NOW, True, id="same vendor: silenced"),
        pytest.param([window(vendor="acme-billing")], NOW, False, id="another vendor: not silenced"),
        pytest.param([window(kpi="denial_rate")], NOW, True, id="same KPI: silenced"),
        pytest.param([window(kpi="days_in_ar")], NOW, False, id="another KPI: not silenced"),
        pytest.param([window("maple-clinic", "claimright", "denial_rate")], NOW, True,
                     id="every matcher equal: silenced"),
        pytest.param([window("maple-clinic", "claimright", "days_in_ar")], NOW, False,
                     id="two matchers equal, one different: not silenced"),
        pytest.param([window("maple-clinic", None, "feed")], NOW, False,
                     id="a late-feed silence does not mute the KPI's alerts"),
        pytest.param([window(kpi="days_in_ar"), window(practice="maple-clinic")], NOW, True,
                     id="one of several silences matches: silenced"),
        pytest.param([window()], START, True, id="at the start of the window: silenced (start inclusive)"),
        pytest.param([window()], START - dt.timedelta(microseconds=1), False, id="just before the start: not yet"),
        pytest.param([window()], END - dt.timedelta(microseconds=1), True, id="just before the end: silenced"),
        pytest.param([window()], END, False, id="at the end of the window: over (end exclusive)"),
        pytest.param([window(ends_at=START)], START, False, id="an empty window silences nothing"),
    ],
)
def test_is_silenced(silences: list[SilenceWindow], now: dt.datetime, expected: bool) -> None:
    assert is_silenced(*ALERT, silences, now) is expected
