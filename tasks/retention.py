"""maintenance.purge: beat's daily retention run (storage.retention); the CLI's `vendorwatch purge` calls the same."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from config.settings import get_settings
from storage.retention import purge


@shared_task(name="maintenance.purge", ignore_result=True)
def purge_old() -> dict[str, Any]:
    report = purge(get_settings()).as_dict()
    report.pop("file_names")  # the log line says how many; a task result need not carry every path
    return report
