"""monitor.heartbeat: beat pings a dead man's switch (VENDORWATCH_HEARTBEAT_URL, e.g. a healthchecks.io check) every
few minutes, so someone outside hears when the schedule stops. A failed ping is logged, never raised: the switch
itself raises the alarm when pings stop, and a retry storm would only hide that."""

from __future__ import annotations

import logging

import requests
from celery import shared_task

from config.secrets import redact, remember
from config.settings import get_settings, heartbeat_secrets

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10


def ping(url: str) -> bool:
    """GET the check URL (healthchecks-style endpoints accept GET or POST); True when it answered 2xx."""
    remember(heartbeat_secrets(url))  # the check's path is its secret, and requests quotes it in errors
    try:
        response = requests.get(url, timeout=TIMEOUT_SECONDS, headers={"User-Agent": "vendorwatch-heartbeat"})
    except requests.RequestException as exc:
        log.warning("heartbeat ping failed: %s", redact(f"{type(exc).__name__}: {exc}"))
        return False
    if not response.ok:
        log.warning("heartbeat ping answered HTTP %s", response.status_code)
        return False
    log.info("heartbeat ping sent")
    return True


@shared_task(name="monitor.heartbeat", ignore_result=True)
def heartbeat() -> bool | None:
    url = get_settings().heartbeat_url
    return ping(url) if url else None
