"""The decisions every evaluation makes, as pure functions tested as tables (as Alertmanager's dedup stage is):
given an alert's last state and today's verdict, what happened; and is it muted by a silence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from alerts.rules import Verdict

NOTIFYING_EVENTS = {"firing", "severity_changed", "resolved", "repeat"}


@dataclass(frozen=True)
class AlertState:
    state: str  # pending | firing | resolved
    severity: str
    period: str
    last_notified_at: dt.datetime | None
    acknowledged: bool = False
    value: float | None = None  # the latest value it shows (alerts.state.follows_latest)
    learning: bool = False  # it was last judged in a learning period


@dataclass(frozen=True)
class SilenceWindow:
    practice: str | None
    vendor: str | None
    kpi: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime


def decide(previous: AlertState | None, verdict: Verdict, now: dt.datetime,
           repeat_interval: dt.timedelta) -> str | None:
    """Return the event (pending, firing, severity_changed, repeat, resolved, cleared) or None for no change.

    Repeats come every `repeat_interval` while firing, unless acknowledged; a severity change always speaks."""
    active = previous is not None and previous.state in ("pending", "firing")
    if verdict.severity is None:
        if not active or previous is None:
            return None
        return "resolved" if previous.state == "firing" else "cleared"
    if previous is not None and previous.state == "firing":
        if verdict.severity != previous.severity:
            return "severity_changed"
        if previous.acknowledged:
            return None
        due = previous.last_notified_at is None or now - previous.last_notified_at >= repeat_interval
        return "repeat" if due else None
    if not verdict.held:
        return None if previous is not None and previous.state == "pending" else "pending"
    return "firing"


def is_silenced(practice: str, vendor: str, kpi: str, silences: Iterable[SilenceWindow], now: dt.datetime) -> bool:
    """A silence matches when each of its given fields equals the alert's (None matches anything) and now is
    inside its window."""
    return any(
        window.starts_at <= now < window.ends_at
        and window.practice in (None, practice)
        and window.vendor in (None, vendor)
        and window.kpi in (None, kpi)
        for window in silences
    )
