"""Two beats ride out a Redis outage longer than a tick, and one of them schedules again soon after Redis returns,
even when Redis comes back empty (no persistence: the lock and redbeat's schedule entries are gone). A beat told to
give up exits non-zero, so a supervisor sees it.

Real parts: two `vendorwatch beat` processes against a private `redis-server` that the test kills with SIGKILL and
starts again on the same port."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import TEST_CONFIG, channel_environment, subprocess_env
from tests.support.private_services import private_redis
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_beat import ACQUIRED, Beat, two_beats, wait_for

LOCK_SECONDS = 6
# Three lock timeouts: longer than a tick (1 s), than the lock and than three of a beat's retries (5 s apart).
# The beats before worker/beat.py both died within the first tick of the outage.
OUTAGE_SECONDS = 3 * LOCK_SECONDS
SCHEDULE_KEY = "vendorwatch:beat::schedule"


def beat_env(tmp_path: Path, broker_url: str, teams: CapturingHTTPSServer, smtp: CapturingSMTPServer,
             **extra: str) -> dict[str, str]:
    return subprocess_env({
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_BROKER_URL": broker_url,
        "VENDORWATCH_BEAT_LOCK_SECONDS": str(LOCK_SECONDS),
        **channel_environment(teams, smtp),
        **extra,
    })


def test_two_beats_ride_out_a_redis_outage_and_one_schedules_again(
    tmp_path: Path, teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    with private_redis(tmp_path / "redis") as server:
        env = beat_env(tmp_path, server.url, teams_server, smtp_server)
        with two_beats(env) as beats:
            wait_for(lambda: any(beat.said(ACQUIRED) for beat in beats), 60, "one beat to take the lock", beats)
            wait_for(lambda: server.client().exists(SCHEDULE_KEY), 30, "the schedule in Redis", beats)

            server.kill()
            time.sleep(OUTAGE_SECONDS)
            for beat in beats:
                assert beat.process.poll() is None, "a beat exited during the outage:\n" + "\n".join(beat.lines[-30:])

            sent_before = [beat.sent_tasks() for beat in beats]
            server.start()  # empty: no lock, no schedule entries
            restarted = time.monotonic()
            wait_for(lambda: server.client().exists("vendorwatch:beat:lock"), LOCK_SECONDS + 10,
                     "a beat to take the lock again", beats)
            took_lock = time.monotonic() - restarted
            assert took_lock <= LOCK_SECONDS + 6, f"the lock came back after {took_lock:.0f}s"
            wait_for(lambda: server.client().exists(SCHEDULE_KEY), 10, "the schedule written again", beats)
            # scan-inbox runs every minute: within a minute and a bit, some beat sends it again
            wait_for(lambda: sum(beat.sent_tasks() for beat in beats) > sum(sent_before), 75,
                     "a task scheduled after the outage", beats)
            assert server.client().llen("vendorwatch") >= 1, "the scheduled task never reached the queue"
            for beat in beats:
                assert beat.process.poll() is None


def test_a_beat_told_to_give_up_exits_non_zero(
    tmp_path: Path, teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    with private_redis(tmp_path / "redis") as server:
        env = beat_env(tmp_path, server.url, teams_server, smtp_server, VENDORWATCH_BEAT_GIVE_UP_SECONDS="8")
        beat = Beat(env)
        try:
            wait_for(lambda: beat.said(ACQUIRED), 60, "the beat to take the lock", (beat, beat))
            server.kill()
            code = beat.process.wait(timeout=60)
            assert code != 0, "a beat that gave up on Redis exited 0:\n" + "\n".join(beat.lines[-30:])
            assert beat.said("Redis unreachable")
        finally:
            beat.kill()
