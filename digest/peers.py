"""Read the figures digest/portfolio.py compares: a vendor's practice-wide values for one period at every
practice that names it in practices.yaml (vendors are matched by their id there).

Every digest of a weekly run asks for the same few (vendor, period) figures. They are read once and kept while
the data and the configuration are the same: the key holds the database, the newest feed file's id (any new or
corrected value arrives in a new feed file) and the Config object (kept alive by the cache, so its id is not
reused). Without it each of N digests would read a vendor's N practices, and the run would grow as N squared.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Config
from digest.portfolio import Field, field_of
from storage.models import FeedFile, Observation
from storage.models import Series as SeriesRow
from storage.periods import parse_period

NOT_COMPARABLE = {"USD"}
PeriodKey = tuple[str, dt.date, dt.date]  # (vendor id, period start, period end)


@dataclass
class PeerCache:
    key: tuple[object, ...] = ()
    config: Config | None = None
    served: dict[str, frozenset[str]] = field(default_factory=dict)
    fields: dict[PeriodKey, dict[str, Field]] = field(default_factory=dict)


STAMP_QUERY = select(func.max(FeedFile.id))
_cache = PeerCache()
_lock = threading.Lock()


def served_by(config: Config) -> dict[str, frozenset[str]]:
    """Vendor id -> the ids of the practices that name it."""
    served: dict[str, set[str]] = defaultdict(set)
    for practice in config.practices:
        for vendor in practice.vendors:
            served[vendor.id].add(practice.id)
    return {vendor: frozenset(ids) for vendor, ids in served.items()}


def current(session: Session, config: Config) -> PeerCache:
    connection = session.connection()
    stamp = connection.execute(STAMP_QUERY).scalar() or 0  # Core, not the ORM: asked once per digest
    key = (str(connection.engine.url), stamp, id(config))
    with _lock:
        global _cache
        if _cache.key != key:
            _cache = PeerCache(key, config, served_by(config))
        return _cache


def fields_for(session: Session, config: Config, vendor_id: str, start: dt.date, end: dt.date,
               cache: PeerCache | None = None) -> dict[str, Field]:
    """KPI -> its Field for this vendor and period, across the practices the vendor serves."""
    cache = cache or current(session, config)
    wanted = (vendor_id, start, end)
    found = cache.fields.get(wanted)
    if found is None:
        found = read_fields(session, config, vendor_id, start, end, cache.served.get(vendor_id, frozenset()))
        cache.fields[wanted] = found
    return found


def read_fields(session: Session, config: Config, vendor_id: str, start: dt.date, end: dt.date,
                practices: frozenset[str]) -> dict[str, Field]:
    series = select(SeriesRow.id).where(SeriesRow.vendor_id == vendor_id, SeriesRow.segment == "all")
    query = select(Observation.practice_id, Observation.kpi, Observation.period, Observation.value).where(
        Observation.series_id.in_(series), Observation.period_start == start, Observation.period_end == end)
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for practice_id, kpi_key, period, value in session.execute(query):
        if practice_id in practices:
            values[(kpi_key, period)][practice_id] = value
    fields = {}
    for (kpi_key, period), by_practice in values.items():
        kpi = config.kpi(kpi_key)
        # Dollar amounts (net collections) measure a practice's size, not how well the vendor works for it.
        if kpi is not None and kpi.unit not in NOT_COMPARABLE:
            fields[kpi_key] = field_of(vendor_id, kpi_key, period, kpi.better, by_practice, kpi.label, kpi.unit)
    return fields


def latest_period(session: Session, vendor_id: str, month: str | None = None) -> tuple[dt.date, dt.date] | None:
    """The period a comparison is for: the given month's (YYYY-MM), else the newest the vendor has."""
    if month is not None:
        period = parse_period(month)
        return period.start, period.end
    query = select(Observation.period_start, Observation.period_end).where(
        Observation.series_id.in_(select(SeriesRow.id).where(SeriesRow.vendor_id == vendor_id,
                                                             SeriesRow.segment == "all")))
    row = session.execute(query.order_by(Observation.period_start.desc(), Observation.period_end.desc())
                          .limit(1)).first()
    return None if row is None else (row[0], row[1])
