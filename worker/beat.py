"""A beat that rides out Redis outages.

celery-redbeat keeps the schedule and a lock in Redis. As shipped it takes the lock once, blocking, when beat
starts, and renews it on every tick; any Redis error on the way ends the beat process (the active one on the lock
renewal, a standby with `AttributeError` because its lock was never set), and a Redis that restarted empty has
lost the schedule entries, which redbeat writes only at start-up. Then nothing schedules again: no inbox scan, no
retry of undelivered alerts, no digest.

This scheduler does the lock on every tick instead:

* holding the lock: renew it and run the due entries, as redbeat does;
* not holding it (a standby, or the lock expired or vanished during an outage): try to take it without waiting,
  and on success write the static entries again (idempotent: each entry keeps its last run), so a wiped Redis gets
  its schedule back;
* Redis unreachable: log it once, keep the process up and try again every few seconds. If
  VENDORWATCH_BEAT_GIVE_UP_SECONDS is set and the outage lasts longer, end the process with a non-zero exit code
  so that a supervisor sees a failure.

Two beats therefore both survive an outage of any length, and the first to reach Redis afterwards schedules again
within one tick; the other stays standby until the lock's timeout passes without renewal.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.signals import beat_init
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, acquire_distributed_beat_lock, get_redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)

# Errors that mean "Redis is not there right now", as opposed to a bug.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)
# How often a beat that cannot reach Redis tries again.
RETRY_SECONDS = 5.0

# The lock is taken on the first tick, without waiting, instead of once and blocking at start-up.
beat_init.disconnect(acquire_distributed_beat_lock)


class BeatGaveUp(RuntimeError):
    """Redis stayed unreachable longer than the beat was told to wait; the process must end non-zero."""


class ResilientRedBeatScheduler(RedBeatScheduler):
    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.down_since: float | None = None
        self.entries_installed = False
        self.lock: Any = None
        super().__init__(app, **kwargs)

    def setup_schedule(self) -> None:
        """Deferred to the first tick that holds the lock: at start-up Redis may be down, and a standby has no
        business writing the schedule."""

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if not self.hold_lock():
                return float(self.max_interval)
            if not self.entries_installed:
                super().setup_schedule()
                self.entries_installed = True
            interval = float(super().tick(min=min, **kwargs))
        except REDIS_DOWN as error:
            return self.redis_down(error)
        except LockError:
            log.warning("beat: lost the lock between checking and renewing it; standing by")
            return float(self.max_interval)
        self.redis_back()
        return interval

    def hold_lock(self) -> bool:
        """True when this beat holds the lock now (renewed for another lock timeout)."""
        if self.lock is None:
            self.lock = self.new_lock()
        if self.lock.owned():
            return True
        if self.lock.acquire(blocking=False):
            log.info("beat: Acquired lock")
            self.entries_installed = False  # Redis may have restarted empty: write the schedule again
            return True
        self.redis_back()
        log.debug("beat: standing by; another beat holds the lock")
        return False

    def new_lock(self) -> Any:
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=1)
        # redbeat's extend sets a new expiry rather than adding to the old one
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def redis_down(self, error: BaseException) -> float:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("beat: Redis unreachable (%s); retrying every %.0f s", type(error).__name__, RETRY_SECONDS)
        give_up = self.give_up_seconds()
        if give_up and now - self.down_since > give_up:
            raise BeatGaveUp(f"Redis unreachable for more than {give_up} s") from error
        return RETRY_SECONDS

    def redis_back(self) -> None:
        if self.down_since is not None:
            log.warning("beat: Redis reachable again after %.0f s", time.monotonic() - self.down_since)
            self.down_since = None

    def give_up_seconds(self) -> int:
        from config.settings import get_settings

        return get_settings().beat_give_up_seconds

    def close(self) -> None:
        try:
            if self.lock is not None and self.lock.owned():
                log.info("beat: Releasing lock")
                self.lock.release()
        except (*REDIS_DOWN, LockError):
            pass  # the lock expires by itself
        self.lock = None
        super(RedBeatScheduler, self).close()
