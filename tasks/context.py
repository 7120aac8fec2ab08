"""What every task needs: the configuration (loaded once per process) and the current time."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from config import Config, load_config
from worker.settings import get_settings


@lru_cache(maxsize=1)
def current_config() -> Config:
    return load_config(get_settings().config)


def parse_as_of(as_of: str | None) -> dt.date:
    return dt.date.fromisoformat(as_of) if as_of else dt.date.today()


def dry_run_dir() -> object:
    return get_settings().data_dir / "dry-run"
