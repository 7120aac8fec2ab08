"""One alert's next state, as a pure function tested as a table (tests/test_next_state.py), as Alertmanager's
`needsUpdate` is: given the alert's last state, today's verdict, the time and whether a silence matches it, what
the alert becomes, which event is recorded and whether anyone is told. alerts/lifecycle.py applies the answer to
the row and builds the message's payload; nothing here reads or writes the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from alerts.decide import NOTIFYING_EVENTS, AlertState, decide
from alerts.rules import Verdict

ACTIVE = ("pending", "firing")
STATE_AFTER = {"resolved": "resolved", "cleared": "resolved", "pending": "pending"}  # every other event: firing
# Events that end what an acknowledgement covered: one severity of one episode.
UNACKNOWLEDGING = ("severity_changed", "resolved", "cleared", "firing")


@dataclass(frozen=True)
class Step:
    """What happens to one alert in one evaluation.

    event None: nothing happened; the open alert only follows the latest value and period (no event recorded).
    notify: the event is told (a notifying event no silence holds back); muted: a silence held it back, so it is
    recorded as '<event> (silenced)' and stays due once the silence ends."""

    state: str  # pending | firing | resolved, after this evaluation
    event: str | None = None  # pending, firing, severity_changed, repeat, resolved, cleared
    notify: bool = False
    muted: bool = False
    restarted: bool = False  # a new episode: started now, no longer resolved
    unacknowledged: bool = False  # the acknowledgement is dropped
    keeps_period: bool = False  # a loose alert that resolves keeps the period that was missing

    @property
    def label(self) -> str | None:
        """The event as recorded in the alert's history."""
        if self.event is None:
            return None
        return f"{self.event} (silenced)" if self.muted else self.event


def next_state(previous: AlertState | None, verdict: Verdict, now: dt.datetime, silenced: bool,
               repeat_interval: dt.timedelta, loose: bool = False) -> Step | None:
    """None: nothing to do. `silenced`: a silence matches the alert now (alerts.decide.is_silenced). `loose`: an
    alert of no series (a late feed, an overdue check-in), whose verdict's period is the one missing."""
    if loose and new_lateness(previous, verdict):
        # The earlier period arrived and a newer one is missing: a new lateness, told as a new firing.
        previous = replace(previous, state="resolved") if previous is not None else None
    event = decide(previous, verdict, now, repeat_interval)
    if event is None:
        return follows_latest(previous, verdict)
    was_active = previous is not None and previous.state in ACTIVE
    state = STATE_AFTER.get(event, "firing")
    muted = event in NOTIFYING_EVENTS and silenced
    return Step(
        state=state, event=event, notify=event in NOTIFYING_EVENTS and not muted, muted=muted,
        restarted=event in ACTIVE and not was_active, unacknowledged=event in UNACKNOWLEDGING,
        keeps_period=loose and state == "resolved",
    )


def new_lateness(previous: AlertState | None, verdict: Verdict) -> bool:
    return (previous is not None and previous.state == "firing" and verdict.severity is not None
            and previous.period != verdict.period)


def follows_latest(previous: AlertState | None, verdict: Verdict) -> Step | None:
    """An open alert whose state did not change still shows the latest value and period (`alerts list`, the
    digest): a denial rate of 9.7% in October that reads 9.9% in November stays a warning, and says 9.9% for
    November. No event: nothing happened to the alert."""
    if previous is None or previous.state not in ACTIVE:
        return None
    if (previous.value, previous.period) == (verdict.value, verdict.period):
        return None
    return Step(state=previous.state)
