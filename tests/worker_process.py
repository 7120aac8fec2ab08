"""A real `vendorwatch worker` in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def vendorwatch(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BIN / "vendorwatch"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"vendorwatch {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass
class Worker:
    """A `vendorwatch worker` subprocess leading its own process group, and its log lines so far."""

    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def pool_children(self) -> list[int]:
        """Live processes whose parent is the worker's main process: its prefork pool."""
        return [pid for pid, ppid, _ in live_processes() if ppid == self.process.pid]

    def group(self) -> list[int]:
        """Live processes of the worker's process group (it leads its own session)."""
        return [pid for pid, _, group in live_processes() if group == self.process.pid]

    def tail(self) -> str:
        return "\n".join(list(self.log)[-60:])


def live_processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that is not a zombie, read from /proc."""
    processes = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if state not in ("Z", "X"):
            processes.append((int(entry), int(ppid), int(group)))
    return processes


@contextmanager
def started_worker(env: dict[str, str], ready_timeout: float = 60, loglevel: str = "INFO") -> Iterator[Worker]:
    """Start `vendorwatch worker`, wait for Celery's 'ready', yield it; on exit stop its whole process group,
    unless the test has killed it already."""
    process = subprocess.Popen(
        [str(BIN / "vendorwatch"), "worker", "--concurrency", "2", "--loglevel", loglevel],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    worker = Worker(process)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            worker.log.append(line.rstrip())
            if " ready." in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the worker did not start:\n" + worker.tail())
        yield worker
    finally:
        stop_group(process)


@contextmanager
def running_worker(env: dict[str, str], ready_timeout: float = 60) -> Iterator[list[str]]:
    """A started worker's log lines, for tests that only read what it says."""
    with started_worker(env, ready_timeout) as worker:
        yield worker.log


def stop_group(process: subprocess.Popen[str]) -> None:
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 30.0)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
