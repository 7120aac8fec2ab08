"""What a digest says, as plain data: built by digest/build.py, worded only by the templates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from alerts.record import Record
from digest.portfolio import Field, HiddenPeers, PeerLine, ServiceComparison, SharedVendor
from digest.pulse_report import PulseReport, PulseScore
from feeds.freshness import FeedDue

SEVERITY_RANK = {"critical": 0, "warning": 1}
YEARLY_GAPS = ("collection_gap", "cost_gap", "denial_gap")
REGION_DETAILED = 30  # practices shown in full in a regional roll-up


@dataclass(frozen=True)
class TrendPoint:
    period: str
    value: float
    before_go_live: bool


@dataclass(frozen=True)
class RemitsCheck:
    """Beside a KPI the payers' 835s also give (issue 16): the same month recomputed from the remittances."""

    claims: int  # remitted claims behind the figure
    remitted: float
    judged: bool  # False: too few claims to judge
    agrees: bool


@dataclass(frozen=True)
class DenialReason:
    payer: str
    category: str  # our own category names (remits.categories), never CARC texts
    count: int
    share: float  # % of the month's denials of this payer
    before_share: float | None  # % of this payer's denials in the months before the billing vendor's go-live


@dataclass(frozen=True)
class DenialReasons:
    month: str  # YYYY-MM of payment
    claims: int
    denied: int
    rows: tuple[DenialReason, ...]
    preventable: float | None = None  # % of the month's denials that were front-end or coding (all payers)
    preventable_before: float | None = None  # the same, in the months before go-live


@dataclass(frozen=True)
class SpcReading:
    """A KPI's control chart as the digest states it (alerts/spc.py, alerts.rules.spc_view): the baseline window's
    centre line and limits, the special cause that includes the newest value (None: common cause only), and per
    charted period whether a special cause marks it."""

    mean: float
    lower: float
    upper: float
    window: int  # periods in the baseline window
    per: str  # month | week
    signal: str | None  # outside | shift | trend | crossings
    side: str | None  # up | down
    run: int | None  # periods the signal spans
    direction: str | None  # improving | deteriorating
    assurance: str | None  # pass | fail | hit and miss: can the limits meet the target? None: no target
    marks: tuple[str, ...]  # per trend point, oldest first: '', 'improving' or 'deteriorating'

    @property
    def variation(self) -> str:
        """NHS variation icon: concern, improvement or common (cause)."""
        return {"deteriorating": "concern", "improving": "improvement"}.get(self.direction or "", "common")


@dataclass(frozen=True)
class KpiRow:
    """One KPI on a vendor's scorecard: the latest value against its target and the pre-go-live baseline."""

    key: str
    label: str
    unit: str
    better: str  # lower | higher
    value: float
    period: str
    target: float | None
    limit: float | None  # the bound it breaches, when it breaches one (alerts.rules.limit_for)
    baseline: float | None
    change: float | None  # value - baseline
    status: str  # critical | warning | off_target (inside its limits, short of target) | ok | tracked
    trend: tuple[TrendPoint, ...]  # the last 12 periods, oldest first
    stale: bool  # the vendor's feed is so late that this value is old news
    segment: str = "all"  # a payer's, location's or provider's own figure (payer:Aetna), or the whole practice's
    recover: float | None = None  # the line a held alert must pass to clear, while it is held by it
    remits: RemitsCheck | None = None  # issue 16
    record: Record | None = None  # its last 12 months after go-live (alerts.record), practice-wide rows only
    getting_better: bool | None = None  # the last 3 months against the 3 before (alerts.record.improving)

    @property
    def breached_lately(self) -> bool:
        """A breach in the last 12 months: worth the record's line on the scorecard."""
        return self.record is not None and self.record.longest_run > 0
    spc: SpcReading | None = None  # its control chart, once the baseline window is full

    @property
    def improved(self) -> bool | None:
        """Better than before go-live (None: no baseline, or no change)."""
        if not self.change:
            return None
        return (self.change < 0) == (self.better == "lower")


@dataclass(frozen=True)
class VendorCard:
    id: str
    name: str
    service: str
    go_live: dt.date
    fee_pct: float | None
    rows: tuple[KpiRow, ...]
    last_received: dt.date | None  # practice-local date the newest value arrived
    new_data: bool  # something arrived in the reporting window
    next_feed: FeedDue
    learning_until: dt.date | None  # set while the vendor is in its post-go-live learning period
    hidden_segments: int = 0  # segment rows left off the scorecard (see digest.build.MAX_SEGMENT_ROWS)

    @property
    def variation(self) -> KpiRow | None:
        """The row behind the vendor's NHS variation icon: the first with a concern, else the first improving;
        None: every charted KPI shows common cause (or none is charted yet)."""
        charted = [row for row in self.rows if row.spc is not None]
        for kind in ("concern", "improvement"):
            found = next((row for row in charted if row.spc and row.spc.variation == kind), None)
            if found is not None:
                return found
        return None

    @property
    def assurance(self) -> str | None:
        """NHS assurance over the vendor's charted KPIs with a target: fail if any cannot meet it, pass if all
        will, else hit and miss; None: no charted KPI has a target."""
        judged = [row.spc.assurance for row in self.rows if row.spc is not None and row.spc.assurance]
        if not judged:
            return None
        if "fail" in judged:
            return "fail"
        return "pass" if all(a == "pass" for a in judged) else "hit and miss"

    @property
    def charted(self) -> int:
        return sum(1 for row in self.rows if row.spc is not None)


@dataclass(frozen=True)
class AlertLine:
    vendor_id: str
    vendor: str
    kpi: str
    kpi_label: str
    unit: str
    better: str  # lower | higher
    rule: str  # threshold | baseline | glide_path | trend | freshness
    severity: str
    value: float
    threshold: float | None
    period: str
    since: dt.date  # practice-local date it opened
    learning: bool
    resolved_on: dt.date | None = None
    about_staff: bool = False  # a staff pulse KPI or the pulse schedule, not a vendor's
    segment: str = "all"
    recover: float | None = None  # set while the value is inside its limit but not yet past its recovery line

    @property
    def late_feed(self) -> bool:
        return self.rule == "freshness"


@dataclass(frozen=True)
class PayerFigure:
    payer: str  # its name, as the feed's segment gives it (payer:Aetna -> Aetna)
    value: float
    change: float | None  # against the payer's previous period (None: no previous period)


@dataclass(frozen=True)
class PayerRanking:
    """A vendor's worst payers on one KPI in its latest period (days in A/R, denials), worst first."""

    vendor: str
    kpi: str
    kpi_label: str
    unit: str
    better: str
    period: str
    worst: tuple[PayerFigure, ...]  # at most MAX_PAYERS
    payers: int  # how many payers reported it that period


@dataclass(frozen=True)
class DollarLine:
    """A gap priced in dollars a year, with the numbers that make the arithmetic visible.

    kind: collection_gap (net collection rate under target), cost_gap (cost to collect over target),
    vendor_fee (fee_pct x annual net collectible; with the in-house range for a billing vendor), denial_gap
    (denial rate over target x a month's net collections x 12: claims denied beyond target, a year) or ar_cash
    (days in A/R over target x average daily net collections: cash tied up once, not a year). The last two are
    priced from the month's net collections (collections, over period_days days), not annual_net_collectible."""

    kind: str
    vendor: str
    kpi: str
    kpi_label: str
    value: float  # the KPI, or the fee, in percent
    reference: float | None  # the target it misses
    gap: float  # percentage points, rounded as shown
    annual: float  # the practice's annual net collectible revenue
    amount: float  # dollars a year: gap / 100 x annual
    in_house_low: float | None = None
    in_house_high: float | None = None
    collections: float | None = None  # the month's net collections the denial and A/R gaps are priced from
    collections_period: str | None = None
    period_days: int | None = None

    @property
    def daily(self) -> float:
        """Average daily net collections, as shown (whole dollars), so the arithmetic adds up for the reader."""
        return round((self.collections or 0) / (self.period_days or 1))

    @property
    def yearly(self) -> bool:
        """A cost every year (summed as the gaps' cost); cash tied up in A/R is a one-off amount, and a fee is no
        gap."""
        return self.kind in YEARLY_GAPS


@dataclass(frozen=True)
class Headline:
    """The one-line verdict. tone: critical | warning | late | quiet (no new data) | ok | empty (no data ever)."""

    tone: str
    alert: AlertLine | None = None  # the worst open alert, or the latest late feed
    more: int = 0  # other open alerts (and late feeds) besides it
    kpis: int = 0  # KPIs on the scorecards
    last_received: dt.date | None = None


@dataclass(frozen=True)
class TalkingPoint:
    """One thing to raise at the next huddle, derived from the data.

    kind: alert | dollar | staff | readiness | late | learning | resolved | improved | first_feed"""

    kind: str
    alert: AlertLine | None = None
    dollar: DollarLine | None = None
    score: PulseScore | None = None
    readiness: str | None = None
    vendor: VendorCard | None = None
    row: KpiRow | None = None


@dataclass(frozen=True)
class Digest:
    practice_id: str
    practice_name: str
    region: str | None
    timezone: str
    week: str
    since: dt.date  # practice-local date the reporting window starts (the previous digest's send day)
    as_of: dt.date  # practice-local date it ends
    headline: Headline
    points: tuple[TalkingPoint, ...]
    dollars: tuple[DollarLine, ...]
    dollars_unknown: bool  # a billing vendor reports, but annual_net_collectible is not configured
    opened: tuple[AlertLine, ...]
    still_open: tuple[AlertLine, ...]
    resolved: tuple[AlertLine, ...]
    late_feeds: tuple[AlertLine, ...]
    vendors: tuple[VendorCard, ...]
    pulse: PulseReport | None
    has_data: bool
    new_data: bool
    denial_reasons: DenialReasons | None = None  # issue 16: from the payers' 835s
    # Where this practice stands among the practices its vendors serve: one line per vendor, where it matters.
    peers: tuple[PeerLine, ...] = ()
    # Per vendor, the KPIs compared with too few practices this one may not name to show any figure (why, not what).
    peers_hidden: tuple[HiddenPeers, ...] = ()
    # The figures compared (shared with every digest of the run), so a roll-up is built from digests alone.
    fields: tuple[Field, ...] = ()
    payers: tuple[PayerRanking, ...] = ()  # the worst payers for A/R and denials, where feeds carry payer segments

    @property
    def open_alerts(self) -> tuple[AlertLine, ...]:
        return self.opened + self.still_open

    def count(self, severity: str) -> int:
        return sum(1 for alert in self.open_alerts if alert.severity == severity)

    @property
    def gap_dollars(self) -> float:
        return sum(line.amount for line in self.dollars if line.yearly)


@dataclass(frozen=True)
class RegionDigest:
    """The regional leader's roll-up: one line per practice, the practices needing action first."""

    key: str
    name: str
    week: str
    since: dt.date
    as_of: dt.date
    practices: tuple[Digest, ...]
    vendors: tuple[SharedVendor, ...] = ()  # vendors serving two or more of its practices, compared across them
    services: tuple[ServiceComparison, ...] = ()  # different vendors of one service side by side

    @property
    def needing_action(self) -> tuple[Digest, ...]:
        return tuple(d for d in self.practices if d.open_alerts or d.late_feeds)

    @property
    def detailed(self) -> tuple[Digest, ...]:
        """The practices shown in full: the worst ones, as many as an email holds before Gmail clips it."""
        return self.needing_action[:REGION_DETAILED]

    @property
    def listed(self) -> tuple[Digest, ...]:
        """The rest, named in a line: needing attention beyond the detailed ones, then the practices on track."""
        shown = {d.practice_id for d in self.detailed}
        return tuple(d for d in self.practices if d.practice_id not in shown)

    @property
    def gap_dollars(self) -> float:
        return sum(d.gap_dollars for d in self.practices)

    @property
    def tone(self) -> str:
        severities = {a.severity for d in self.practices for a in d.open_alerts}
        late = any(d.late_feeds for d in self.practices)
        return next((s for s in ("critical", "warning") if s in severities), "late" if late else "ok")
