"""The shape of config/*.yaml, validated with pydantic at start."""

from __future__ import annotations

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Service = Literal[
    "billing",
    "reminders",
    "follow_up",
    "surveys",
    "intake",
    "eligibility",
    "referrals",
    "transcription",
    "billing_follow_up",
    "prior_auth",
    "bundled",
]
Severity = Literal["warning", "critical"]
SLUG = r"^[a-z0-9][a-z0-9_-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tolerance(Strict):
    """How far worse than the pre-go-live baseline is a breach: percent of the baseline, or points (units)."""

    warn_pct: float | None = Field(default=None, gt=0)
    crit_pct: float | None = Field(default=None, gt=0)
    warn_points: float | None = Field(default=None, gt=0)
    crit_points: float | None = Field(default=None, gt=0)


class GlidePath(Strict):
    """The seed's expectation: a practice starting worse than `starting_above` improves by `improvement`
    (0.15 = 15%) within the first year after go-live."""

    improvement: float = Field(gt=0, lt=1)
    starting_above: float | None = None
    for_periods: int = Field(default=2, ge=1)


class SpcRule(Strict):
    """Statistical process control (alerts/spc.py): the baseline window's mean and XmR limits, and the signals
    judged against them. In a practice's or vendor's override only the fields given replace the KPI's."""

    enabled: bool = True
    # Points in the baseline window: the first after the learning period, or the last before go-live.
    window: int = Field(default=12, ge=3)
    baseline: Literal["after_learning", "pre_go_live"] = "after_learning"
    # "anhoej": a run on one side of the median longer than round(log2(n) + 3); a number: that many on one side of
    # the mean (NHS Making Data Count: 7).
    shift: Literal["anhoej"] | int = "anhoej"
    trend: int = Field(default=6, ge=0)  # that many values each higher (or lower) than the last; 0: off
    crossings: bool = True  # too few crossings of the median (Anhoej)

    @field_validator("shift")
    @classmethod
    def shift_length(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 2:
            raise ValueError("a fixed shift needs at least 2 points (NHS Making Data Count: 7)")
        return value

    def merged(self, override: SpcRule | None) -> SpcRule:
        """This rule with the fields an override gave replaced."""
        if override is None:
            return self
        return self.model_copy(update={key: getattr(override, key) for key in override.model_fields_set})


class ThresholdOverride(Strict):
    """Per practice or per vendor: replaces the catalog's setting for one KPI."""

    warn: float | None = None
    crit: float | None = None
    target: float | None = None
    for_periods: int | None = Field(default=None, ge=1)
    recover: float | None = None
    baseline: Tolerance | None = None
    glide_path: GlidePath | None = None
    trend_periods: int | None = Field(default=None, ge=0)
    escalate_after: int | None = Field(default=None, ge=0)  # months in breach in a row to escalate; 0: never
    spc: SpcRule | None = None


RuleOverride = ThresholdOverride


class PullSource(Strict):
    """HTTPS pull of a vendor's feed. The header's value (a token) comes from the environment variable
    `auth_env`, never from this file."""

    url: str = Field(pattern=r"^https://")
    auth_header: str = "Authorization"
    auth_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Vendor(Strict):
    id: str = Field(pattern=SLUG)
    name: str
    service: Service
    go_live: dt.date
    fee_pct: float | None = Field(default=None, ge=0, le=100)
    cadence: Literal["weekly", "monthly"] = "monthly"
    due_day: int = Field(default=10, ge=1, le=28)
    grace_days: int = Field(default=3, ge=0)
    unit: Literal["percent", "ratio"] = "percent"
    # Wide CSV: vendor's column header -> catalog KPI key, or "period" / "period_start" / "period_end" / "segment".
    columns: dict[str, str] = Field(default_factory=dict)
    pull: PullSource | None = None
    overrides: dict[str, ThresholdOverride] = Field(default_factory=dict)


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class DigestSchedule(Strict):
    """When the weekly digest goes out, in the practice's (or region's) own time zone."""

    weekday: Weekday = "monday"
    time: str = Field(default="07:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class PulseSchedule(Strict):
    """When a practice expects staff pulse surveys: a check-in one to two weeks after each vendor's go-live (seed
    000), then one every `cadence_days`. Without cadence_days there are no reminders and no 'pulse overdue' alert."""

    cadence_days: int | None = Field(default=None, ge=7)
    # Days past a check-in's due date before the 'pulse overdue' alert fires: a survey stays open a few days.
    grace_days: int = Field(default=7, ge=0)
    # Pulses are few and each is already an aggregate, so one pulse before the first go-live is a baseline.
    baseline_min_pulses: int = Field(default=1, ge=1)
    # When check-ins start to be owed. Unset: the first evaluation that sees cadence_days records the day, so a
    # schedule added to a practice live for a year asks for its first pulse a cadence from now, not from go-live.
    start: dt.date | None = None


# --- remits (issue 16): figures recomputed from the payers' X12 835 remittances -------------------------------
class RemitFigure(Strict):
    """One figure vendorwatch computes from 835s; `formula` cites the X12 elements it is read from."""

    label: str
    unit: Literal["%", "days", "USD", "count"]
    formula: str


class RemitTolerance(Strict):
    """How far a vendor's reported figure may differ from the remittances' before it warns (critical at twice)."""

    rate_points: float = Field(default=1.5, gt=0)
    dollars_pct: float = Field(default=3.0, gt=0)
    min_claims: int = Field(default=30, ge=1)


class RemitsCatalog(Strict):
    # Payer id as the 835 names it (N1*PR N104, else TRN03) -> a plain name; an 835 from any other payer is refused.
    payers: dict[str, str] = Field(default_factory=dict)
    tolerance: RemitTolerance = RemitTolerance()
    # Vendor KPI -> the remits figure it is checked against, for the same practice and month.
    checks: dict[str, str] = Field(default_factory=dict)
    figures: dict[str, RemitFigure] = Field(default_factory=dict)

    @model_validator(mode="after")
    def checks_name_figures(self) -> RemitsCatalog:
        unknown = sorted(figure for figure in self.checks.values() if figure not in self.figures)
        if unknown:
            raise ValueError(f"remits.checks names figures not in remits.figures: {', '.join(unknown)}")
        return self
# --- end remits ------------------------------------------------------------------------------------------------


class Practice(Strict):
    id: str = Field(pattern=SLUG)
    name: str
    timezone: str = "America/New_York"
    region: str | None = None
    annual_net_collectible: float | None = Field(default=None, ge=0)
    staff_count: int | None = Field(default=None, ge=1)
    digest_to: list[str] = Field(default_factory=list)
    digest: DigestSchedule = DigestSchedule()
    learning_period_days: int | None = Field(default=None, ge=0)
    overrides: dict[str, ThresholdOverride] = Field(default_factory=dict)
    vendors: list[Vendor] = Field(default_factory=list)
    pulse: PulseSchedule = PulseSchedule()
    remits: RemitTolerance | None = None  # issue 16: this practice's tolerance for "disagrees with remittances"

    @field_validator("timezone")
    @classmethod
    def known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as America/Chicago)"
            ) from exc
        return value

    @field_validator("digest_to")
    @classmethod
    def email_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in address or " " in address:
                raise ValueError(f"{address!r} is not an email address")
        return value

    def vendor(self, vendor_id: str) -> Vendor | None:
        return next((vendor for vendor in self.vendors if vendor.id == vendor_id), None)


class Region(Strict):
    """A regional leader's roll-up of the practices whose `region` is this region's key."""

    name: str | None = None
    timezone: str | None = None  # default: the time zone of the region's first practice
    digest_to: list[str] = Field(min_length=1)
    digest: DigestSchedule = DigestSchedule()
    # A group whose practices' leaders see each other: their digests may name the region's other practices when
    # comparing a shared vendor. Off by default: a practice's leaders see counts and figures, never who (and those
    # only when `peer_minimum` practices they may not name report the KPI; with it on, the group's are nameable).
    share_names: bool = False

    @field_validator("timezone")
    @classmethod
    def known_timezone(cls, value: str | None) -> str | None:
        return None if value is None else Practice.known_timezone(value)

    @field_validator("digest_to")
    @classmethod
    def email_addresses(cls, value: list[str]) -> list[str]:
        return Practice.email_addresses(value)


class PracticesFile(Strict):
    """Practice and vendor ids must be unique: config.check_unique_ids reports a repeat at its own line."""

    regions: dict[str, Region] = Field(default_factory=dict)
    # A digest shows a vendor's figures across other practices (median, best, counts) only when at least this many
    # practices the reader may not see by name report the KPI: with two or three, the "median" or "best" is one of
    # them. One value for the whole file, not per region: it protects the practices compared, not the reader's
    # group, so no region can lower it for the others. A region's `share_names` makes its own practices nameable.
    peer_minimum: int = Field(default=5, ge=1)
    practices: list[Practice]


class Kpi(Strict):
    label: str
    unit: Literal["%", "days", "hours", "USD", "score", "rate"]
    better: Literal["lower", "higher"]
    rule: Literal["threshold", "baseline", "spc"]
    warn: float | None = None
    crit: float | None = None
    target: float | None = None
    for_periods: int = Field(default=1, ge=1)
    # Hysteresis: a firing threshold alert clears only once the value is better than this.
    recover: float | None = None
    baseline: Tolerance | None = None
    glide_path: GlidePath | None = None
    trend_periods: int | None = Field(default=None, ge=0)
    escalate_after: int | None = Field(default=None, ge=0)  # months in breach in a row to escalate; 0: never
    spc: SpcRule | None = None  # besides its main rule; `rule: spc` without it takes the defaults' (or SpcRule())
    formula: str
    source: str

    @model_validator(mode="after")
    def threshold_needs_a_bound(self) -> Kpi:
        if self.rule == "threshold" and self.warn is None and self.crit is None:
            raise ValueError("a threshold rule needs warn or crit")
        return self


class CatalogDefaults(Strict):
    learning_period_days: int = Field(default=60, ge=0)
    repeat_interval_days: int = Field(default=7, ge=1)
    baseline_months: int = Field(default=12, ge=3)
    baseline_min_periods: int = Field(default=3, ge=1)
    baseline: Tolerance = Tolerance(warn_pct=10, crit_pct=20)
    trend_periods: int = Field(default=3, ge=0)
    # Seed 003: pain that lasts 3 to 6 months is the signal to act. A KPI in breach this many months running
    # raises a critical escalation alert (alerts/record.py).
    escalate_after: int = Field(default=3, ge=0)  # 0 turns it off
    spc: SpcRule | None = None  # given: every KPI is also judged by SPC, with these settings unless it says


class Catalog(Strict):
    defaults: CatalogDefaults = CatalogDefaults()
    kpis: dict[str, Kpi]
    remits: RemitsCatalog = RemitsCatalog()  # issue 16

    @model_validator(mode="after")
    def remits_check_known_kpis(self) -> Catalog:
        unknown = sorted(kpi for kpi in self.remits.checks if kpi not in self.kpis)
        if unknown:
            raise ValueError(f"remits.checks names KPIs not in the catalog: {', '.join(unknown)}")
        return self


class RouteMatch(Strict):
    severity: Severity | list[Severity] | None = None
    kind: Literal["alert", "operator"] | None = None
    practice: str | list[str] | None = None
    region: str | list[str] | None = None
    vendor: str | list[str] | None = None


class Route(Strict):
    when: RouteMatch = RouteMatch()
    tags: list[str] = Field(min_length=1)


class ChannelsFile(Strict):
    dry_run: bool = False
    urls: list[str | dict[str, object]] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    digest: str | None = None


PulseDimension = Literal[
    "pulse_workload",
    "pulse_role_clarity",
    "pulse_trust_leadership",
    "pulse_vendor_confidence",
    "pulse_burnout",
    "enps",
    "readiness_emotional",
    "readiness_leadership",
    "readiness_decisions",
    "readiness_process",
    "readiness_adjustment",
    "readiness_trust",
    "group",  # the optional grouping question (role or location): its answer names a group, not a score
]


class SurveyScale(Strict):
    """An answer scale: its numeric range and the labels an export may carry instead of numbers."""

    points: tuple[int, int] = (1, 5)
    labels: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def labels_on_the_scale(self) -> SurveyScale:
        low, high = self.points
        if low >= high:
            raise ValueError(f"points {list(self.points)}: the first must be below the second")
        outside = [label for label, value in self.labels.items() if not low <= value <= high]
        if outside:
            raise ValueError(f"labels outside {low}-{high}: {', '.join(outside)}")
        return self


class SurveyQuestion(Strict):
    """One question, matched to an export's column by its text or by its id (a Qualtrics QID or column name, a
    question id in the export's header)."""

    text: str | None = None
    id: str | None = None
    dimension: PulseDimension
    reverse: bool = False
    # A range such as [0, 10], or the name of a scale under `scales:` (which also knows its labels).
    scale: tuple[int, int] | str = (1, 5)

    @model_validator(mode="after")
    def named_somehow(self) -> SurveyQuestion:
        if not self.text and not self.id:
            raise ValueError("a question needs its text or its id")
        if isinstance(self.scale, tuple) and self.scale[0] >= self.scale[1]:
            raise ValueError(f"scale {list(self.scale)}: the first number must be below the second")
        return self


class SurveysFile(Strict):
    min_group_size: int = Field(default=5, ge=1)
    # A survey export is read whole (it is kilobytes: one row per staff member); anything bigger is the wrong file.
    max_export_mb: float = Field(default=20, gt=0)
    scales: dict[str, SurveyScale] = Field(default_factory=dict)
    questions: list[SurveyQuestion] = Field(default_factory=list)

    @model_validator(mode="after")
    def scales_exist(self) -> SurveysFile:
        unknown = sorted({q.scale for q in self.questions if isinstance(q.scale, str)} - set(self.scales))
        if unknown:
            raise ValueError(f"unknown scale {', '.join(unknown)} (define it under scales:)")
        if sum(1 for q in self.questions if q.dimension == "group") > 1:
            # Two ways of grouping the same people would let one group be subtracted from another.
            raise ValueError("at most one grouping question (dimension: group)")
        return self

    def scale_of(self, question: SurveyQuestion) -> SurveyScale:
        if isinstance(question.scale, str):
            return self.scales[question.scale]
        return SurveyScale(points=question.scale)
