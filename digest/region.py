"""The regional leader's roll-up: every practice sharing a `region`, worst first, in one email.

Regions and their leaders live in the `regions:` block of practices.yaml. load_config validates that block with
the rest of the file at start (PracticesFile.regions) but Config does not carry it, so it is read here from the
same validated file.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from config import Config, Practice
from config.schema import Region
from digest.build import build_digest
from digest.model import Digest, RegionDigest
from digest.schedule import local_date, reporting_window
from storage.models import utcnow

TONE_ORDER = ("critical", "warning", "late", "quiet", "ok", "empty")
REGIONS = TypeAdapter(dict[str, Region])


def regions_of(config: Config) -> dict[str, Region]:
    path = config.directory / "practices.yaml"
    return read_regions(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def read_regions(path: Path, _modified_ns: int) -> dict[str, Region]:
    """Cached per file version: the modification time is part of the key, so an edited file is read again.
    libyaml's loader when there is one: an MSO's practices.yaml of thousands of practices takes the pure-Python
    loader many seconds, and only the small `regions:` block is wanted (load_config has validated the file)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
    return REGIONS.validate_python(document.get("regions") or {})


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
    return RegionDigest(
        key=key,
        name=region.name or key.replace("-", " ").replace("_", " ").title(),
        week=week,
        since=local_date(start, timezone),
        as_of=local_date(end, timezone),
        practices=tuple(ordered),
    )
