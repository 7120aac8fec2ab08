"""Pulse KPIs from anonymous answers (SPEC sections 3 and 7). Pure functions.

A KPI is computed only when at least `min_answers` people answered it: a question most people skipped must not
expose the few who answered (ingest passes min_group_size).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean

from pulse.forms import Respondent, Responses

DIMENSION_KPIS = ("pulse_workload", "pulse_role_clarity", "pulse_trust_leadership", "pulse_vendor_confidence")
# The seed's decision matrix, in its order; each rated 1 (low readiness) to 5 (high).
READINESS_CATEGORIES = {
    "readiness_emotional": "Emotional readiness",
    "readiness_leadership": "Leadership alignment",
    "readiness_decisions": "Decision ownership",
    "readiness_process": "Process clarity",
    "readiness_adjustment": "Adjustment capacity",
    "readiness_trust": "Trust infrastructure",
}
BURNOUT_FROM = 3  # on the 5-point item: 3 or more counts as burnout (SPEC section 3)
PROMOTER_FROM, DETRACTOR_UP_TO = 9, 6


def score(responses: Responses, staff_count: int | None, min_answers: int = 1) -> dict[str, float]:
    """The whole practice's KPIs, participation included."""
    scores = score_respondents(responses.respondents, min_answers)
    if staff_count:
        # staff_count is a setting that lags hiring: more answers than staff means it is out of date, not 110%.
        scores = {"pulse_participation_rate": round(min(100.0, 100 * responses.count / staff_count), 1), **scores}
    return scores


def score_respondents(respondents: Sequence[Respondent], min_answers: int = 1) -> dict[str, float]:
    """Dimension means, burnout %, eNPS and readiness of a set of respondents (the practice, or one group)."""
    scores: dict[str, float] = {}
    for kpi in DIMENSION_KPIS:
        put(scores, kpi, mean_of(per_person(respondents, kpi), min_answers, 2))
    put(scores, "pulse_burnout_pct", burnout_pct(per_person(respondents, "pulse_burnout"), min_answers))
    put(scores, "enps", enps(per_person(respondents, "enps"), min_answers))
    categories = {key: mean_of(per_person(respondents, key), min_answers, 2) for key in READINESS_CATEGORIES}
    for key, value in categories.items():
        put(scores, key, value)
    if all(value is not None for value in categories.values()):
        scores["readiness_score"] = round(sum(value for value in categories.values() if value is not None), 1)
    return scores


def put(scores: dict[str, float], key: str, value: float | None) -> None:
    if value is not None:
        scores[key] = value


def per_person(respondents: Sequence[Respondent], dimension: str) -> list[float]:
    """Each respondent's mean over the dimension's items, for those who answered any."""
    return [mean(r.answers[dimension]) for r in respondents if r.answers.get(dimension)]


def mean_of(values: list[float], min_answers: int, digits: int) -> float | None:
    return round(mean(values), digits) if values and len(values) >= min_answers else None


def burnout_pct(values: list[float], min_answers: int) -> float | None:
    if not values or len(values) < min_answers:
        return None
    return round(100 * sum(1 for value in values if value >= BURNOUT_FROM) / len(values), 1)


def enps(values: list[float], min_answers: int) -> float | None:
    """% promoters (9-10) minus % detractors (0-6), a whole number from -100 to 100."""
    if not values or len(values) < min_answers:
        return None
    promoters = sum(1 for value in values if value >= PROMOTER_FROM)
    detractors = sum(1 for value in values if value <= DETRACTOR_UP_TO)
    return float(round(100 * (promoters - detractors) / len(values)))


def readiness_verdict(readiness_score: float) -> str:
    """The seed's scoring guide for the 6-30 total: 24-30 proceed, 18-23 prepare, below 18 pause."""
    if readiness_score >= 24:
        return "proceed"
    if readiness_score >= 18:
        return "prepare"
    return "pause"
