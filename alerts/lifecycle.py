"""Evaluation: observations -> verdicts -> alert state changes -> one outbox message per practice.

Alert rows, their events and the notification they cause are written in one transaction, so a crash can never
leave an alert that changed state without its message, or a message for a change that did not happen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache, cached_property
from itertools import count, groupby
from operator import attrgetter, itemgetter
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Select,
    String,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import CollationClause

from alerts.decide import NOTIFYING_EVENTS, AlertState, SilenceWindow, is_silenced
from alerts.formats import TEXT
from alerts.messages import environment
from alerts.record import ESCALATION_RULE, RECORD_MONTHS, escalation_verdict, record_of
from alerts.remits_check import remits_verdicts
from alerts.routes import MessageFacts, select_tags
from alerts.rules import (
    LIMIT_RULES,
    SEVERITY_ORDER,
    Point,
    Thresholds,
    Verdict,
    arrived_late,
    baseline_of,
    in_learning_period,
    is_stale,
    judge_latest,
    overdue_verdict,
    severity_of,
    thresholds_for,
    thresholds_with,
)
from alerts.state import Step, next_state
from config import Config, Kpi, Practice, Vendor
from config.schema import Catalog
from feeds.freshness import FeedDue, next_due
from pulse.staff import STAFF_VENDOR_ID, baseline_min_periods, staff_vendor, stale_after_days
from pulse.tracking import tracking_start
from remits.summary import stored_months
from storage.models import (
    Alert,
    AlertEvent,
    FeedFile,
    Notification,
    Observation,
    PulseSurvey,
    RemitMonth,
    Series,
    Silence,
)

RULE = "threshold"
FRESHNESS_RULE = "freshness"
FEED_KPI = "feed"
PULSE_OVERDUE_RULE, PULSE_KPI = "pulse_overdue", "pulse"  # the staff check-in schedule (pulse/schedule.py)
TITLE_TEMPLATE = "alert_title.txt"  # in alerts/templates, rendered as plain text
AlertKey = tuple[str, str, str, str]  # (rule, vendor, kpi, segment)
SeriesKey = tuple[str, str, str]  # (vendor, kpi, segment)

LOOSE_RULES = (FRESHNESS_RULE, PULSE_OVERDUE_RULE)  # alerts that belong to no series
RECORD_EVERY = 1_000  # changed alerts written per batch: a practice with 100,000s of changes holds one batch
# Rows read in one round trip, as nearly every practice's are; a practice with more is streamed that many at a time
# (a server-side cursor on PostgreSQL, which costs more round trips: for a batch of small practices more than the
# rows). Read whole, a practice of 5 million values took 4.2 GB (issue 13); a value held costs about 1.1 KB.
VALUES_AT_ONCE, ALERTS_AT_ONCE = 10_000, 1_000
# The same for practices read together (alerts.evaluate: 50 practices of 600 values each are 30,000, some 33 MB).
BATCH_VALUES_AT_ONCE, BATCH_ALERTS_AT_ONCE = 50_000, 5_000
SERVER_CURSORS = count()  # names PostgreSQL's server-side cursors apart
Q = TypeVar("Q")  # a query
T = TypeVar("T")  # a row
T_co = TypeVar("T_co", covariant=True)
K = TypeVar("K", bound=str)  # a key things are grouped by


def by_name(column: InstrumentedAttribute[str], dialect: str) -> CollationClause | InstrumentedAttribute[str]:
    """Ordered as Python orders str (by code point): PostgreSQL's "C" collation, SQLite's default."""
    return column.collate("C") if dialect == "postgresql" else column


# Built once per dialect with bound practice ids: building a statement and its cache key took longer than running
# it. Each comes as (at most the rows read at once, plus one; all of them, streamed). Both orders are the practices'
# ids and then the series' names, so a practice takes its part of each in turn, a series and its alerts meet as the
# two go, and alert ids, events and a message's changes follow that order as they always have.
@cache
def series_queries(dialect: str, at_once: int) -> tuple[Select[*tuple[Any, ...]], ...]:
    """Every dialect but PostgreSQL (postgres_series_sql)."""
    query = (select(Observation.practice_id, Observation.series_id, Observation.vendor_id, Observation.kpi,
                    Observation.segment, Observation.period, Observation.period_start, Observation.period_end,
                    Observation.value, Observation.feed_file_id)
             .where(Observation.practice_id.in_(bindparam("practice_ids", expanding=True)))
             .order_by(*(by_name(column, dialect) for column in (Observation.practice_id, Observation.vendor_id,
                                                                 Observation.kpi, Observation.segment)),
                       Observation.period_start, Observation.period_end))
    return query.limit(at_once + 1), query.execution_options(yield_per=at_once)


@cache
def postgres_series_sql() -> str:
    """The same rows, in the same order, for PostgreSQL: the practices' series in name order, numbered, and each
    one's values through a lateral subquery (OFFSET 0 keeps it one: an index range scan per series). As a plain join
    PostgreSQL hashes the whole value table for a batch of 50 practices (190 ms at 2,000 practices, against 45 ms),
    and sorting by an integer costs less than by four names. SQL for psycopg's own cursor (driver_rows)."""
    names = [by_name(column, "postgresql") for column in (Series.practice_id, Series.vendor_id, Series.kpi,
                                                           Series.segment)]
    chosen = (select(Series.id, Series.practice_id, Series.vendor_id, Series.kpi, Series.segment,
                     func.row_number().over(order_by=names).label("place"))
              .where(Series.practice_id == any_(bindparam("practice_ids", type_=ARRAY(String))))
              .subquery("chosen"))
    values = (select(Observation.period, Observation.period_start, Observation.period_end, Observation.value,
                     Observation.feed_file_id)
              .where(Observation.series_id == chosen.c.id).offset(literal_column("0")).lateral("chosen_values"))
    query = (select(chosen.c.practice_id, chosen.c.id, chosen.c.vendor_id, chosen.c.kpi, chosen.c.segment,
                    values.c.period, values.c.period_start, values.c.period_end, values.c.value,
                    values.c.feed_file_id)
             .select_from(chosen.join(values, true()))
             .order_by(chosen.c.place, values.c.period_start, values.c.period_end))
    return str(query.compile(dialect=psycopg_dialect()))


def driver_rows(connection: Connection, practice_ids: list[str], at_once: int) -> Iterable[tuple[Any, ...]]:
    """PostgreSQL: the practices' values through psycopg's own cursor, as plain tuples. SQLAlchemy's result rows
    took three times the CPU of the whole read (0.10 s against 0.036 s for a batch's 30,000 values). Whole if
    there are at most `at_once`, else streamed that many at a time by a server-side cursor."""
    driver: Any = connection.connection.dbapi_connection  # a psycopg Connection
    with driver.cursor() as cursor:
        cursor.execute(postgres_series_sql() + f" LIMIT {at_once + 1:d}", {"practice_ids": practice_ids})
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows if len(rows) <= at_once else driver_stream(driver, practice_ids, at_once)


def driver_stream(driver: Any, practice_ids: list[str], at_once: int) -> Iterator[tuple[Any, ...]]:
    with driver.cursor(name=f"evaluation_values_{next(SERVER_CURSORS)}") as cursor:
        cursor.itersize = at_once
        cursor.execute(postgres_series_sql(), {"practice_ids": practice_ids})
        yield from cursor


@cache
def alert_queries(dialect: str, at_once: int) -> tuple[Select[Alert], ...]:
    query = (select(Alert).where(Alert.practice_id.in_(bindparam("practice_ids", expanding=True)))
             .order_by(*(by_name(column, dialect) for column in (Alert.practice_id, Alert.vendor_id, Alert.kpi,
                                                                 Alert.segment)),
                       Alert.rule))
    return query.limit(at_once + 1), query.execution_options(yield_per=at_once)


class Rows(Protocol[T_co]):
    """A query's result: SQLAlchemy's CursorResult and ScalarResult both are."""

    def __iter__(self) -> Iterator[T_co]: ...

    def all(self) -> Sequence[T_co]: ...


def whole_or_streamed(run: Callable[[Q], Rows[T]], queries: tuple[Q, ...], at_once: int) -> Iterable[T]:
    """The rows of the first query if it found no more than `at_once`; else all rows again, from the second.
    Fetched with all(), not row by row: iterating a result fetched each row with a call of its own."""
    rows = run(queries[0]).all()
    return rows if len(rows) <= at_once else run(queries[1])



CLOSINGS_QUERY = select(PulseSurvey.closed_on).where(PulseSurvey.practice_id == bindparam("practice_id"))
# New alerts' ids follow the order things happened. On PostgreSQL they are drawn from the table's sequence first and
# the rows then inserted by a plain executemany (psycopg sends them in one pipeline): INSERT .. RETURNING over many
# rows, which SQLAlchemy renders as one statement of every row's parameters, cost about 0.85 ms a row to render and
# parse, against 0.1. Elsewhere (SQLite) RETURNING with sort_by_parameter_order gives the ids in the order given.
NEXT_ALERT_IDS = text("SELECT nextval(pg_get_serial_sequence('alert', 'id')) FROM generate_series(1, :count) "
                      "ORDER BY 1")
ALERT_INSERT = insert(Alert)
ALERT_INSERT_RETURNING = insert(Alert).returning(Alert.id, sort_by_parameter_order=True)
EVENT_INSERT = insert(AlertEvent)  # an event's id is never needed here


@dataclass(frozen=True)
class Change:
    """One alert that changed in this evaluation; also the payload the message templates read."""

    alert_id: int
    event: str
    severity: str
    previous_severity: str | None
    practice: str
    vendor: str
    vendor_name: str
    kpi: str
    kpi_label: str
    unit: str
    better: str
    segment: str
    value: float
    threshold: float | None
    period: str
    learning: bool
    rule: str = RULE
    due_on: str | None = None
    baseline: float | None = None
    expected: float | None = None
    muted: bool = False
    previous_learning: bool = False
    recover: float | None = None  # the line a held alert must pass to clear (alerts.rules.judge_threshold)
    reported_on: str | None = None  # set when the value arrived long after its period ended (LateArrival)
    days_after_period: int | None = None
    # rule spc: the special cause (alerts.rules.judge_spc), its side, periods and line; `per`: month or week
    signal: str | None = None
    side: str | None = None
    run: int | None = None
    line: float | None = None
    per: str | None = None


@dataclass
class EvaluationResult:
    practice: str
    changes: list[Change]
    notification_id: int | None

    def as_dict(self) -> dict[str, object]:
        return {"practice": self.practice, "notification_id": self.notification_id,
                "changes": [asdict(change) for change in self.changes]}


@dataclass(frozen=True)
class Applied:
    """An event applied to an alert in memory, written by `record` with the practice's other events. `change` is
    what it tells (None for events that notify nobody); its alert_id is filled in once the alert row exists."""

    alert: Alert
    event: AlertEvent | None  # None: the alert only follows the latest value (follow_latest)
    change: Change | None


@dataclass(frozen=True)
class LateArrival:
    """A value that reached us more than a stale window after its period ended: it is judged as news, and the
    message says how late it came."""

    reported_on: dt.date
    days_after_period: int


# kpi key -> (the catalog it was built from, its thresholds without overrides)
_CATALOG_THRESHOLDS: dict[str, tuple[Catalog, Thresholds]] = {}


def catalog_thresholds(config: Config, kpi: Kpi, kpi_key: str) -> Thresholds:
    """thresholds_for without overrides: the same for every practice and vendor of one catalog, so built once
    per catalog and KPI (a reloaded configuration has a new catalog object and builds its own)."""
    found = _CATALOG_THRESHOLDS.get(kpi_key)
    if found is None or found[0] is not config.catalog:
        found = _CATALOG_THRESHOLDS[kpi_key] = (config.catalog, thresholds_with(kpi, config.catalog.defaults))
    return found[1]


@dataclass(frozen=True)
class Context:
    """What every rule of one practice's evaluation shares."""

    config: Config
    practice: Practice
    as_of: dt.date
    now: dt.datetime
    silences: list[SilenceWindow]
    remitting: Container[str] | None = None  # practices with remittances stored, when read for many at once
    arrivals: dict[int, dt.date | None] = field(default_factory=dict)  # feed file id -> practice-local day received
    remit_months: dict[dt.date, Sequence[RemitMonth]] = field(default_factory=dict)  # month -> stored, all payers

    @cached_property
    def repeat_interval(self) -> dt.timedelta:
        return dt.timedelta(days=self.config.catalog.defaults.repeat_interval_days)

    def thresholds(self, kpi: Kpi, vendor: Vendor, kpi_key: str) -> Thresholds:
        """A KPI's settings for a vendor; the catalog's alone, computed once per run, unless an override applies
        (a practice's or vendor's own settings: then computed for it)."""
        if kpi_key in self.practice.overrides or kpi_key in vendor.overrides:
            return thresholds_for(kpi, self.practice, vendor, kpi_key, self.config.catalog.defaults)
        return catalog_thresholds(self.config, kpi, kpi_key)

    def received_on(self, session: Session, feed_file_id: int | None) -> dt.date | None:
        """The practice-local day a feed file arrived; read once per file, and only for old-looking values."""
        if feed_file_id is None:
            return None
        if feed_file_id not in self.arrivals:
            received = session.scalar(select(FeedFile.received_at).where(FeedFile.id == feed_file_id))
            self.arrivals[feed_file_id] = (None if received is None else
                                           received.astimezone(ZoneInfo(self.practice.timezone)).date())
        return self.arrivals[feed_file_id]

    def remitted(self, session: Session, month: dt.date) -> Sequence[RemitMonth]:
        """The practice's stored remittance months of `month`: read once per month, and not at all when the run
        knows the practice has none (most have none; several KPIs of a practice are checked against one month)."""
        if self.remitting is not None and self.practice.id not in self.remitting:
            return ()
        if month not in self.remit_months:
            self.remit_months[month] = stored_months(session, self.practice.id, month)
        return self.remit_months[month]


def evaluate_together(session: Session, config: Config, practices: Sequence[Practice], as_of: dt.date,
                      now: dt.datetime, silences: list[SilenceWindow],
                      remitting: Container[str] | None = None) -> list[EvaluationResult]:
    """Practices judged in one transaction, each on its own: their values and alerts read together (`Reads`), their
    changes written together (`Recorder`), each practice's message its own. `remitting`: the practices with
    remittances stored, when the caller knows. Results come in the order of `practices`.
    One series and its alerts are held at a time, and changes are written every RECORD_EVERY, so memory does not
    grow with a practice's size (only its Change list does, about a kilobyte per change)."""
    reads, recorder = Reads(session, [practice.id for practice in practices]), Recorder(session)
    told: dict[str, list[Change]] = {}
    for practice in in_read_order(practices):
        context = Context(config, practice, as_of, now, silences, remitting)
        told[practice.id] = judge_practice(session, context, reads, recorder)
    recorder.write()
    return [EvaluationResult(practice.id, told[practice.id],
                             enqueue_message(session, config, practice,
                                             [c for c in told[practice.id] if not c.muted], now))
            for practice in practices]


def judge_practice(session: Session, context: Context, reads: Reads, recorder: Recorder) -> list[Change]:
    """Every rule of one practice, handed to `recorder`; the list of its changes fills in as they are written."""
    practice_id = context.practice.id
    changes: list[Change] = []
    newest_ends: dict[str, dt.date] = {}
    loose: dict[AlertKey, Alert] = {}
    for (vendor_id, kpi_key, segment), points, alerts in series_with_alerts(reads, practice_id, loose):
        end = points[-1].period_end
        newest_ends[vendor_id] = max(end, newest_ends.get(vendor_id, end))
        recorder.add(changes, evaluate_kpi(session, context, vendor_id, kpi_key, segment, points, alerts))
    recorder.add(changes, evaluate_freshness(context, newest_ends, loose))
    recorder.add(changes, evaluate_pulse_overdue(session, context, loose))
    return changes


class Recorder:
    """Changed alerts waiting to be written, of one practice or of many: written RECORD_EVERY at a time and at the
    end, two INSERTs each time however many practices they come from. Each change, once written (and so with its
    alert's id), is appended to the list it was added with."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.waiting: list[tuple[list[Change], Applied]] = []

    def add(self, changes: list[Change], applied: Iterable[Applied]) -> None:
        self.waiting += [(changes, item) for item in applied]
        if len(self.waiting) >= RECORD_EVERY:
            self.write()

    def write(self) -> None:
        written = iter(record(self.session, [item for _, item in self.waiting]))
        for changes, item in self.waiting:
            if item.change is not None:
                changes.append(next(written))
        self.waiting = []


def record(session: Session, applied: list[Applied]) -> list[Change]:
    """Write new alerts in one INSERT and then their events, in the order they happened, in another. Plain Core
    inserts: the ORM's unit of work cost more than the statements (a flush per event, before, cost two round trips
    each). Changed existing alerts are flushed with them, so the session lets them go."""
    if not applied:
        return []
    session.flush()
    new = [item.alert for item in applied if item.alert.id is None]
    if new:
        insert_alerts(session.connection(), new)
    events = []
    for item in applied:
        if item.event is not None:
            item.event.alert_id = item.alert.id
            events.append(row_of(item.event))
    if events:
        session.connection().execute(EVENT_INSERT, events)
    return [replace(item.change, alert_id=item.alert.id) for item in applied if item.change is not None]


def insert_alerts(connection: Connection, alerts: list[Alert]) -> None:
    """Insert new alerts in the order given, giving each its id."""
    rows = [row_of(alert) for alert in alerts]
    if connection.dialect.name == "postgresql":
        ids = connection.execute(NEXT_ALERT_IDS, {"count": len(rows)}).scalars().all()
        for row, alert_id in zip(rows, ids, strict=True):
            row["id"] = alert_id
        connection.execute(ALERT_INSERT, rows)
    else:
        ids = connection.execute(ALERT_INSERT_RETURNING, rows).scalars().all()
    for alert, alert_id in zip(alerts, ids, strict=True):
        alert.id = alert_id


def row_of(instance: Alert | AlertEvent) -> dict[str, object]:
    """The column values set on a new (never added) ORM object; the table's defaults fill in the rest. The rows
    of one INSERT must share their keys: apply_event sets the same attributes on every new alert."""
    columns = instance.__table__.columns
    return {key: value for key, value in vars(instance).items() if key in columns}


class Parts(Generic[K, T]):
    """A stream of items grouped by a key, handed out one group at a time as keys are asked for in ascending
    order: a key with no items gets none. Each group must be used before the next key is asked for."""

    def __init__(self, items: Iterable[T], key: Callable[[T], K]) -> None:
        self._groups = groupby(items, key)
        self._current = next(self._groups, None)
        self._taken = False

    def take(self, key: K) -> Iterator[T]:
        if self._taken:
            self._current, self._taken = next(self._groups, None), False
        while self._current is not None and self._current[0] < key:
            self._current = next(self._groups, None)
        if self._current is None or self._current[0] != key:
            return iter(())
        self._taken = True
        return self._current[1]


class Reads:
    """The values and alerts of a set of practices: two queries (or two streams, for a large set) for all of them,
    not two per practice, which on a batch of small practices cost more than the rows they read. Practices must
    then be taken in the order of their ids (`in_read_order`)."""

    def __init__(self, session: Session, practice_ids: Sequence[str]) -> None:
        connection, ids = session.connection(), {"practice_ids": list(practice_ids)}
        dialect = connection.dialect.name
        values, alerts = ((VALUES_AT_ONCE, ALERTS_AT_ONCE) if len(practice_ids) == 1
                          else (BATCH_VALUES_AT_ONCE, BATCH_ALERTS_AT_ONCE))
        rows = (driver_rows(connection, ids["practice_ids"], values) if dialect == "postgresql" else
                whole_or_streamed(lambda query: connection.execute(query, ids), series_queries(dialect, values),
                                  values))
        self.rows = Parts(rows, itemgetter(0))
        self.alerts = Parts(whole_or_streamed(lambda query: session.scalars(query, ids),
                                              alert_queries(dialect, alerts), alerts), attrgetter("practice_id"))


def in_read_order(practices: Iterable[Practice]) -> list[Practice]:
    """The order `Reads` hands practices out in: by id, as Python orders str (the queries sort by code point)."""
    return sorted(practices, key=attrgetter("id"))


def series_with_alerts(reads: Reads, practice_id: str, loose: dict[AlertKey, Alert]
                       ) -> Iterator[tuple[SeriesKey, list[Point], dict[AlertKey, Alert]]]:
    """Each series of the practice, in name order, with its points (oldest first) and its alerts: two streams in
    the same order, merged as they go. Alerts of a series without values are passed over, as ever; those of no
    series (freshness, pulse overdue) are put in `loose`, all of them by the time the series are done."""
    groups = alert_groups(reads.alerts.take(practice_id), loose)
    group = next(groups, None)
    for key, points in stream_series(reads.rows.take(practice_id)):
        while group is not None and group[0] < key:
            group = next(groups, None)
        yield key, points, group[1] if group is not None and group[0] == key else {}
    for _ in groups:
        pass  # the alerts after the last series: loose ones among them


def alert_groups(alerts: Iterable[Alert], loose: dict[AlertKey, Alert]
                 ) -> Iterator[tuple[SeriesKey, dict[AlertKey, Alert]]]:
    for key, group in groupby(of_series(alerts, loose), key=lambda alert: (alert.vendor_id, alert.kpi, alert.segment)):
        yield key, {(alert.rule, *key): alert for alert in group}


def of_series(alerts: Iterable[Alert], loose: dict[AlertKey, Alert]) -> Iterator[Alert]:
    for alert in alerts:
        if alert.rule in LOOSE_RULES:
            loose[(alert.rule, alert.vendor_id, alert.kpi, alert.segment)] = alert
        else:
            yield alert


def stream_series(rows: Iterable[Any]) -> Iterator[tuple[SeriesKey, list[Point]]]:
    """Each series of a practice's rows with its points, oldest first, one series at a time. Read through the Core
    connection: plain column rows need none of the ORM's result machinery."""
    current: int | None = None
    key: SeriesKey = ("", "", "")
    points: list[Point] = []
    for _, series_id, vendor_id, kpi, segment, period, start, end, value, feed_file_id in rows:
        if series_id != current:
            if points:
                yield key, points
            current, key, points = series_id, (vendor_id, kpi, segment), []
        points.append(Point(period, start, end, value, feed_file_id))
    if points:
        yield key, points


def active_silences(session: Session, now: dt.datetime) -> list[SilenceWindow]:
    query = select(Silence).where(Silence.lifted_at.is_(None), Silence.ends_at > now,
                                  or_(Silence.starts_at <= now, Silence.starts_at.is_(None)))
    return [SilenceWindow(s.practice_id, s.vendor_id, s.kpi, s.starts_at, s.ends_at) for s in session.scalars(query)]


def evaluate_kpi(session: Session, context: Context, vendor_id: str, kpi_key: str, segment: str,
                 points: list[Point], alerts: dict[AlertKey, Alert]) -> list[Applied]:
    """Every rule of one KPI series. Periods before go-live are the practice's own performance (the baseline),
    never judged as the vendor's; stale data opens and closes nothing, but data that arrived late is news."""
    practice, config = context.practice, context.config
    vendor, kpi = practice.vendor(vendor_id) or staff_vendor(practice, vendor_id), config.kpi(kpi_key)
    if vendor is None or kpi is None:
        return []
    # Points come oldest first: those before go-live are the practice's own (the baseline), one slice apart.
    split = next((i for i, p in enumerate(points) if p.period_start >= vendor.go_live), len(points))
    history, vendor_points = points[:split], points[split:]
    if vendor_points and vendor_points[-1].period_start > context.as_of:
        vendor_points = [p for p in vendor_points if p.period_start <= context.as_of]
    if not vendor_points:
        return []
    late = None
    window = stale_after_days(practice, vendor_id)
    if is_stale(vendor_points[-1].period_end, vendor.cadence, context.as_of, window):
        late = late_arrival(session, context, vendor_points[-1], vendor.cadence, window)
        if late is None:
            return []
    defaults = config.catalog.defaults
    thresholds = context.thresholds(kpi, vendor, kpi_key)
    baseline = baseline_of(history, vendor.go_live, defaults.baseline_months,
                           baseline_min_periods(practice, vendor_id, defaults.baseline_min_periods))
    learning_days = (practice.learning_period_days if practice.learning_period_days is not None
                     else defaults.learning_period_days)
    learning = in_learning_period(vendor_points[-1].period_start, vendor.go_live, learning_days)
    firing = alerts.get((RULE, vendor_id, kpi_key, segment))
    verdicts = judge_latest(vendor_points, thresholds, baseline, vendor.go_live, learning,
                            firing is not None and firing.state == "firing", history, learning_days)
    # remits (issue 16): the vendor's figure against the payers' own remittances, same lifecycle from here on
    verdicts.update(remits_verdicts(lambda month: context.remitted(session, month), config, practice, kpi_key,
                                    segment, vendor_points[-1]))
    if escalation_in_question(thresholds, learning, vendor_points[-1],
                              (ESCALATION_RULE, vendor_id, kpi_key, segment) in alerts):
        # Months of the learning period do not count: slippage there is expected, not a pattern.
        learning_end = vendor.go_live + dt.timedelta(days=learning_days)
        record = record_of(vendor_points[-RECORD_MONTHS:], thresholds, None, learning_end)
        if record.months and record.months[-1].period == vendor_points[-1].period:
            verdicts[ESCALATION_RULE] = escalation_verdict(record, thresholds.escalate_after, vendor_points[-1])
    applied = []
    for rule, verdict in verdicts.items():
        alert = alerts.get((rule, vendor_id, kpi_key, segment))
        if alert is None and verdict.severity is None:
            continue  # nearly every verdict: no alert, no breach (said before building a Subject for it)
        item = apply_rule(context, Subject(rule, vendor, kpi_key, segment, learning, baseline=baseline, late=late),
                          alert, verdict)
        if item is not None:
            applied.append(item)
    return applied


def escalation_in_question(thresholds: Thresholds, learning: bool, latest: Point, open_alert: bool) -> bool:
    """Whether a series' record needs reading for the escalation rule: with a limit, past the learning period,
    and the newest value in breach (else its run is 0) or an escalation to settle. Most series of most practices
    are none of these, and reading the record was a tenth of their evaluation."""
    if not thresholds.escalate_after or learning or (thresholds.warn is None and thresholds.crit is None):
        return False
    return open_alert or severity_of(latest.value, thresholds)[0] is not None


def late_arrival(session: Session, context: Context, latest: Point, cadence: str,
                 window: int | None) -> LateArrival | None:
    """The newest value looks stale by its period: judge it anyway if it was stale already when it arrived and
    arrived lately (a late feed's breach must still alert). None: old news, judged while it was current."""
    received = context.received_on(session, latest.feed_file_id)
    if received is None or not arrived_late(latest.period_end, received, cadence, context.as_of, window):
        return None
    return LateArrival(received, (received - latest.period_end).days)


@dataclass(frozen=True)
class Subject:
    """What one alert is about (rule, vendor, KPI, segment) and what its message states besides the verdict."""

    rule: str
    vendor: Vendor
    kpi: str
    segment: str
    learning: bool = False
    due_on: str | None = None  # a loose alert's due day
    baseline: float | None = None
    late: LateArrival | None = None


def apply_rule(context: Context, subject: Subject, alert: Alert | None, verdict: Verdict) -> Applied | None:
    """Decide (pure: alerts.state.next_state), apply the step to the alert row, build the message's payload."""
    if alert is None and verdict.severity is None:
        return None  # what next_state() says too; most series of most practices end here, so say it early
    previous = state_of(alert)
    silenced = is_silenced(context.practice.id, subject.vendor.id, subject.kpi, context.silences, context.now)
    step = next_state(previous, verdict, context.now, silenced, context.repeat_interval,
                      loose=subject.rule in LOOSE_RULES)
    if step is None:
        return None
    if step.event is None and alert is not None:
        alert.value, alert.period, alert.updated_at = verdict.value, verdict.period, context.now
        return Applied(alert, None, None)  # `record` flushes the row with the practice's next batch
    alert, alert_event = apply_event(alert, step, verdict, subject, context)
    if step.event not in NOTIFYING_EVENTS:
        return Applied(alert, alert_event, None)
    return Applied(alert, alert_event, change_of(context, subject, verdict, step, alert, previous))


def change_of(context: Context, subject: Subject, verdict: Verdict, step: Step, alert: Alert,
              previous: AlertState | None) -> Change:
    """The payload of a told (or muted) change: the facts the message templates state, read from the alert as
    the step left it. alert_id is 0 until record() has the row (a new alert has no id)."""
    kpi, vendor, late = context.config.kpi(subject.kpi), subject.vendor, subject.late
    event = step.event or ""
    no_kpi_label = "check-in overdue" if subject.rule == PULSE_OVERDUE_RULE else "Feed"
    return Change(
        alert_id=0, event=event, severity=alert.severity,
        previous_severity=previous.severity if previous else None, practice=context.practice.id, vendor=vendor.id,
        vendor_name=vendor.name, kpi=subject.kpi, kpi_label=kpi.label if kpi else no_kpi_label,
        unit=kpi.unit if kpi else "days", better=kpi.better if kpi else "lower", segment=subject.segment,
        value=verdict.value, threshold=stated_threshold(subject.rule, event, verdict, alert),
        period=alert.period,  # a resolved loose alert keeps the period that was missing (apply_event)
        learning=subject.learning, rule=subject.rule, due_on=subject.due_on,
        baseline=verdict.baseline if verdict.baseline is not None else subject.baseline, expected=verdict.expected,
        muted=step.muted, previous_learning=previous.learning if previous else False, recover=verdict.recover,
        reported_on=late.reported_on.isoformat() if late else None,
        days_after_period=late.days_after_period if late else None,
        signal=verdict.signal, side=verdict.side, run=verdict.run, line=verdict.line,
        per=("week" if vendor.cadence == "weekly" else "month") if verdict.signal else None,
    )


def stated_threshold(rule: str, event: str, verdict: Verdict, alert: Alert) -> float | None:
    """The limit a message states. A limit rule's verdict has it (alerts.rules.limit_for), resolved or not: a
    recovery is back inside the warning line. The others, once resolved, state the one they fired with."""
    return verdict.threshold if event != "resolved" or rule in LIMIT_RULES else alert.threshold


def state_of(alert: Alert | None) -> AlertState | None:
    if alert is None:
        return None
    return AlertState(alert.state, alert.severity, alert.period, alert.last_notified_at,
                      acknowledged=alert.acknowledged_at is not None, value=alert.value, learning=alert.learning)


def apply_event(alert: Alert | None, step: Step, verdict: Verdict, subject: Subject,
                context: Context) -> tuple[Alert, AlertEvent]:
    """The step applied to the row, in memory; `record` writes the event (and the alert, if new) once the practice
    is judged. Nothing is decided here: next_state did."""
    now = context.now
    if alert is None:
        # Not added to the session: record() inserts the practice's new alerts in one statement, so every new
        # alert sets the same columns (the optional ones None, as the ORM would insert them) whatever happens next.
        alert = Alert(rule=subject.rule, practice_id=context.practice.id, vendor_id=subject.vendor.id,
                      kpi=subject.kpi, segment=subject.segment, started_at=now, threshold=None, resolved_at=None,
                      last_notified_at=None, acknowledged_at=None, acknowledged_by=None)
    if step.restarted:
        alert.started_at, alert.resolved_at = now, None
    if step.unacknowledged:
        alert.acknowledged_at, alert.acknowledged_by = None, None  # an acknowledgement covers one severity
    alert.state = step.state
    if verdict.severity is not None:
        alert.severity, alert.threshold = verdict.severity, verdict.threshold
    alert.value, alert.learning, alert.updated_at = verdict.value, subject.learning, now
    if not step.keeps_period:
        alert.period = verdict.period  # a late feed or check-in that resolves keeps the period that was missing
    if step.state == "resolved":
        alert.resolved_at = now
    if step.notify:
        alert.last_notified_at = now  # a muted change was not told, so it is due again once the silence ends
    return alert, AlertEvent(event=step.label, severity=alert.severity, value=verdict.value, period=verdict.period,
                             at=now)


def evaluate_freshness(context: Context, newest_ends: dict[str, dt.date],
                       alerts: dict[AlertKey, Alert]) -> list[Applied]:
    """One 'feed late' alert per vendor: warning once a feed is past its grace days, critical when a second
    period is overdue; resolved when the feed arrives. `newest_ends`: per vendor, the latest of its series' last
    period ends (absent for a vendor that never sent anything)."""
    applied = []
    for vendor in context.practice.vendors:
        due = next_due(vendor, newest_ends.get(vendor.id), context.as_of)
        alert = alerts.get((FRESHNESS_RULE, vendor.id, FEED_KPI, "all"))
        # A firing alert whose missing period arrived while a newer one is missing fires anew (next_state).
        subject = Subject(FRESHNESS_RULE, vendor, FEED_KPI, "all", due_on=due.due_on.isoformat())
        item = apply_rule(context, subject, alert, freshness_verdict(due))
        if item is not None:
            applied.append(item)
    return applied


def freshness_verdict(due: FeedDue) -> Verdict:
    severity = None if not due.late else ("critical" if due.periods_overdue >= 2 else "warning")
    return Verdict(severity, True, float(due.days_late), None, due.expected_period, due.due_on)


def evaluate_pulse_overdue(session: Session, context: Context, alerts: dict[AlertKey, Alert]) -> list[Applied]:
    """One 'pulse overdue' alert per practice with a pulse cadence: its own rule, never a late feed."""
    practice = context.practice
    staff = staff_vendor(practice, STAFF_VENDOR_ID)
    if staff is None:
        return []
    # Without a cadence no check-in is ever due (pulse.schedule.pending_checkins), so its surveys need no read.
    closings = [] if practice.pulse.cadence_days is None else list(
        session.connection().execute(CLOSINGS_QUERY, {"practice_id": practice.id}).scalars())
    start = None if practice.pulse.cadence_days is None else tracking_start(session, practice, context.as_of,
                                                                            record=True)
    verdict = overdue_verdict(practice, closings, context.as_of, start)
    alert = alerts.get((PULSE_OVERDUE_RULE, STAFF_VENDOR_ID, PULSE_KPI, "all"))
    # A firing alert whose check-in was met while a later one is missed fires anew (next_state).
    subject = Subject(PULSE_OVERDUE_RULE, staff, PULSE_KPI, "all", due_on=verdict.period)
    item = apply_rule(context, subject, alert, verdict)
    return [item] if item is not None else []


def pushed(change: Change) -> bool:
    """Learning-period warnings go to the digest only, and so does the end of one; everything else may be
    pushed if a route wants it."""
    if change.event == "resolved":
        return not (change.previous_learning and change.previous_severity == "warning")
    return not (change.learning and change.severity == "warning")


def routing_severity(change: Change) -> str:
    # A resolved alert is routed by the severity it had, so the channel that heard it fire hears it end.
    return change.previous_severity if change.event == "resolved" and change.previous_severity else change.severity


def facts_for(practice: Practice, changes: list[Change], severity: str) -> MessageFacts:
    return MessageFacts(kind="alert", severity=severity, practice=practice.id, region=practice.region,
                        vendors=tuple(sorted({c.vendor for c in changes})))


def enqueue_message(session: Session, config: Config, practice: Practice, changes: list[Change],
                    now: dt.datetime) -> int | None:
    # A change goes out only if some route takes it on its own: a warning nobody was told about must not ride
    # along in a critical message, nor be announced as resolved.
    to_push = [c for c in changes if pushed(c)
               and select_tags(config.routes, facts_for(practice, [c], routing_severity(c)))]
    if not to_push:
        return None
    severity = max((routing_severity(c) for c in to_push), key=lambda s: SEVERITY_ORDER.get(s, 0))
    tags = select_tags(config.routes, facts_for(practice, to_push, severity))
    payload = {"practice": practice.id, "practice_name": practice.name,
               "changes": [asdict(change) for change in to_push]}
    notification = Notification(kind="alert", practice_id=practice.id, severity=severity, tags=tags,
                                title=message_title(payload), created_at=now, payload=payload)
    session.add(notification)
    session.flush()
    return notification.id


def message_title(payload: dict[str, Any]) -> str:
    """The title of an alert message, rendered from its payload (templates/alert_title.txt): the worst change
    still open, the first of the worst if several are, else how many resolved."""
    firing = [c for c in payload["changes"] if c["event"] != "resolved"]
    worst = max(firing, key=lambda c: SEVERITY_ORDER.get(c["severity"], 0), default=None)
    return environment(TEXT).get_template(TITLE_TEMPLATE).render(worst=worst, **payload)
