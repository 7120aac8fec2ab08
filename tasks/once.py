"""Once across every process of the deployment: the first caller to claim a name wins, the others learn it was taken.

Every worker process notices the same edited configuration file on its own, and only one of them may tell the
operator. On Redis the claim is a key set only if absent (SET NX), shared by all machines; on the embedded broker
(one machine) it is a file created only if absent (O_EXCL) under the data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from config.settings import Settings, get_settings

# Long enough to outlive any broken edit someone is still fixing; short enough that Redis is not a junk drawer.
CLAIM_SECONDS = 7 * 86400
KEY_PREFIX = "vendorwatch:once:"


def on_redis(settings: Settings) -> bool:
    return (settings.broker_url or "").startswith(("redis://", "rediss://"))


def claim_once(name: str) -> bool:
    """True for the first caller to claim `name`, False for everyone after."""
    settings = get_settings()
    if on_redis(settings):
        import redis

        with redis.Redis.from_url(settings.broker_url or "") as client:
            return bool(client.set(KEY_PREFIX + name, "1", nx=True, ex=CLAIM_SECONDS))
    marker = claim_file(settings, name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def release(name: str) -> None:
    """Give a claim back: what it guarded did not happen, so the next caller may try."""
    settings = get_settings()
    if on_redis(settings):
        import redis

        with redis.Redis.from_url(settings.broker_url or "") as client:
            client.delete(KEY_PREFIX + name)
        return
    claim_file(settings, name).unlink(missing_ok=True)


def claim_file(settings: Settings, name: str) -> Path:
    return settings.data_dir / "once" / name
