"""Gather what leadership reads on Monday: each vendor's KPIs against target and baseline with their last 12
periods; the alerts opened, still open and resolved in the reporting window; late feeds; what the gaps cost; the
staff pulse (through pulse_report only); the huddle's talking points. Reads the database, never writes."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.record import RECORD_MONTHS, improving, record_of
from alerts.rules import (
    SEVERITY_ORDER,
    SIGNAL_ORDER,
    Point,
    Thresholds,
    baseline_of,
    in_learning_period,
    is_stale,
    judge_latest,
    spc_view,
    thresholds_for,
    worse_than,
)
from alerts.spc import assurance
from config import Config, Kpi, Practice, Vendor
from digest.assess import (
    dollar_lines,
    headline,
    row_status,
    sort_alerts,
    talking_points,
    target_for,
    without_covered_trends,
)
from digest.model import AlertLine, Digest, KpiRow, PayerFigure, PayerRanking, SpcReading, TrendPoint, VendorCard
from digest.peers import current, fields_for
from digest.portfolio import Field, HiddenPeers, PeerLine, figures_shown, peer_line, within, worst_standing
from digest.pulse_report import pulse_report
from digest.remits import denial_reasons, with_remits_checks
from digest.schedule import local_date, reporting_window
from feeds.freshness import next_due
from storage.models import Alert, AlertEvent, Observation, utcnow
from storage.models import Series as SeriesRow

TREND_PERIODS = 12
# SPEC section 3's staff pulse KPIs: an alert on one is about the staff, not a vendor.
STAFF_KPIS = {"pulse_participation_rate", "pulse_workload", "pulse_role_clarity", "pulse_trust_leadership",
              "pulse_vendor_confidence", "pulse_burnout_pct", "enps", "readiness_score"}
SeriesKey = tuple[str, str, str]  # (vendor, kpi, segment)
Series = dict[SeriesKey, list[Point]]
MAX_SEGMENT_ROWS = 5  # segment rows per KPI on a scorecard
# Seed 003 asks for A/R "overall and by payer" and denial categories: the worst payers on each, in the digest.
PAYER_KPIS = ("days_in_ar", "denial_rate")
MAX_PAYERS = 3
PAYER_WINDOW_DAYS = 100  # the last two monthly periods, or a few weekly ones


def build_digest(
    session: Session, config: Config, practice: Practice, week: str, now: dt.datetime | None = None
) -> Digest:
    start, end = reporting_window(practice.digest, practice.timezone, week, now or utcnow())
    as_of = local_date(end, practice.timezone)
    opened, still_open, resolved, late = split_alerts(load_alerts(session, config, practice, start), start)
    open_by_series = alerts_by_series(opened + still_open)
    shown, hidden = scorecard_series(session, practice.id, set(open_by_series))
    series, received = load_series(session, shown, as_of, end)
    vendors = tuple(
        vendor_card(config, practice, vendor, series, received, open_by_series, start, as_of, hidden)
        for vendor in practice.vendors
    )
    vendors = with_remits_checks(session, config, practice, vendors)  # issue 16: checked against the 835s
    pulse = pulse_report(session, config, practice, as_of)
    open_alerts = sort_alerts(opened + still_open)
    dollars = dollar_lines(practice, vendors)
    new_data = any(card.new_data for card in vendors)
    peers, peers_hidden, fields = peer_standing(session, config, practice, series)
    payers = payer_rankings(session, config, practice, as_of)
    return Digest(
        practice_id=practice.id,
        practice_name=practice.name,
        region=practice.region,
        timezone=practice.timezone,
        week=week,
        since=local_date(start, practice.timezone),
        as_of=as_of,
        headline=headline(open_alerts, late, vendors, new_data),
        points=talking_points(open_alerts, late, resolved, dollars, vendors, pulse),
        dollars=dollars,
        dollars_unknown=not practice.annual_net_collectible and any(
            row.key in ("net_collection_rate", "cost_to_collect_pct") for card in vendors for row in card.rows
        ),
        opened=tuple(sort_alerts(opened)),
        still_open=tuple(sort_alerts(still_open)),
        resolved=tuple(sort_alerts(resolved)),
        late_feeds=tuple(sort_alerts(late)),
        vendors=vendors,
        pulse=pulse,
        has_data=any(card.rows for card in vendors),
        new_data=new_data,
        denial_reasons=denial_reasons(session, config, practice, as_of),  # issue 16
        peers=peers,
        peers_hidden=peers_hidden,
        fields=fields,
        payers=payers,
    )


def payer_rankings(session: Session, config: Config, practice: Practice, until: dt.date
                   ) -> tuple[PayerRanking, ...]:
    """Per vendor, the worst MAX_PAYERS payers on days in A/R and the denial rate in the newest period a payer
    reported, each with its change since its previous period. Reads only the payer series of those KPIs, and only
    their last PAYER_WINDOW_DAYS of values."""
    query = select(SeriesRow.id, SeriesRow.vendor_id, SeriesRow.kpi, SeriesRow.segment).where(
        SeriesRow.practice_id == practice.id, SeriesRow.kpi.in_(PAYER_KPIS), SeriesRow.segment.like("payer:%"))
    names = {row[0]: (row[1], row[2], row[3]) for row in session.execute(query)}
    if not names:
        return ()
    values = (select(Observation.series_id, Observation.period, Observation.value)
              .where(Observation.series_id.in_(list(names)), Observation.period_start <= until,
                     Observation.period_start > until - dt.timedelta(days=PAYER_WINDOW_DAYS))
              .order_by(Observation.series_id, Observation.period_start))
    latest: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for series_id, period, value in session.execute(values):
        latest[series_id] = [*latest[series_id][-1:], (period, value)]
    grouped: dict[tuple[str, str], list[tuple[str, str, float, float | None]]] = defaultdict(list)
    for series_id, last in latest.items():
        vendor_id, kpi, segment = names[series_id]
        change = round(last[-1][1] - last[0][1], 2) if len(last) == 2 else None
        grouped[(vendor_id, kpi)].append((last[-1][0], segment.partition(":")[2], last[-1][1], change))
    return tuple(ranking for (vendor_id, kpi_key), found in sorted(grouped.items())
                 if (ranking := payer_ranking(config, practice, vendor_id, kpi_key, found)) is not None)


def payer_ranking(config: Config, practice: Practice, vendor_id: str, kpi_key: str,
                  found: list[tuple[str, str, float, float | None]]) -> PayerRanking | None:
    kpi, vendor = config.kpi(kpi_key), practice.vendor(vendor_id)
    if kpi is None or vendor is None:
        return None
    period = max(item[0] for item in found)
    current = [PayerFigure(name, value, change) for when, name, value, change in found if when == period]
    current.sort(key=lambda f: (-f.value if kpi.better == "lower" else f.value, f.payer))
    return PayerRanking(vendor.name, kpi_key, kpi.label, kpi.unit, kpi.better, period,
                        tuple(current[:MAX_PAYERS]), len(current))


def peer_standing(session: Session, config: Config, practice: Practice, series: Series
                  ) -> tuple[tuple[PeerLine, ...], tuple[HiddenPeers, ...], tuple[Field, ...]]:
    """For each vendor this practice shares with others: the KPI (practice-wide, latest period) on which it stands
    furthest behind the other practices, when that matters (digest.portfolio.matters); the KPIs whose figures it
    may not see (digest.portfolio.figures_shown), and every figure compared (the roll-up's)."""
    cache = current(session, config)
    named = nameable(config, practice)
    lines: list[PeerLine] = []
    hidden: list[HiddenPeers] = []
    fields: list[Field] = []
    for vendor in practice.vendors:
        if len(cache.served.get(vendor.id, ())) < 2:
            continue
        own = []
        withheld = []
        for (vendor_id, kpi, segment), points in series.items():
            if vendor_id != vendor.id or segment != "all":
                continue
            latest = points[-1]
            found = fields_for(session, config, vendor.id, latest.period_start, latest.period_end, cache).get(kpi)
            if found is None:
                continue
            fields.append(found)
            if not figures_shown(found, named, config.peer_minimum):
                withheld.append(found.kpi_label)
            elif (line := peer_line(found, practice.id, vendor.name)) is not None:
                own.append(line)
        if (worst := worst_standing(own)) is not None:
            lines.append(named_best(config, practice, worst, fields))
        if withheld:
            hidden.append(HiddenPeers(vendor.id, vendor.name, tuple(sorted(withheld)), config.peer_minimum,
                                      len(named) > 1, every_kpi=len(withheld) > 1 and not own))
    return tuple(lines), tuple(hidden), tuple(fields)


def nameable(config: Config, practice: Practice) -> frozenset[str]:
    """The practices whose figures this practice's leaders may see by name: their own, and their region's when it
    sets `share_names: true`."""
    region = config.regions.get(practice.region or "")
    if region is None or not region.share_names:
        return frozenset({practice.id})
    return frozenset(p.id for p in config.practices if p.region == practice.region) | {practice.id}


def named_best(config: Config, practice: Practice, line: PeerLine, fields: list[Field]) -> PeerLine:
    """With `share_names: true` on the practice's region, name the region's best practice (another one)."""
    others = nameable(config, practice) - {practice.id}
    if not others:
        return line  # no region sharing names: nothing over every practice for each digest
    group = {p.id: p.name for p in config.practices if p.id in others}
    found = next(f for f in fields if f.kpi == line.kpi and f.vendor_id == line.vendor_id)
    mine = within(found, group)
    if not mine.practices or not worse_than(line.value, mine.best, line.better):
        return line
    best_id = min(mine.values, key=lambda pid: (mine.rank(mine.values[pid]), group[pid]))
    return replace(line, best_name=group[best_id], group_best=mine.best)


def scorecard_series(session: Session, practice_id: str, alerted: set[SeriesKey]
                     ) -> tuple[dict[int, SeriesKey], Counter[str]]:
    """The series the scorecards show, by id, and per vendor how many segment series they leave off.

    Every practice-wide (`all`) series; a segment's (payer, location, provider) when it has an open alert, so the
    alert and its row agree; and a KPI's segments when the vendor sends no practice-wide figure for it, as that is
    all the data there is. At most MAX_SEGMENT_ROWS segments per KPI, those with open alerts first: a feed may
    carry hundreds of payers, and a digest past 102 KB is clipped by Gmail."""
    query = select(SeriesRow.id, SeriesRow.vendor_id, SeriesRow.kpi, SeriesRow.segment).where(
        SeriesRow.practice_id == practice_id)
    names = {series_id: (vendor, kpi, segment) for series_id, vendor, kpi, segment in session.execute(query)}
    whole = {(vendor, kpi) for vendor, kpi, segment in names.values() if segment == "all"}
    candidates: dict[tuple[str, str], list[tuple[int, SeriesKey]]] = defaultdict(list)
    shown = {}
    for series_id, key in names.items():
        vendor, kpi, segment = key
        if segment == "all":
            shown[series_id] = key
        elif key in alerted or (vendor, kpi) not in whole:
            candidates[(vendor, kpi)].append((series_id, key))
    hidden: Counter[str] = Counter()
    for (vendor, _), found in candidates.items():
        found.sort(key=lambda item: (item[1] not in alerted, item[1][2]))
        shown.update(found[:MAX_SEGMENT_ROWS])
        hidden[vendor] += len(found[MAX_SEGMENT_ROWS:])
    return shown, hidden


def load_series(session: Session, shown: dict[int, SeriesKey], until: dt.date, as_of: dt.datetime
                ) -> tuple[Series, dict[str, dt.datetime]]:
    """The values of the shown series up to `until`, oldest first, and when each vendor's newest value arrived by
    `as_of` (a past week rebuilt today never says a feed came after its date). Plain columns, not ORM objects: a
    practice has hundreds of rows and the digest only reads them."""
    if not shown:
        return {}, {}
    query = (
        select(
            Observation.series_id,
            Observation.period,
            Observation.period_start,
            Observation.period_end,
            Observation.value,
            Observation.updated_at,
        )
        .where(Observation.series_id.in_(list(shown)), Observation.period_start <= until)
        .order_by(Observation.period_start)
    )
    series: Series = defaultdict(list)
    received: dict[str, dt.datetime] = {}
    for series_id, period, start, end, value, updated_at in session.execute(query):
        key = shown[series_id]
        series[key].append(Point(period, start, end, value))
        if updated_at is not None and updated_at <= as_of:
            received[key[0]] = max(updated_at, received.get(key[0], updated_at))
    return series, received


def load_alerts(
    session: Session, config: Config, practice: Practice, since: dt.datetime
) -> list[tuple[Alert, AlertLine]]:
    """Alerts firing now, and those resolved since the window started (but not pending ones that never fired)."""
    query = select(Alert).where(
        Alert.practice_id == practice.id,
        (Alert.state == "firing") | ((Alert.state == "resolved") & (Alert.resolved_at >= since)),
    )
    alerts = list(session.scalars(query))
    never_fired = cleared_ids(session, [alert.id for alert in alerts if alert.state == "resolved"], since)
    names = {vendor.id: vendor.name for vendor in practice.vendors}
    return [(alert, alert_line(config, practice, names, alert)) for alert in alerts if alert.id not in never_fired]


def cleared_ids(session: Session, resolved_ids: list[int], since: dt.datetime) -> set[int]:
    """Resolved alerts whose ending was 'cleared': pending that never fired, which nobody was ever told about."""
    if not resolved_ids:
        return set()
    query = select(AlertEvent.alert_id).where(
        AlertEvent.alert_id.in_(resolved_ids), AlertEvent.event == "cleared", AlertEvent.at >= since
    )
    return set(session.scalars(query))


def alert_line(config: Config, practice: Practice, names: dict[str, str], alert: Alert) -> AlertLine:
    kpi = config.kpi(alert.kpi)
    return AlertLine(
        vendor_id=alert.vendor_id,
        # Not a configured vendor: the staff pulse's own (e.g. "staff-pulse" reads "Staff pulse").
        vendor=names.get(alert.vendor_id) or alert.vendor_id.replace("-", " ").capitalize(),
        kpi=alert.kpi,
        kpi_label=kpi.label if kpi else alert.kpi,
        unit=kpi.unit if kpi else "",
        better=kpi.better if kpi else "lower",
        rule=alert.rule,
        severity=alert.severity,
        value=alert.value,
        threshold=alert.threshold,
        period=alert.period,
        since=local_date(alert.started_at, practice.timezone),
        learning=alert.learning,
        resolved_on=local_date(alert.resolved_at, practice.timezone) if alert.resolved_at else None,
        about_staff=alert.vendor_id not in names and (alert.kpi in STAFF_KPIS or alert.rule == "pulse_overdue"),
        segment=alert.segment,
        recover=held_by(config, practice, alert),
    )


def held_by(config: Config, practice: Practice, alert: Alert) -> float | None:
    """The recovery line of a threshold alert whose value is back inside its limit but not past that line yet
    (it stays open, alerts.rules.judge_threshold): the digest must not call such a value 'over the limit'."""
    kpi, vendor = config.kpi(alert.kpi), practice.vendor(alert.vendor_id)
    if alert.rule != "threshold" or kpi is None or vendor is None or alert.state != "firing":
        return None
    if worse_than(alert.value, alert.threshold, kpi.better):
        return None
    return thresholds_for(kpi, practice, vendor, alert.kpi, config.catalog.defaults).recover


def split_alerts(
    alerts: list[tuple[Alert, AlertLine]], since: dt.datetime
) -> tuple[list[AlertLine], list[AlertLine], list[AlertLine], list[AlertLine]]:
    """(opened since the window started, open from before it, resolved since it started, late feeds)."""
    opened: list[AlertLine] = []
    still_open: list[AlertLine] = []
    resolved: list[AlertLine] = []
    late: list[AlertLine] = []
    for alert, line in alerts:
        if alert.state == "resolved":
            resolved.append(line)
        elif line.late_feed:
            late.append(line)
        else:
            (opened if alert.started_at >= since else still_open).append(line)
    return without_covered_trends(opened), without_covered_trends(still_open), resolved, late


def alerts_by_series(alerts: list[AlertLine]) -> dict[SeriesKey, list[AlertLine]]:
    """Open alerts by the series they are about: a payer's alert is about the payer's row, not the practice's."""
    found: dict[SeriesKey, list[AlertLine]] = defaultdict(list)
    for alert in alerts:
        found[(alert.vendor_id, alert.kpi, alert.segment)].append(alert)
    return found


def vendor_card(
    config: Config,
    practice: Practice,
    vendor: Vendor,
    series: Series,
    received: dict[str, dt.datetime],
    open_by_series: dict[SeriesKey, list[AlertLine]],
    window_start: dt.datetime,
    as_of: dt.date,
    hidden: Counter[str],
) -> VendorCard:
    segments = sorted((key for key in series if key[0] == vendor.id), key=lambda key: (key[2] != "all", key[2]))
    rows = tuple(
        kpi_row(config, practice, vendor, kpi_key, kpi, segment, series[(vendor.id, kpi_key, segment)],
                open_by_series.get((vendor.id, kpi_key, segment), []), as_of)
        for kpi_key, kpi in config.catalog.kpis.items()
        for _, key, segment in segments
        if key == kpi_key
    )
    latest_end = max((points[-1].period_end for key, points in series.items() if key[0] == vendor.id), default=None)
    arrived = received.get(vendor.id)
    return VendorCard(
        id=vendor.id,
        name=vendor.name,
        service=vendor.service,
        go_live=vendor.go_live,
        fee_pct=vendor.fee_pct,
        rows=rows,
        last_received=local_date(arrived, practice.timezone) if arrived else None,
        new_data=arrived is not None and arrived >= window_start,
        next_feed=next_due(vendor, latest_end, as_of),
        learning_until=learning_until(config, practice, vendor, as_of),
        hidden_segments=hidden[vendor.id],
    )


def kpi_row(
    config: Config,
    practice: Practice,
    vendor: Vendor,
    key: str,
    kpi: Kpi,
    segment: str,
    points: list[Point],
    open_alerts: list[AlertLine],
    as_of: dt.date,
) -> KpiRow:
    """The row's status and limit come from the rules evaluation runs (alerts.rules.judge_latest) on this row's
    own series, and only this series' open alerts can raise it."""
    latest = points[-1]
    defaults = config.catalog.defaults
    baseline = baseline_of(points, vendor.go_live, defaults.baseline_months, defaults.baseline_min_periods)
    thresholds = thresholds_for(kpi, practice, vendor, key, defaults)
    target = target_for(kpi, practice, vendor, key)
    learning = in_learning_period(latest.period_start, vendor.go_live, learning_days(config, practice))
    firing = any(alert.rule == "threshold" for alert in open_alerts)
    # The scorecard's status comes from the limit rules; its control chart is read once, below.
    verdicts = judge_latest(points, replace(thresholds, spc=None), baseline, vendor.go_live, learning, firing)
    alert_severity = max((alert.severity for alert in open_alerts), key=SEVERITY_ORDER.__getitem__, default=None)
    status, limit, recover = row_status(verdicts, alert_severity, latest.value, kpi.better, target)
    record = None if segment != "all" else record_of(points[-RECORD_MONTHS:], thresholds, target, vendor.go_live)
    return KpiRow(
        key=key,
        label=kpi.label,
        unit=kpi.unit,
        better=kpi.better,
        value=latest.value,
        period=latest.period,
        target=target,
        limit=limit,
        baseline=baseline,
        change=None if baseline is None else round(latest.value - baseline, 2),
        status=status,
        trend=tuple(TrendPoint(p.period, p.value, p.period_start < vendor.go_live) for p in points[-TREND_PERIODS:]),
        stale=is_stale(latest.period_end, vendor.cadence, as_of),
        segment=segment,
        recover=recover,
        record=record,
        getting_better=None if record is None else improving(record, kpi.better),
        spc=None if learning else spc_reading(points, thresholds, target, vendor, learning_days(config, practice)),
    )


def spc_reading(points: list[Point], thresholds: Thresholds, target: float | None, vendor: Vendor,
                learning_days: int) -> SpcReading | None:
    """The row's control chart as evaluation reads it (alerts.rules.spc_view): None until its window is full."""
    after = [p for p in points if p.period_start >= vendor.go_live]
    history = [p for p in points if p.period_start < vendor.go_live]
    view = spc_view(after, history, thresholds, vendor.go_live, learning_days)
    if view is None:
        return None
    chart, limits = view.chart, view.chart.limits
    current = sorted(chart.current(), key=lambda s: (s.direction != "deteriorating", SIGNAL_ORDER[s.kind]))
    signal = current[0] if current else None
    marked: dict[str, str] = {}
    for found in chart.signals:
        if found.kind != "crossings":  # a whole-series signal marks no point of its own
            for point in view.points[found.start:found.end + 1]:
                marked[point.period] = "deteriorating" if found.direction == "deteriorating" else marked.get(
                    point.period, found.direction)
    return SpcReading(
        mean=round(limits.mean, 2), lower=round(limits.lower, 2), upper=round(limits.upper, 2),
        window=limits.window, per="week" if vendor.cadence == "weekly" else "month",
        signal=signal.kind if signal else None, side=signal.side if signal else None,
        run=signal.length if signal else None, direction=signal.direction if signal else None,
        assurance=assurance(limits, target, thresholds.better),
        marks=tuple(marked.get(p.period, "") for p in points[-TREND_PERIODS:]),
    )


def learning_days(config: Config, practice: Practice) -> int:
    days = practice.learning_period_days
    return config.catalog.defaults.learning_period_days if days is None else days


def learning_until(config: Config, practice: Practice, vendor: Vendor, as_of: dt.date) -> dt.date | None:
    ends = vendor.go_live + dt.timedelta(days=learning_days(config, practice))
    return ends if vendor.go_live <= as_of < ends else None
