"""A highly available beat on Redis: two `vendorwatch beat` processes, one schedules, the other stands by and takes
over when the first dies without a word (SIGKILL: no lock release, only the lock's expiry)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.conftest import TEST_CONFIG, channel_environment, subprocess_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.worker_process import BIN

LOCK_SECONDS = 5
ACQUIRED = "beat: Acquired lock"


class Beat:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "vendorwatch"), "beat", "--loglevel", "DEBUG"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def sent_tasks(self) -> int:
        return sum("Sending due task" in line for line in self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextmanager
def two_beats(env: dict[str, str]) -> Iterator[tuple[Beat, Beat]]:
    beats = (Beat(env), Beat(env))
    try:
        yield beats
    finally:
        for beat in beats:
            beat.kill()


def wait_for(condition: object, timeout: float, message: str, beats: tuple[Beat, Beat]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    logs = "\n\n".join("\n".join(beat.lines[-40:]) for beat in beats)
    raise AssertionError(f"timed out waiting for {message}:\n{logs}")


def test_a_second_beat_stands_by_and_takes_over_when_the_first_is_killed(
    tmp_path: Path, redis_url: str, teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer
) -> None:
    env = subprocess_env({
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_BROKER_URL": redis_url,
        "VENDORWATCH_BEAT_LOCK_SECONDS": str(LOCK_SECONDS),
        **channel_environment(teams_server, smtp_server),
    })
    with two_beats(env) as beats:
        wait_for(lambda: any(beat.said(ACQUIRED) for beat in beats), 60, "one beat to take the lock", beats)
        time.sleep(2 * LOCK_SECONDS)  # the standby keeps trying; the active beat keeps renewing
        active, standby = beats if beats[0].said(ACQUIRED) else beats[::-1]
        assert not standby.said(ACQUIRED), "two beats held the lock at once"
        assert standby.sent_tasks() == 0, "the standby scheduled tasks"
        assert active.process.poll() is None and standby.process.poll() is None
        ttl = redis.Redis.from_url(redis_url).ttl("vendorwatch:beat:lock")
        assert 0 < ttl <= LOCK_SECONDS, f"the lock should expire within {LOCK_SECONDS}s unless renewed (ttl {ttl})"

        active.kill()
        wait_for(lambda: standby.said(ACQUIRED), 4 * LOCK_SECONDS, "the standby to take over", beats)
