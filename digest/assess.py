"""Pure judgements behind the digest: a row's status, what the gaps cost, the verdict, the huddle's talking
points. Data in, data out; no database, no clock, no wording (the templates word it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from alerts.rules import LIMIT_RULES, SEVERITY_ORDER, Verdict, worse_than
from config import Kpi, Practice, Vendor
from digest.model import (
    SEVERITY_RANK,
    AlertLine,
    DollarLine,
    Headline,
    KpiRow,
    TalkingPoint,
    VendorCard,
)
from digest.pulse_report import PulseReport, PulseScore
from storage.periods import MONTH, parse_period

# Percent-of-collections KPIs whose gap to target is money: gap points / 100 x annual net collectible.
GAP_KINDS = {"net_collection_rate": "collection_gap", "cost_to_collect_pct": "cost_gap"}
# Gaps priced from a month's net collections: denials over target a year, days in A/R over target once.
MONTH_GAP_KINDS = {"denial_rate": "denial_gap", "days_in_ar": "ar_cash"}
# SPEC section 2: an in-house billing office often costs 9-10% of net collections.
IN_HOUSE_PCT = (9.0, 10.0)
IN_HOUSE_SERVICES = {"billing", "billing_follow_up"}
# SPEC section 3's default pulse rules: how far a score may fall from its baseline before it is a signal.
PULSE_DROP_LIMITS = {
    "pulse_workload": 0.5,
    "pulse_role_clarity": 0.5,
    "pulse_trust_leadership": 0.5,
    "pulse_vendor_confidence": 0.5,
    "enps": 20.0,
}
PULSE_RISE_LIMITS = {"pulse_burnout_pct": 10.0}
PARTICIPATION_FLOOR = 60.0
READINESS_FLOOR = 18.0
MAX_POINTS = 3


def target_for(kpi: Kpi, practice: Practice, vendor: Vendor, key: str) -> float | None:
    """The vendor's override, else the practice's, else the catalog's target."""
    for override in (vendor.overrides.get(key), practice.overrides.get(key)):
        if override is not None and override.target is not None:
            return override.target
    return kpi.target


def row_status(
    verdicts: Mapping[str, Verdict],
    alert_severity: str | None,
    value: float,
    better: str,
    target: float | None = None,
) -> tuple[str, float | None, float | None]:
    """(status, the limit breached, the recovery line holding an alert open): the worse of what the limit rules
    say of the value (the verdicts evaluation gives, alerts.rules.judge_latest) and the row's own open alerts (a
    trend or glide-path alert can be open while the value is inside its limits). The limit is the verdict's, so
    the scorecard states the number the alert states. Inside every limit but short of its target is
    'off_target', not 'ok': a manager reading "OK" next to a priced gap would be misled."""
    judged = [verdicts[rule] for rule in LIMIT_RULES if rule in verdicts]
    worst = max((v for v in judged if v.severity), key=lambda v: SEVERITY_ORDER[v.severity or ""], default=None)
    severity = worst.severity if worst else None
    if alert_severity and SEVERITY_ORDER[alert_severity] > SEVERITY_ORDER.get(severity or "", 0):
        return alert_severity, None, None
    if worst is not None and severity:
        return severity, worst.threshold, worst.recover
    if worse_than(value, target, better):
        return "off_target", None, None
    return ("ok" if judged else "tracked"), None, None


def dollar_lines(practice: Practice, vendors: Sequence[VendorCard]) -> tuple[DollarLine, ...]:
    """Gaps a year first, the biggest first; then cash tied up in A/R; then what each vendor's fee costs. The
    collection and cost gaps and the fees are shares of the practice's annual net collectible revenue; the
    denial and A/R gaps are priced from the latest month's net collections a vendor reports."""
    annual = practice.annual_net_collectible
    collections = collections_row(vendors)
    gaps: list[DollarLine] = []
    fees: list[DollarLine] = []
    for card in vendors:
        for row in card.rows:
            line = gap_line(card, row, annual) if annual else None
            line = line or (month_gap_line(card, row, collections) if collections else None)
            if line is not None:
                gaps.append(line)
        if annual and (fee := fee_line(card, annual)) is not None:
            fees.append(fee)
    gaps.sort(key=lambda line: (not line.yearly, -line.amount))
    return tuple(gaps + fees)


def collections_row(vendors: Sequence[VendorCard]) -> KpiRow | None:
    """The practice's latest monthly net collections, from whichever vendor reports them (the billing one)."""
    rows = [row for card in vendors for row in card.rows
            if row.key == "net_collections" and row.segment == "all" and not row.stale and row.value > 0
            and MONTH.match(row.period)]
    return max(rows, key=lambda row: row.period, default=None)


def month_gap_line(card: VendorCard, row: KpiRow, collections: KpiRow) -> DollarLine | None:
    """Denied dollars at risk (denial_rate over target) and cash tied up by days in A/R over target, priced from
    a month's net collections."""
    kind = MONTH_GAP_KINDS.get(row.key)
    if kind is None or row.target is None or row.stale or row.segment != "all":
        return None
    over = round(row.value - row.target, 1)  # both are "lower is better"; priced as shown
    if over <= 0:
        return None
    period = parse_period(collections.period)
    days = (period.end - period.start).days + 1
    line = DollarLine(kind, card.name, row.key, row.label, row.value, row.target, over, 0.0, 0.0,
                      collections=collections.value, collections_period=collections.period, period_days=days)
    amount = over * line.daily if kind == "ar_cash" else over / 100 * collections.value * 12
    return replace(line, amount=amount)


def gap_line(card: VendorCard, row: KpiRow, annual: float) -> DollarLine | None:
    kind = GAP_KINDS.get(row.key)
    # A segment's rate is not the practice's: priced on the whole practice's revenue it would overstate the gap.
    if kind is None or row.target is None or row.stale or row.segment != "all":
        return None
    shortfall = row.target - row.value if row.better == "higher" else row.value - row.target
    # Price the gap as shown (one decimal), so the arithmetic in the email adds up for the reader.
    gap = round(shortfall, 1)
    if gap <= 0:
        return None
    return DollarLine(kind, card.name, row.key, row.label, row.value, row.target, gap, annual, gap / 100 * annual)


def fee_line(card: VendorCard, annual: float) -> DollarLine | None:
    fee_pct = card.fee_pct
    if fee_pct is None:
        return None
    low = high = None
    if card.service in IN_HOUSE_SERVICES:
        low, high = (pct / 100 * annual for pct in IN_HOUSE_PCT)
    return DollarLine("vendor_fee", card.name, "", "", fee_pct, None, fee_pct, annual, fee_pct / 100 * annual,
                      low, high)


def sort_alerts(alerts: Iterable[AlertLine]) -> list[AlertLine]:
    # A KPI's escalation after its own alerts: the verdict states this month's value first (the huddle's point
    # raises the escalation instead, talking_points).
    return sorted(alerts, key=lambda a: (SEVERITY_RANK.get(a.severity, 2), a.vendor, a.kpi_label, a.segment,
                                         a.rule == "escalation"))


def without_covered_trends(lines: Sequence[AlertLine]) -> list[AlertLine]:
    """A trend on a KPI that already has a threshold or baseline alert adds nothing for a reader."""
    covered = {(line.vendor_id, line.kpi, line.segment) for line in lines if line.rule in ("threshold", "baseline")}
    return [line for line in lines if line.rule != "trend" or (line.vendor_id, line.kpi, line.segment) not in covered]


def headline(
    open_alerts: Sequence[AlertLine],
    late_feeds: Sequence[AlertLine],
    vendors: Sequence[VendorCard],
    new_data: bool,
) -> Headline:
    kpis = sum(len({row.key for row in card.rows}) for card in vendors)  # a KPI with segment rows counts once
    received = [card.last_received for card in vendors if card.last_received is not None]
    last = max(received) if received else None
    if kpis == 0:
        return Headline("empty", late_feeds[0] if late_feeds else None, max(0, len(late_feeds) - 1))
    if open_alerts:
        worst = open_alerts[0]
        more = len(distinct_topics(open_alerts)) - 1 + len(late_feeds)
        return Headline(worst.severity, worst, more, kpis, last)
    if late_feeds:
        return Headline("late", late_feeds[0], len(late_feeds) - 1, kpis, last)
    return Headline("ok" if new_data else "quiet", None, 0, kpis, last)


def distinct_topics(alerts: Sequence[AlertLine]) -> list[AlertLine]:
    """Without the escalations of KPIs that have another open alert: one problem, not one more."""
    others = {(a.vendor_id, a.kpi, a.segment) for a in alerts if a.rule != "escalation"}
    return [a for a in alerts if a.rule != "escalation" or (a.vendor_id, a.kpi, a.segment) not in others]


def talking_points(
    open_alerts: Sequence[AlertLine],
    late_feeds: Sequence[AlertLine],
    resolved: Sequence[AlertLine],
    dollars: Sequence[DollarLine],
    vendors: Sequence[VendorCard],
    pulse: PulseReport | None,
) -> tuple[TalkingPoint, ...]:
    """Up to three, never filler: the worst open alert, the biggest dollar gap, a staff signal or a late feed;
    then whatever else the week holds (more alerts, a vendor in its learning period, good news)."""
    # Months in breach say more than this month's value: a KPI's escalation is the point raised for it.
    escalated = {(a.vendor_id, a.kpi, a.segment): a for a in open_alerts if a.rule == "escalation"}
    alerts = [TalkingPoint("alert", alert=escalated.get((a.vendor_id, a.kpi, a.segment), a)) for a in open_alerts]
    gaps = [TalkingPoint("dollar", dollar=d) for d in dollars if d.kind != "vendor_fee"]
    staff = [point] if (point := staff_signal(pulse)) else []
    silent = {card.name for card in vendors if not card.rows}  # never sent anything: first_feed says it
    late = [TalkingPoint("late", alert=a) for a in late_feeds if a.vendor not in silent]
    first = [TalkingPoint("first_feed", vendor=card) for card in vendors if not card.rows]
    learning = [TalkingPoint("learning", vendor=card) for card in vendors if card.learning_until]
    good = [TalkingPoint("resolved", alert=a) for a in resolved if not a.late_feed]
    improved = best_improvement(vendors)
    # The biggest gap that is not the first alert's own KPI (that alert raises it already).
    gap = [point for point in gaps if not same_topic(point, alerts[:1])][:1]
    primary = [alerts[:1], gap, (staff or late or first)[:1]]
    rest = [alerts[1:], late, first, staff, learning, good, improved, gaps[1:]]
    chosen: list[TalkingPoint] = []
    for group in primary + rest:
        for point in group:
            if point not in chosen and len(chosen) < MAX_POINTS and not same_topic(point, chosen):
                chosen.append(point)
    return tuple(chosen)


def same_topic(point: TalkingPoint, chosen: list[TalkingPoint]) -> bool:
    """An alert and a dollar gap on the same KPI of the same vendor are one topic: raise it once."""
    return topic(point) is not None and topic(point) in {topic(other) for other in chosen}


def topic(point: TalkingPoint) -> tuple[str, str, str] | None:
    """A payer's alert is not the practice-wide gap's topic: each is raised."""
    if point.alert is not None and not point.alert.late_feed:
        return point.alert.vendor, point.alert.kpi, point.alert.segment
    if point.dollar is not None:
        return point.dollar.vendor, point.dollar.kpi, "all"
    return None


def staff_signal(report: PulseReport | None) -> TalkingPoint | None:
    """The pulse score that crossed SPEC's default pulse rules furthest, or a readiness verdict short of
    'proceed'. Only what pulse_report chose to show (anonymity) is ever looked at."""
    if report is None or not report.shown:
        return None
    if report.readiness_verdict in ("pause", "prepare"):
        return TalkingPoint("readiness", readiness=report.readiness_verdict)
    scored = [(severity, score) for score in report.scores if (severity := pulse_severity(score)) >= 1]
    if not scored:
        return None
    return TalkingPoint("staff", score=max(scored, key=lambda item: item[0])[1])


def pulse_severity(score: PulseScore) -> float:
    """How far past its limit a score is: 1.0 at the limit, 0 when nowhere near it."""
    if score.key == "pulse_participation_rate":
        return 1.0 + (PARTICIPATION_FLOOR - score.value) / PARTICIPATION_FLOOR if score.value < PARTICIPATION_FLOOR \
            else 0.0
    if score.key == "readiness_score":
        return 2.0 if score.value < READINESS_FLOOR else 0.0
    if score.baseline is None:
        return 0.0
    if score.key in PULSE_DROP_LIMITS:
        return max(0.0, (score.baseline - score.value) / PULSE_DROP_LIMITS[score.key])
    if score.key in PULSE_RISE_LIMITS:
        return max(0.0, (score.value - score.baseline) / PULSE_RISE_LIMITS[score.key])
    return 0.0


def best_improvement(vendors: Sequence[VendorCard]) -> list[TalkingPoint]:
    """The KPI most improved against its baseline (relative to the baseline), as good news to share."""
    improved = [(abs(row.change or 0) / abs(row.baseline or 1), card, row) for card in vendors for row in card.rows
                if row.improved and row.baseline and row.status == "ok" and not row.stale and row.segment == "all"]
    if not improved:
        return []
    _, card, row = max(improved, key=lambda item: item[0])
    return [TalkingPoint("improved", vendor=card, row=row)]
