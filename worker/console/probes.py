"""/readyz and /metrics: the checks `vendorwatch status` runs (worker.status) and the Prometheus exposition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config import Config
from config.settings import Settings
from worker.metrics import CONTENT_TYPE, exposition
from worker.status import check_beat, check_broker, check_database, probe

METRICS_CONTENT_TYPE = CONTENT_TYPE


def readiness(settings: Settings) -> dict[str, Any]:
    """Ready when the database answers at the schema head, the broker answers and a beat holds its lock (renewed
    within the lock timeout; on the embedded broker there is no lock to see, which is not a failure)."""
    checks = [probe("database", lambda: check_database(settings)), probe("broker", lambda: check_broker(settings)),
              probe("beat", lambda: check_beat(settings))]
    return {"ready": all(check.healthy is not False for check in checks),
            "checks": {check.name: {"ok": check.healthy, "detail": check.detail} for check in checks}}


def metrics(settings: Settings, config: Callable[[], Config]) -> bytes:
    return exposition(settings, config)
