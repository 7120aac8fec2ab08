"""One long CSV through every path that may store it: streamed, row by row on PostgreSQL and row by row on SQLite
(the demo's database). Shared by the tests that hold a rule to every path (tests/test_rule_list.py,
tests/test_ambiguous_input.py, tests/test_phi_values.py)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select

from config import Config
from intake.ingest import ingest_path
from storage.db import engine_for, session_scope, upgrade
from storage.models import Observation
from storage.uploads import IngestResult
from tests.support.same_outcome import database

TODAY = dt.date(2026, 11, 23)
PRACTICE, VENDOR = "oakridge-fm", "acme-billing"
HEADER = "practice,vendor,kpi,period,value,segment"
# Where each path is forced: the streamed path, row by row on each database.
FAST = {"streamed": ("streamed",)}
SLOW = ("python-postgresql", "python-sqlite")

_names = itertools.count()


def months() -> Iterator[str]:
    """Fresh months from 2010-01 on, one per call of next(): each file its own period, so no value is a revision."""
    return (f"{2010 + n // 12}-{n % 12 + 1:02d}" for n in itertools.count())


def path_databases(prefix: str, folder: Path) -> Iterator[dict[str, str]]:
    """A database per path, so each sees only its own files and every clean twin is a first delivery there."""
    postgres = [database(f"{prefix}_{name}") for name in ("stream", "rows")]
    urls = dict(zip(("streamed", "python-postgresql"), (next(gen) for gen in postgres), strict=True))
    sqlite = f"sqlite:///{folder / 'demo.sqlite'}"
    upgrade(sqlite)
    yield {**urls, "python-sqlite": sqlite}
    engine_for(sqlite).dispose()
    for gen in postgres:
        next(gen, None)


def ingest(data: bytes, config: Config, url: str, directory: Path, fast: tuple[str, ...], suffix: str = ".csv",
           practice: str | None = None, vendor: str | None = None) -> IngestResult:
    path = directory / f"feed-{next(_names)}{suffix}"
    path.write_bytes(data)
    return ingest_path(path, config, today=TODAY, database_url=url, fast=fast, practice=practice, vendor=vendor)


def observations(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Observation)) or 0)
