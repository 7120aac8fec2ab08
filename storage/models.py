"""Every fact vendorwatch keeps. Idempotency lives here, as unique constraints."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every database: SQLite would otherwise hand back naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; vendorwatch stores aware UTC times only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        dt.datetime: UTCDateTime(),
    }


class FeedFile(Base):
    """An accepted feed file. A file is its bytes for the practice and vendor its delivery named (inbox folder,
    --practice/--vendor; '' when the file names them itself): the same bytes twice for the same practice and
    vendor is a no-op, for another practice they are that practice's data (migration 0010)."""

    __tablename__ = "feed_file"
    __table_args__ = (UniqueConstraint("sha256", "practice_key", "vendor_key", name="uq_feed_file_identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    # Never NULL: a unique key treats NULLs as all different, which would let the same bytes in twice.
    practice_key: Mapped[str] = mapped_column(String(100), server_default="")
    vendor_key: Mapped[str] = mapped_column(String(100), server_default="")
    filename: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(20))
    practice_id: Mapped[str | None] = mapped_column(String(100))
    vendor_id: Mapped[str | None] = mapped_column(String(100))
    rows: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FeedRejection(Base):
    """A rejected feed file and every problem found in it; no observation of it is stored."""

    __tablename__ = "feed_rejection"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(20))
    # The practice and vendor the delivery named (inbox folder, --practice/--vendor), as for FeedFile.
    practice_id: Mapped[str | None] = mapped_column(String(100))
    vendor_id: Mapped[str | None] = mapped_column(String(100))
    errors: Mapped[list[Any]] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Series(Base):
    """One KPI stream: what one vendor reports for one practice, KPI and segment. Observations hang off its id, so a
    million-row feed writes a narrow row per value, not the four names again."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("practice_id", "vendor_id", "kpi", "segment", name="uq_series_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    practice_id: Mapped[str] = mapped_column(String(100))
    vendor_id: Mapped[str] = mapped_column(String(100))
    kpi: Mapped[str] = mapped_column(String(100))
    segment: Mapped[str] = mapped_column(String(200))


class ObservationValue(Base):
    """The current value of one series for one period; earlier values live in ObservationRevision. Written only by
    storage.observations and feeds.stream; read through the `observation` view (Observation below)."""

    __tablename__ = "observation_value"
    # The primary key is the idempotency key: a period is its first and last day (storage.periods gives each span
    # one label, kept once in period_label). No foreign keys (migrations 0007, 0008): checking one per
    # row cost a million-row feed seconds, and the writers set series_id and feed_file_id from rows they insert
    # in the same transaction; neither series nor feed_file rows are ever deleted.
    series_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    period_start: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    period_end: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    # The file that last set the value; when it was received is when the value last changed (the view's
    # updated_at), so no timestamp is written per row.
    feed_file_id: Mapped[int] = mapped_column()


class PeriodLabel(Base):
    """A period's label ("2026-03", "2026-W10", "2026-03-15", or "start..end"), which follows from its first and
    last day (storage.periods); kept once per period rather than on every value (migration 0009). Written with the
    values that name it, never changed, never deleted."""

    __tablename__ = "period_label"
    period_start: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    period_end: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    label: Mapped[str] = mapped_column(String(32))


# The `observation` view (migrations 0008, 0009): one row per stored value with its series' names and its period's
# label, as every reader wants it. Mapped read-only; on its own MetaData, because it is not a table for Alembic to
# create or compare. The left join to feed_file costs a read nothing unless it selects updated_at: PostgreSQL
# drops an unused left join to a primary key. The label's join is a left join too, so a value whose label row
# were missing would still be read (as "start..end"), never silently left out.
VIEWS = MetaData()
OBSERVATION_VIEW_SQL = (
    "CREATE VIEW observation AS SELECT o.series_id, s.practice_id, s.vendor_id, s.kpi,"
    " coalesce(p.label, CAST(o.period_start AS VARCHAR) || '..' || CAST(o.period_end AS VARCHAR)) AS period,"
    " o.period_start, o.period_end, s.segment, o.value, o.feed_file_id, f.received_at AS updated_at"
    " FROM observation_value o JOIN series s ON s.id = o.series_id"
    " LEFT JOIN period_label p ON p.period_start = o.period_start AND p.period_end = o.period_end"
    " LEFT JOIN feed_file f ON f.id = o.feed_file_id"
)


class Observation(Base):
    """A stored value as readers see it: practice, vendor, KPI, period, segment and value (the `observation` view)."""

    __table__ = Table(
        "observation", VIEWS,
        Column("series_id", Integer, primary_key=True),
        Column("practice_id", String(100)),
        Column("vendor_id", String(100)),
        Column("kpi", String(100)),
        Column("period", String(32)),
        Column("period_start", Date, primary_key=True),
        Column("period_end", Date, primary_key=True),
        Column("segment", String(200)),
        Column("value", Float),
        Column("feed_file_id", Integer),
        Column("updated_at", UTCDateTime()),
    )
    series_id: Mapped[int]
    practice_id: Mapped[str]
    vendor_id: Mapped[str]
    kpi: Mapped[str]
    period: Mapped[str]
    period_start: Mapped[dt.date]
    period_end: Mapped[dt.date]
    segment: Mapped[str]
    value: Mapped[float]
    feed_file_id: Mapped[int]
    updated_at: Mapped[dt.datetime]


class ObservationRevision(Base):
    """A corrected re-delivery: which file changed which value, when, from what to what."""

    __tablename__ = "observation_revision"
    __table_args__ = (Index("ix_observation_revision_key", "series_id", "period_start", "period_end"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column()
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    old_value: Mapped[float] = mapped_column(Float)
    new_value: Mapped[float] = mapped_column(Float)
    old_feed_file_id: Mapped[int] = mapped_column(ForeignKey("feed_file.id"))
    new_feed_file_id: Mapped[int] = mapped_column(ForeignKey("feed_file.id"))
    revised_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PulseSurvey(Base):
    """One staff pulse survey: aggregate scores only; no respondent identity is ever stored.

    A survey is known by its practice and the day of its first response: a later export of the same survey (more
    responses since) replaces this row's figures, and its KPI observations are revised."""

    __tablename__ = "pulse_survey"
    __table_args__ = (
        # The same export for two practices is each one's survey (migration 0010), as for FeedFile.
        UniqueConstraint("practice_id", "sha256", name="uq_pulse_survey_practice_sha256"),
        UniqueConstraint("practice_id", "opened_on", name="uq_pulse_survey_opened"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    practice_id: Mapped[str] = mapped_column(String(100), index=True)
    tool: Mapped[str] = mapped_column(String(30))
    opened_on: Mapped[dt.date] = mapped_column(Date)
    closed_on: Mapped[dt.date] = mapped_column(Date)
    responses: Mapped[int] = mapped_column(Integer)
    staff_count: Mapped[int | None] = mapped_column(Integer)
    scores: Mapped[dict[str, Any]] = mapped_column()
    # Only the groups that may be shown: {name: {"responses": n, "scores": {...}}}; None when the export had no
    # grouping question. Smaller groups are never stored.
    groups: Mapped[dict[str, Any] | None] = mapped_column()
    feed_file_id: Mapped[int | None] = mapped_column(ForeignKey("feed_file.id"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PulseReminder(Base):
    """A staff check-in reminder, claimed once per (practice, check-in) before its message goes to the outbox."""

    __tablename__ = "pulse_reminder"
    __table_args__ = (UniqueConstraint("practice_id", "checkin", name="uq_pulse_reminder_checkin"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    practice_id: Mapped[str] = mapped_column(String(100))
    checkin: Mapped[str] = mapped_column(String(200))
    due_on: Mapped[dt.date] = mapped_column(Date)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PulseTracking(Base):
    """The day a practice's pulse schedule started to count (the first evaluation that saw `pulse.cadence_days`):
    no check-in falls due before it (pulse.schedule)."""

    __tablename__ = "pulse_tracking"
    practice_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_on: Mapped[dt.date] = mapped_column(Date)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """One alert, identified by (rule, practice, vendor, kpi, segment); its state moves, the row stays."""

    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("rule", "practice_id", "vendor_id", "kpi", "segment", name="uq_alert_identity"),
        # Evaluation and the digest read alerts practice by practice; the identity key leads with rule.
        Index("ix_alert_practice", "practice_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(30))
    practice_id: Mapped[str] = mapped_column(String(100))
    vendor_id: Mapped[str] = mapped_column(String(100))
    kpi: Mapped[str] = mapped_column(String(100))
    segment: Mapped[str] = mapped_column(String(200), default="all")
    state: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(20))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    period: Mapped[str] = mapped_column(String(32))
    learning: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    last_notified_at: Mapped[dt.datetime | None] = mapped_column()
    # An acknowledgement stops repeats until the severity changes (then it is cleared).
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))


class AlertEvent(Base):
    """Every state change of an alert, in order: the audit trail."""

    __tablename__ = "alert_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    event: Mapped[str] = mapped_column(String(30))
    severity: Mapped[str] = mapped_column(String(20))
    value: Mapped[float] = mapped_column(Float)
    period: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """The outbox: a message to send, written with the state change that caused it, claimed before sending."""

    __tablename__ = "notification"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    practice_id: Mapped[str | None] = mapped_column(String(100), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    tags: Mapped[list[Any]] = mapped_column()
    title: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    # Passes over the targets so far, across task chains: bounded by alerts.delivery.MAX_ROUNDS.
    rounds: Mapped[int] = mapped_column(default=0, server_default="0")
    # The task holding the claim; its own retry takes the claim back without waiting for it to go stale.
    claim_token: Mapped[str | None] = mapped_column(String(64))


class EvaluationRequest(Base):
    """A practice whose data changed and whose evaluation is still owed (see tasks.ingest.request_evaluation)."""

    __tablename__ = "evaluation_request"
    practice_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeliveryAttempt(Base):
    """One try to send one notification to one target."""

    __tablename__ = "delivery_attempt"
    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), index=True)
    channel_key: Mapped[str] = mapped_column(String(64))
    channel_label: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DigestRun(Base):
    """A weekly digest claimed for (practice, week) before it is sent: exactly once per week."""

    __tablename__ = "digest_run"
    __table_args__ = (UniqueConstraint("practice_id", "week", name="uq_digest_practice_week"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    practice_id: Mapped[str] = mapped_column(String(100))
    week: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default="claimed")
    subject: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()


class Rerun(Base):
    """An operator's manual rerun: who, when, what."""

    __tablename__ = "rerun"
    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(50))
    arguments: Mapped[dict[str, Any]] = mapped_column()
    requested_by: Mapped[str] = mapped_column(String(100))
    task_id: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FeedPull(Base):
    """One HTTPS pull of a vendor's feed: fetched (a new inbox file), unchanged (same SHA-256) or failed.

    Never holds the auth token: `error` texts are scrubbed of it before they get here."""

    __tablename__ = "feed_pull"
    __table_args__ = (Index("ix_feed_pull_vendor", "practice_id", "vendor_id", "attempted_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    practice_id: Mapped[str] = mapped_column(String(100))
    vendor_id: Mapped[str] = mapped_column(String(100))
    attempted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20))
    http_status: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(String(500))


class Silence(Base):
    """Mute notifications for alerts matching (practice, vendor, kpi) until a time; None matches any.

    Alerts under a silence still change state and are recorded; only the push is withheld."""

    __tablename__ = "silence"
    id: Mapped[int] = mapped_column(primary_key=True)
    practice_id: Mapped[str | None] = mapped_column(String(100))
    vendor_id: Mapped[str | None] = mapped_column(String(100))
    kpi: Mapped[str | None] = mapped_column(String(100))
    starts_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[dt.datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[dt.datetime | None] = mapped_column()
    lifted_by: Mapped[str | None] = mapped_column(String(100))


# --- remits (issue 16): aggregates of the payers' 835 remittances; no claim, patient or amount of one claim -------
class RemitFile(Base):
    """An accepted 835, by its bytes and the practice it was delivered for: the same bytes twice are a no-op. The
    file itself is not kept."""

    __tablename__ = "remit_file"
    __table_args__ = (UniqueConstraint("sha256", "practice_id", name="uq_remit_file_identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    practice_id: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(20))
    claims: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RemitClaim(Base):
    """A claim seen in a remittance, only as HMAC(secret, payer id | CLP01): a later sight is a resubmission."""

    __tablename__ = "remit_claim"
    practice_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    # Where its latest counted sight was counted, so a reversal in a later file can take it back (migration 0014).
    # month None: not counted now (reversed, an exact duplicate, only a reversal seen, or stored before 0014).
    month: Mapped[dt.date | None] = mapped_column(Date)
    days: Mapped[int | None] = mapped_column(Integer)  # service to payment, as in remit_month.days
    denied: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    carc: Mapped[str | None] = mapped_column(String(8))  # a denial's main reason, as in remit_month.denial_carcs
    first_pass: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class RemitMonth(Base):
    """What the remittances of one payer say for one practice and month of payment (BPR16). Every column adds up
    over files; `days` is a histogram (days from service to payment -> claims), so medians combine too."""

    __tablename__ = "remit_month"
    practice_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    payer_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    claims: Mapped[int] = mapped_column(Integer)
    denied: Mapped[int] = mapped_column(Integer)
    first_pass_claims: Mapped[int] = mapped_column(Integer)
    first_pass_denied: Mapped[int] = mapped_column(Integer)
    billed: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    first_pass_billed: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    first_pass_denied_billed: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    payments: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    provider_adjustments: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    patient_responsibility: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    contractual: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    days: Mapped[dict[str, Any]] = mapped_column()
    denial_categories: Mapped[dict[str, Any]] = mapped_column()
    denial_carcs: Mapped[dict[str, Any]] = mapped_column()
    files: Mapped[int] = mapped_column(Integer)
    # Claims counted here that a reversal in a later file took back (already out of the figures above), and
    # reversals of this month's files whose original claim is stored nowhere (nothing to take back).
    reversed_later: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unmatched_reversals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
# --- end remits ---------------------------------------------------------------------------------------------------
