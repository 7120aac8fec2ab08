"""The inbox: inbox/<practice>/<vendor>/<file>. Accepted files move to archive/, rejected ones to quarantine/.

A file is only read once its name no longer ends in .part/.tmp (uploaders write there and rename when done) and
its size and modification time have not changed for STABLE_SECONDS, so a half-written SFTP upload is never read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from config import Config
from feeds.ingest import IngestResult, file_away, ingest_path
from worker.settings import Settings

log = logging.getLogger(__name__)
STABLE_SECONDS = 2.0
IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload")


def list_inbox(inbox: Path) -> Iterator[Path]:
    if not inbox.is_dir():
        return
    for path in sorted(inbox.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES):
            yield path


def is_stable(path: Path, now: float | None = None) -> bool:
    stat = path.stat()
    return (now or time.time()) - stat.st_mtime >= STABLE_SECONDS


def process_inbox_file(path: Path, config: Config, settings: Settings, *, settled: bool = False) -> IngestResult | None:
    """Ingest one inbox file and file it away; None if it is gone (another worker took it) or still changing."""
    if not path.exists():
        return None
    if not settled and not is_stable(path):
        time.sleep(STABLE_SECONDS)
        if not path.exists() or not is_stable(path):
            return None
    result = ingest_path(path, config, source="inbox", inbox=settings.inbox, database_url=settings.database_url)
    try:
        file_away(result, path, settings.archive, settings.quarantine, settings.inbox)
    except FileNotFoundError:
        log.info("%s was filed away by another worker", path.name)
    log.info("ingested %s: %s (%d rows)", path.name, result.status, result.rows)
    if result.status == "rejected":
        for problem in result.problems:
            log.warning("%s rejected: %s", path.name, problem)
    return result
