"""What an outage costs: files land once a second while Redis (or PostgreSQL) is killed and restarted, and the run
counts what was stored once, alerted once, lost and duplicated, and how long after the service came back the last
alert went out.

Everything is real and private to the run: a `redis-server` on a free port (with or without its append-only file),
PostgreSQL (the machine's, or a private cluster made with initdb when PostgreSQL is the one that fails), the
loopback Teams (TLS) and SMTP servers of the tests, and the processes an operator runs: `vendorwatch worker`,
`vendorwatch watch` and two `vendorwatch beat`s.

    python -m bench.outage --fault redis --down 15
    python -m bench.outage --fault redis --down 300 --aof
    python -m bench.outage --fault postgres --down 60

Each file breaches the denial-rate contract for a segment of its own, so each file must raise exactly one alert,
and each alert must reach Teams exactly once. The baseline is the same run without the outage (--down 0).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from storage.db import upgrade
from tests.conftest import stack_env
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.services import drop_postgres_database, fresh_postgres_database
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import recent_months
from tests.worker_process import BIN, stop_group


@dataclass
class Outcome:
    fault: str
    down_s: float
    aof: bool
    files: int
    stored_once: int
    alerted_once: int
    lost: int
    duplicated: int
    caught_up_s: float | None
    exits: list[str]

    def row(self) -> str:
        caught = "never" if self.caught_up_s is None else f"{self.caught_up_s:.0f} s"
        persistence = " (AOF)" if self.aof else ""
        return (f"| {self.fault}{persistence} | {self.down_s:.0f} s | {self.files} | {self.stored_once} | "
                f"{self.alerted_once} | {self.lost} | {self.duplicated} | {caught} | {', '.join(self.exits) or '-'} |")


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log.open("w")
        self.process = subprocess.Popen([str(BIN / "vendorwatch"), *args], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        stop_group(self.process)  # type: ignore[arg-type]
        self.log.close()


@contextmanager
def processes(env: dict[str, str], folder: Path) -> Iterator[list[Process]]:
    started = [
        Process("worker", ["worker", "--concurrency", "2"], env, folder / "worker.log"),
        Process("watch", ["watch"], env, folder / "watch.log"),
        Process("beat-1", ["beat"], env, folder / "beat-1.log"),
        Process("beat-2", ["beat"], env, folder / "beat-2.log"),
    ]
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def breach(segment: str, month: str) -> str:
    return f"kpi,period,segment,value\ndenial_rate,{month},{segment},12.5\n"


def counts(url: str) -> tuple[Counter[str], int]:
    """Files stored per name, and notifications not yet sent."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            names = Counter(str(row[0]) for row in connection.execute(text("SELECT filename FROM feed_file")))
            unsent = connection.execute(text("SELECT count(*) FROM notification WHERE status <> 'sent'")).scalar()
    except Exception:
        return Counter(), -1
    finally:
        engine.dispose()
    return names, int(unsent or 0)


def alerted(teams: CapturingHTTPSServer, segments: list[str]) -> Counter[str]:
    seen: Counter[str] = Counter()
    for request in teams.requests:
        body = json.dumps(request.json())
        # a card names a segment as a reader would ("p007x (payer)"), so look for the payer's own name
        seen.update(segment for segment in segments if segment.partition(":")[2] in body)
    return seen


def run(fault: str, down: float, aof: bool, files: int, settle_limit: float) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="vw-outage-"))
    month = recent_months(1)[0]
    segments = [f"payer:p{n:03d}x" for n in range(files)]
    with ExitStack() as stack:
        teams = stack.enter_context(CapturingHTTPSServer())
        smtp = stack.enter_context(CapturingSMTPServer())
        redis = PrivateRedis(folder / "redis", appendonly=aof).start()
        stack.callback(redis.kill)
        cluster: PrivatePostgres | None = None
        if fault == "postgres":
            cluster = PrivatePostgres().init().start()
            stack.callback(cluster.stop)
            url = cluster.create_database("vendorwatch")
        else:
            url = fresh_postgres_database("vw_outage")
            stack.callback(drop_postgres_database, url)
        upgrade(url)
        env = stack_env(folder / "var", url, redis.url, teams, smtp)
        env["VENDORWATCH_BEAT_LOCK_SECONDS"] = "10"
        inbox = folder / "var" / "inbox" / "maple-clinic" / "claimright"
        inbox.mkdir(parents=True)
        running = stack.enter_context(processes(env, folder))
        time.sleep(8)  # worker ready, a beat holds the lock

        outage_at = files // 4
        back_at: float | None = None
        for n, segment in enumerate(segments):
            (inbox / f"f{n:03d}.csv").write_text(breach(segment, month))
            if n == outage_at and down > 0:
                (redis.kill if fault == "redis" else lambda: cluster.stop("immediate"))()  # type: ignore[union-attr]
                threading.Timer(down, lambda: (redis.start() if fault == "redis" else cluster.start())).start()  # type: ignore[union-attr]
                back_at = time.monotonic() + down
            time.sleep(1)
        while back_at is not None and time.monotonic() < back_at + 1:
            time.sleep(1)
        back = back_at or time.monotonic()

        caught_up: float | None = None
        deadline = time.monotonic() + settle_limit
        while time.monotonic() < deadline:
            names, unsent = counts(url)
            if len(names) == files and unsent == 0 and len(alerted(teams, segments)) == files:
                caught_up = time.monotonic() - back
                break
            time.sleep(2)
        time.sleep(5)
        names, _ = counts(url)
        seen = alerted(teams, segments)
        exits = [f"{p.name} exited {p.process.poll()}" for p in running if p.process.poll() is not None]
    stored = [names.get(f"f{n:03d}.csv", 0) for n in range(files)]
    sent = [seen[segment] for segment in segments]
    return Outcome(
        fault=fault, down_s=down, aof=aof, files=files,
        stored_once=stored.count(1), alerted_once=sent.count(1),
        lost=sum(1 for s, a in zip(stored, sent, strict=True) if not s or not a),
        duplicated=sum(1 for s, a in zip(stored, sent, strict=True) if s > 1 or a > 1),
        caught_up_s=caught_up, exits=exits,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", choices=["redis", "postgres"], default="redis")
    parser.add_argument("--down", type=float, default=15.0, help="seconds the service stays down")
    parser.add_argument("--aof", action="store_true", help="Redis keeps an append-only file")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--settle", type=float, default=900.0, help="seconds to wait for everything to catch up")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    baseline = run(options.fault, 0, options.aof, options.files, options.settle) if options.down > 0 else None
    outcome = run(options.fault, options.down, options.aof, options.files, options.settle)
    print("| fault | down | files landed | stored once | alerted once | lost | duplicated | caught up after | exits |")
    print("|---|---|---|---|---|---|---|---|---|")
    if baseline is not None:
        print(baseline.row())
    print(outcome.row())
    if baseline is not None and baseline.caught_up_s and outcome.caught_up_s:
        print(f"ratio (catch-up time with the outage / without): {outcome.caught_up_s / baseline.caught_up_s:.1f}")


if __name__ == "__main__":
    main()
