"""Run one practice's evaluation in this fresh interpreter and print, as JSON, how far it raised the process's peak
RSS above what imports, config and a warm connection had already cost, with the changes it made.

    python -m tests.support.evaluation_memory CONFIG_DIR DATABASE_URL PRACTICE AS_OF
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from sqlalchemy import text

from alerts.evaluate import evaluate_practices
from config import load_config
from storage.db import get_engine


def peak_kb() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: after fork and exec, ru_maxrss starts from the parent's
    (the test runner's) peak, which would hide everything below it."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def main(config_dir: str, url: str, practice: str, as_of: str) -> None:
    config = load_config(config_dir)
    with get_engine(url).connect() as connection:  # psycopg loaded and the pool's connection made beforehand
        connection.execute(text("SELECT 1"))
    before = peak_kb()
    results = evaluate_practices(config, practice_id=practice, as_of=dt.date.fromisoformat(as_of), database_url=url)
    changes = [(change.segment, change.rule, change.severity) for result in results for change in result.changes]
    print(json.dumps({"before_kb": before, "after_kb": peak_kb(), "changes": changes}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
