"""The regional leader's roll-up: every practice sharing a `region`, worst first, in one email.

Regions and their leaders live in the `regions:` block of practices.yaml; load_config validates it with the rest
of the file and Config carries it, so a worker that refused a broken edit keeps the regions it had too.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from config import Config, Practice
from config.schema import Region
from digest.build import build_digest
from digest.model import Digest, RegionDigest
from digest.portfolio import Field, service_comparisons, shared_vendors
from digest.schedule import local_date, reporting_window
from storage.models import utcnow

TONE_ORDER = ("critical", "warning", "late", "quiet", "ok", "empty")


def regions_of(config: Config) -> dict[str, Region]:
    return config.regions


def region_practices(config: Config, key: str) -> list[Practice]:
    return [practice for practice in config.practices if practice.region == key]


def region_timezone(region: Region, practices: list[Practice]) -> str:
    return region.timezone or (practices[0].timezone if practices else "America/New_York")


def build_region_digest(
    session: Session, config: Config, key: str, week: str, now: dt.datetime | None = None
) -> RegionDigest:
    now = now or utcnow()
    practices = region_practices(config, key)
    digests = [build_digest(session, config, practice, week, now) for practice in practices]
    return roll_up(key, regions_of(config)[key], practices, week, digests, now)


def roll_up(
    key: str, region: Region, practices: list[Practice], week: str, digests: list[Digest], now: dt.datetime
) -> RegionDigest:
    """From practice digests already built (the benchmark and a regional send share them)."""
    timezone = region_timezone(region, practices)
    start, end = reporting_window(region.digest, timezone, week, now)
    ordered = sorted(digests, key=lambda d: (TONE_ORDER.index(d.headline.tone), -d.gap_dollars, d.practice_name))
    ids = {practice.id for practice in practices}
    names = {practice.id: practice.name for practice in practices}
    vendors = {vendor.id: (vendor.name, vendor.service) for practice in practices for vendor in practice.vendors}
    fields = unique_fields(digests)
    return RegionDigest(
        key=key,
        name=region.name or key.replace("-", " ").replace("_", " ").title(),
        week=week,
        since=local_date(start, timezone),
        as_of=local_date(end, timezone),
        practices=tuple(ordered),
        vendors=shared_vendors(fields, ids, names, vendors),
        services=service_comparisons(fields, ids, vendors),
    )


def unique_fields(digests: list[Digest]) -> list[Field]:
    """The figures the digests compared; practices of one vendor share them (the same object, counted once)."""
    seen: dict[int, Field] = {}
    for digest in digests:
        for found in digest.fields:
            seen.setdefault(id(found), found)
    return list(seen.values())
