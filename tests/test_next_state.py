"""One alert's next state as a table (in the spirit of Alertmanager's needsUpdate tests): the alert's last state,
today's verdict, whether a silence matches and whether the alert is loose (a late feed, an overdue check-in), and
what follows: the state after, the event recorded, who is told."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.decide import AlertState
from alerts.rules import Verdict
from alerts.state import Step, next_state

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)
VALUE, PERIOD = 10.4, "2026-10"  # today's verdict, unless a row says otherwise


def verdict(severity: str | None, held: bool = True, value: float = VALUE, period: str = PERIOD,
            recover: float | None = None) -> Verdict:
    return Verdict(severity, held, value, 10.0, period, dt.date(2026, 10, 31), recover=recover)


def alert(state: str, severity: str = "critical", notified_days_ago: float | None = 1, acknowledged: bool = False,
          value: float = VALUE, period: str = PERIOD, older: bool = False) -> AlertState:
    """An alert as last evaluated; by default it already shows today's value and period, `older`: last period's."""
    if older:
        value, period = 9.7, "2026-09"
    notified = None if notified_days_ago is None else NOW - dt.timedelta(days=notified_days_ago)
    return AlertState(state, severity, period, notified, acknowledged=acknowledged, value=value)


def told(event: str, state: str = "firing", /, **effects: bool) -> Step:
    return Step(state=state, event=event, notify=True, **effects)


def muted(event: str, state: str = "firing", /, **effects: bool) -> Step:
    return Step(state=state, event=event, muted=True, **effects)


def quiet(event: str, state: str, /, **effects: bool) -> Step:
    return Step(state=state, event=event, **effects)


def follows(state: str) -> Step:
    """No event: the open alert only takes the latest value and period."""
    return Step(state=state)


NEW = {"restarted": True, "unacknowledged": True}  # a new episode: started now, any acknowledgement dropped

# (previous, today, silenced, loose, expected)
CASES = [
    # A new alert: the `for_periods` window, then firing.
    pytest.param(None, verdict(None), False, False, None, id="no alert, no breach: nothing"),
    pytest.param(None, verdict("warning", held=False), False, False, quiet("pending", "pending", restarted=True),
                 id="breach not yet held for for_periods: pending, told nobody"),
    pytest.param(None, verdict("critical"), False, False, told("firing", **NEW), id="first breach held: firing"),
    pytest.param(None, verdict("critical"), True, False, muted("firing", **NEW),
                 id="first breach held, silenced: firing recorded as silenced, told nobody"),
    pytest.param(None, verdict("warning", held=False), True, False, quiet("pending", "pending", restarted=True),
                 id="pending under a silence: a silence mutes only what would be told"),
    # Pending: waiting out the window.
    pytest.param(alert("pending", "warning"), verdict("warning", held=False), False, False, None,
                 id="still pending, same value: nothing"),
    pytest.param(alert("pending", "warning", older=True), verdict("warning", held=False), False, False,
                 follows("pending"), id="still pending, a newer value: follows it, no event"),
    pytest.param(alert("pending", "warning"), verdict("warning"), False, False,
                 told("firing", unacknowledged=True), id="pending, then held: firing (same episode)"),
    pytest.param(alert("pending", "warning"), verdict("critical"), True, False,
                 muted("firing", unacknowledged=True), id="pending, then held under a silence: muted firing"),
    pytest.param(alert("pending", "warning"), verdict(None), False, False,
                 quiet("cleared", "resolved", unacknowledged=True), id="pending, then fine: cleared quietly"),
    pytest.param(alert("pending", "warning"), verdict(None), True, False,
                 quiet("cleared", "resolved", unacknowledged=True), id="pending, then fine, silenced: cleared"),
    # Firing: repeats, acknowledgement, silences.
    pytest.param(alert("firing"), verdict("critical"), False, False, None,
                 id="firing, same severity, same value, told recently: nothing"),
    pytest.param(alert("firing", older=True), verdict("critical"), False, False, follows("firing"),
                 id="firing, told recently, a newer value: follows it, no event"),
    pytest.param(alert("firing", notified_days_ago=8), verdict("critical"), False, False, told("repeat"),
                 id="firing past repeat_interval: re-notify"),
    pytest.param(alert("firing", notified_days_ago=7), verdict("critical"), False, False, told("repeat"),
                 id="firing exactly repeat_interval ago: re-notify"),
    pytest.param(alert("firing", notified_days_ago=None), verdict("critical"), False, False, told("repeat"),
                 id="firing, never told (it fired silenced): re-notify"),
    pytest.param(alert("firing", notified_days_ago=8), verdict("critical"), True, False, muted("repeat"),
                 id="firing past repeat_interval, silenced: muted repeat, still due after the silence"),
    pytest.param(alert("firing", notified_days_ago=8, acknowledged=True), verdict("critical"), False, False, None,
                 id="acknowledged, past repeat_interval: no repeat"),
    pytest.param(alert("firing", notified_days_ago=8, acknowledged=True, older=True), verdict("critical"), False,
                 False, follows("firing"), id="acknowledged, a newer value: follows it, no repeat"),
    pytest.param(alert("firing"), verdict("critical", held=False), False, False, None,
                 id="firing stays firing when the hold window breaks"),
    pytest.param(alert("firing", "warning", older=True), verdict("warning", recover=9.0), False, False,
                 follows("firing"), id="inside the threshold but not past recover: held open (damping)"),
    # Severity: escalate and de-escalate both speak, even when acknowledged.
    pytest.param(alert("firing", "warning"), verdict("critical"), False, False,
                 told("severity_changed", unacknowledged=True), id="escalate warning to critical"),
    pytest.param(alert("firing", "critical"), verdict("warning"), False, False,
                 told("severity_changed", unacknowledged=True), id="de-escalate critical to warning"),
    pytest.param(alert("firing", "warning", acknowledged=True), verdict("critical"), False, False,
                 told("severity_changed", unacknowledged=True), id="acknowledged, escalated: told, ack dropped"),
    pytest.param(alert("firing", "warning"), verdict("critical"), True, False,
                 muted("severity_changed", unacknowledged=True), id="escalated under a silence: muted"),
    # Resolved and re-fire.
    pytest.param(alert("firing"), verdict(None), False, False, told("resolved", "resolved", unacknowledged=True),
                 id="firing, then fine: resolved"),
    pytest.param(alert("firing", acknowledged=True), verdict(None), False, False,
                 told("resolved", "resolved", unacknowledged=True), id="acknowledged, then fine: resolved"),
    pytest.param(alert("firing"), verdict(None), True, False, muted("resolved", "resolved", unacknowledged=True),
                 id="firing, then fine, silenced: muted resolved"),
    pytest.param(alert("resolved"), verdict(None), False, False, None, id="resolved stays quiet"),
    pytest.param(alert("resolved", older=True), verdict(None), False, False, None,
                 id="resolved, a newer fine value: a closed alert does not follow"),
    pytest.param(alert("resolved"), verdict("critical"), False, False, told("firing", **NEW),
                 id="resolved, breach held again: re-fire, a new episode"),
    pytest.param(alert("resolved"), verdict("warning", held=False), False, False,
                 quiet("pending", "pending", restarted=True), id="resolved, breach not yet held: pending again"),
    # Loose alerts (a late feed, an overdue check-in): the verdict's period is the one missing.
    pytest.param(alert("firing", "warning", period="2026-09"), verdict("warning", period="2026-10"), False, True,
                 told("firing", **NEW), id="loose: the missing period came, a newer one is missing: fires anew"),
    pytest.param(alert("firing", "warning", period="2026-09"), verdict("critical", period="2026-10"), True, True,
                 muted("firing", **NEW), id="loose: a new lateness under a silence: muted firing"),
    pytest.param(alert("firing", "warning", period="2026-09", notified_days_ago=8, acknowledged=True),
                 verdict("warning", period="2026-10"), False, True, told("firing", **NEW),
                 id="loose: a new lateness drops the acknowledgement of the old one"),
    pytest.param(alert("firing", "warning", value=3.0), verdict("warning"), False, True, follows("firing"),
                 id="loose: the same period, more days late: follows, no event"),
    pytest.param(alert("firing", "warning"), verdict("critical"), False, True,
                 told("severity_changed", unacknowledged=True), id="loose: a second period overdue: escalate"),
    pytest.param(alert("firing", "warning"), verdict(None, period="2026-11"), False, True,
                 told("resolved", "resolved", unacknowledged=True, keeps_period=True),
                 id="loose: the feed came: resolved, keeps the period that was missing"),
    pytest.param(alert("resolved", "warning", period="2026-09"), verdict("warning", period="2026-10"), False, True,
                 told("firing", **NEW), id="loose: late again after resolving: re-fire"),
    pytest.param(alert("firing", "warning", period="2026-09", value=9.7), verdict("warning"), False, False,
                 follows("firing"), id="a series alert of a new period is no new lateness: follows"),
]


@pytest.mark.parametrize(("previous", "today", "silenced", "loose", "expected"), CASES)
def test_next_state(previous: AlertState | None, today: Verdict, silenced: bool, loose: bool,
                    expected: Step | None) -> None:
    assert next_state(previous, today, NOW, silenced, WEEK, loose=loose) == expected


@pytest.mark.parametrize(("step", "label"), [
    (Step(state="firing", event="firing", notify=True), "firing"),
    (Step(state="firing", event="repeat", muted=True), "repeat (silenced)"),
    (Step(state="resolved", event="cleared"), "cleared"),
    (Step(state="firing"), None),
])
def test_recorded_label(step: Step, label: str | None) -> None:
    """A muted change is recorded as silenced; following the latest value records nothing."""
    assert step.label == label
