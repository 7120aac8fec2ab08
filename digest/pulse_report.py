"""What leadership may see of the staff pulse: the interface the digest reads.

Anonymity holds here, not in the templates: a score reaches a PulseReport only when its group is large enough
(SPEC section 7), so no renderer can show what must not be shown. Ingest already keeps no score that fewer than
min_group_size people gave and no group that could expose anyone; this module checks again against today's
min_group_size, which may have been raised since.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.rules import Point, baseline_of
from config import Config, Practice
from pulse.anonymity import practice_visible, visible_groups
from pulse.schedule import next_checkin_due
from pulse.scores import READINESS_CATEGORIES, readiness_verdict
from pulse.staff import first_go_live
from pulse.tracking import tracking_start
from storage.models import PulseSurvey

LABELS = {
    "pulse_participation_rate": "Participation",
    "pulse_workload": "Workload (1-5)",
    "pulse_role_clarity": "Role clarity (1-5)",
    "pulse_trust_leadership": "Trust in leadership (1-5)",
    "pulse_vendor_confidence": "Confidence in the vendor (1-5)",
    "pulse_burnout_pct": "Reporting burnout",
    "enps": "eNPS (-100 to 100)",
    "readiness_score": "Readiness (6-30)",
}
TREND_PULSES = 12


@dataclass(frozen=True)
class PulseScore:
    key: str
    label: str
    value: float
    baseline: float | None = None  # from pulses before the first go-live
    trend: list[float] = field(default_factory=list)  # this score across pulses, oldest first, this one last


@dataclass(frozen=True)
class GroupScores:
    """A group (role, location) large enough to show, with its scores."""

    name: str
    responses: int
    scores: list[PulseScore]


@dataclass(frozen=True)
class PulseReport:
    closed_on: dt.date
    responses: int
    staff_count: int | None
    shown: bool  # the whole-practice group is large enough
    scores: list[PulseScore]  # empty when not shown; keys and order of LABELS
    readiness_verdict: str | None = None  # proceed | prepare | pause
    groups: list[GroupScores] = field(default_factory=list)
    note: str | None = None  # why something is not shown
    opened_on: dt.date | None = None  # the first response's day
    readiness_categories: list[PulseScore] = field(default_factory=list)  # the six categories of the 6-30 total
    next_checkin_due: dt.date | None = None  # when the next pulse should have closed (practice.pulse schedule)


def pulse_report(session: Session, config: Config, practice: Practice, as_of: dt.date) -> PulseReport | None:
    """The latest pulse closed on or before as_of, anonymity applied; None if the practice has none yet."""
    surveys = list(session.scalars(select(PulseSurvey)
                                   .where(PulseSurvey.practice_id == practice.id, PulseSurvey.closed_on <= as_of)
                                   .order_by(PulseSurvey.closed_on)))
    if not surveys:
        return None
    latest, minimum = surveys[-1], config.surveys.min_group_size
    start = tracking_start(session, practice, as_of, record=False) if practice.pulse.cadence_days else None
    next_due = next_checkin_due(practice, [survey.closed_on for survey in surveys], as_of, start)
    if not practice_visible(latest.responses, minimum):
        note = (f"Too few responses ({latest.responses}) to show results without exposing individuals; "
                f"results need at least {minimum}.")
        return PulseReport(latest.closed_on, latest.responses, latest.staff_count, False, [], note=note,
                           opened_on=latest.opened_on, next_checkin_due=next_due)
    history = [survey for survey in surveys if practice_visible(survey.responses, minimum)]
    readiness = latest.scores.get("readiness_score")
    groups = shown_groups(latest, minimum)
    return PulseReport(
        latest.closed_on, latest.responses, latest.staff_count, True,
        [practice_score(key, history, config, practice) for key in LABELS if key in latest.scores],
        readiness_verdict(readiness) if readiness is not None else None,
        groups,
        group_note(latest, groups, minimum),
        readiness_categories=[PulseScore(key, label, latest.scores[key])
                              for key, label in READINESS_CATEGORIES.items() if key in latest.scores],
        opened_on=latest.opened_on,
        next_checkin_due=next_due,
    )


def practice_score(key: str, history: Sequence[PulseSurvey], config: Config, practice: Practice) -> PulseScore:
    """The latest value of one KPI with its baseline (pulses before the first go-live) and its trend."""
    points = [Point(s.closed_on.isoformat(), s.closed_on, s.closed_on, float(s.scores[key]))
              for s in history if key in s.scores]
    go_live = first_go_live(practice)
    defaults = config.catalog.defaults
    baseline = (baseline_of(points, go_live, defaults.baseline_months, practice.pulse.baseline_min_pulses)
                if go_live else None)
    trend = [point.value for point in points[-TREND_PULSES:]]
    return PulseScore(key, LABELS[key], points[-1].value, baseline, trend)


def shown_groups(survey: PulseSurvey, minimum: int) -> list[GroupScores]:
    stored: dict[str, Any] = survey.groups or {}
    sizes = {name: int(group["responses"]) for name, group in stored.items()}
    return [GroupScores(name, sizes[name], [PulseScore(key, LABELS[key], value)
                                            for key, value in stored[name]["scores"].items() if key in LABELS])
            for name in visible_groups(survey.responses, sizes, minimum)]


def group_note(survey: PulseSurvey, groups: list[GroupScores], minimum: int) -> str | None:
    if survey.groups is None or groups:
        return None
    return (f"Results by group are not shown: each group needs at least {minimum} people, and no two shown "
            f"groups may differ by fewer than {minimum}, so nobody's answers can be worked out.")
