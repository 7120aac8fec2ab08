"""From file to alert: how long after a feed file is renamed into the inbox its Teams POST arrives, against a bare
Celery round trip in the same run (issue 18, item 5).

Everything is real and private to the run, as in bench/outage.py: a `redis-server` on a free port, a fresh
PostgreSQL database, the tests' loopback Teams (TLS) and SMTP servers, one `vendorwatch worker` and one
`vendorwatch watch --settle S`. Each file is written as `.part`, then renamed to its final name (as an SFTP client
does), and breaches the denial-rate contract for a payer segment of its own, so each file raises one critical
alert and one Teams POST. Files go one at a time: the next is renamed once the last one's POST arrived (and a
short pause), so each time is a file's own, not a queue's.

    python -m bench.latency                  # 20 files, settle 0.2 s
    python -m bench.latency --files 40 --settle 1.0

The bare round trip is Celery's remote-control ping of the worker (`app.control.ping`, first reply), median of 20.
Last line: `RESULT files=N p50_ms=P p95_ms=Q celery_rtt_ms=C settle_s=S`. Goal: p95 at most the settle window
plus 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.outage import Process, breach
from storage.db import upgrade
from tests.conftest import stack_env
from tests.support.private_services import PrivateRedis
from tests.support.services import drop_postgres_database, fresh_postgres_database
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import recent_months

GOAL_MARGIN_S = 0.05
PAUSE_S = 0.3  # between one file's POST and the next file's rename


def celery_rtt_ms(env: dict[str, str], rounds: int = 20) -> float:
    """Median of `rounds` remote-control pings of the worker, first reply, in ms."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("VENDORWATCH_")})
    from config.settings import get_settings
    from worker.app import create_app

    get_settings.cache_clear()
    app = create_app(get_settings())
    times = []
    for _ in range(rounds):
        started = time.monotonic()
        replies = app.control.ping(timeout=2.0, limit=1)
        if not replies:
            raise RuntimeError("the worker did not answer a ping")
        times.append(1000 * (time.monotonic() - started))
    return statistics.median(times)


def wait_for_worker(env: dict[str, str], limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            celery_rtt_ms(env, rounds=1)
            return
        except RuntimeError:
            time.sleep(0.5)
    raise RuntimeError("the worker did not start")


def run(files: int, settle: float) -> tuple[list[float], float]:
    folder = Path(tempfile.mkdtemp(prefix="vw-latency-"))
    month = recent_months(1)[0]
    with ExitStack() as stack:
        teams = stack.enter_context(CapturingHTTPSServer())
        smtp = stack.enter_context(CapturingSMTPServer())
        redis = PrivateRedis(folder / "redis").start()
        stack.callback(redis.kill)
        url = fresh_postgres_database("vw_latency")
        stack.callback(drop_postgres_database, url)
        upgrade(url)
        env = stack_env(folder / "var", url, redis.url, teams, smtp)
        inbox = folder / "var" / "inbox" / "maple-clinic" / "claimright"
        inbox.mkdir(parents=True)
        for process in (Process("worker", ["worker", "--concurrency", "1"], env, folder / "worker.log"),
                        Process("watch", ["watch", "--settle", str(settle)], env, folder / "watch.log")):
            stack.callback(process.stop)
        wait_for_worker(env)
        time.sleep(2)  # the watcher's sweep and its log line
        rtt = celery_rtt_ms(env)
        latencies = []
        for number in range(files):
            part = inbox / f"f{number:03d}.csv.part"
            part.write_text(breach(f"payer:p{number:03d}x", month))
            renamed = time.monotonic()
            part.rename(inbox / f"f{number:03d}.csv")
            teams.wait_for(number + 1, timeout=60)
            latencies.append(time.monotonic() - renamed)
            time.sleep(PAUSE_S)
    return latencies, rtt


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--settle", type=float, default=0.2, help="the watcher's settle window, seconds")
    options = parser.parse_args()
    latencies, rtt = run(options.files, options.settle)
    p50, p95 = 1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.95)
    goal = 1000 * (options.settle + GOAL_MARGIN_S)
    print(f"{options.files} files, settle {options.settle:g} s: rename to Teams POST median {p50:.0f} ms, p95 "
          f"{p95:.0f} ms (slowest {1000 * max(latencies):.0f} ms); Celery ping round trip {rtt:.1f} ms")
    print(f"goal: p95 <= settle + 50 ms = {goal:.0f} ms ({'met' if p95 <= goal else 'NOT met'})")
    print(f"RESULT files={options.files} p50_ms={p50:.0f} p95_ms={p95:.0f} celery_rtt_ms={rtt:.1f} "
          f"settle_s={options.settle:g}")


if __name__ == "__main__":
    main()
