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

Throughput (`--burst N`): N such files renamed into the inbox at once, each run on a fresh stack, timed from the
first rename until every file is stored and its alert raised and sent (an evaluation sends all of a
practice's new alerts in one message), for each worker layout in `--workers`, alternating, `--rounds` times:

    python -m bench.latency --burst 200                      # layouts 1, 2 and 1x2, two rounds
    python -m bench.latency --burst 200 --workers 1,2 --rounds 3

A layout `P` is P `vendorwatch worker --concurrency 1` processes, each `-n wI@%h`; `PxC` is P processes of
concurrency C. Each run prints where the time went (bench.probe: CPU per process group, time a worker process was
runnable but waiting for a core, what the run's PostgreSQL backends waited on, task durations from the worker
logs). Last lines, one per layout, medians over the rounds:
`RESULT files=N workers=P concurrency=C files_per_s=F ratio_vs_one=R` (R against layout 1's median).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.outage import Process, breach
from bench.probe import SHORT_LIVED, Probe, Report
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


def wait_for_worker(env: dict[str, str], limit_s: float = 60.0, nodes: int = 1) -> None:
    """Until `nodes` workers answer a ping."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("VENDORWATCH_")})
    from config.settings import get_settings
    from worker.app import create_app

    get_settings.cache_clear()
    app = create_app(get_settings())
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= nodes:
            return
        time.sleep(0.5)
    raise RuntimeError(f"fewer than {nodes} workers started")


def services(stack: ExitStack, folder: Path, database_prefix: str
             ) -> tuple[CapturingHTTPSServer, PrivateRedis, str, dict[str, str], Path]:
    """A fresh stack for one run, torn down by `stack`: loopback Teams and SMTP, a private Redis, a migrated
    database; (Teams, Redis, database URL, the processes' environment, maple-clinic's claimright inbox)."""
    teams = stack.enter_context(CapturingHTTPSServer())
    smtp = stack.enter_context(CapturingSMTPServer())
    redis = PrivateRedis(folder / "redis").start()
    stack.callback(redis.kill)
    url = fresh_postgres_database(database_prefix)
    stack.callback(drop_postgres_database, url)
    upgrade(url)
    env = stack_env(folder / "var", url, redis.url, teams, smtp)
    inbox = folder / "var" / "inbox" / "maple-clinic" / "claimright"
    inbox.mkdir(parents=True)
    return teams, redis, url, env, inbox


def run(files: int, settle: float) -> tuple[list[float], float]:
    folder = Path(tempfile.mkdtemp(prefix="vw-latency-"))
    month = recent_months(1)[0]
    with ExitStack() as stack:
        teams, _, _, env, inbox = services(stack, folder, "vw_latency")
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


TASK_LINE = re.compile(r"Task (\S+)\[[^\]]+\] succeeded in ([0-9.]+)s: (\S+)")


@dataclass
class Burst:
    layout: str
    files: int
    seconds: float  # first rename to the last alert sent
    stored_s: float  # first rename to the last file stored
    posts: int
    tasks: dict[str, list[float]]  # task name -> durations (s) from the worker logs
    busy_s: list[float]  # per worker process: its children's task time, summed
    concurrency: int
    report: Report

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def parse_layout(layout: str) -> tuple[int, int]:
    """"2": two processes of concurrency 1; "1x2": one process of concurrency 2."""
    processes, _, concurrency = layout.partition("x")
    return int(processes), int(concurrency or 1)


def burst(layout: str, files: int, settle: float) -> Burst:
    """`files` files renamed into the inbox at once, drained by the workers of `layout`, on a fresh stack."""
    processes, concurrency = parse_layout(layout)
    folder = Path(tempfile.mkdtemp(prefix="vw-burst-"))
    month = recent_months(1)[0]
    with ExitStack() as stack:
        teams, redis, url, env, inbox = services(stack, folder, "vw_burst")
        workers = [Process(f"w{n}", ["worker", "--concurrency", str(concurrency), "-n", f"w{n}@%h"], env,
                           folder / f"worker-{n}.log") for n in range(1, processes + 1)]
        watch = Process("watch", ["watch", "--settle", str(settle)], env, folder / "watch.log")
        for process in (*workers, watch):
            stack.callback(process.stop)
        wait_for_worker(env, nodes=processes)
        time.sleep(2)  # the watcher's sweep and its log line
        parts = []
        for number in range(files):
            part = inbox / f"f{number:03d}.csv.part"
            part.write_text(breach(f"payer:p{number:03d}x", month))
            parts.append(part)
        probe = Probe(url, {"workers": [w.process.pid for w in workers], "watcher": [watch.process.pid]},
                      redis.process.pid)  # type: ignore[union-attr]
        probe.start()
        started = time.monotonic()
        for part in parts:
            part.rename(part.with_suffix(""))
        stored_s, seconds = wait_drained(url, files, started)
        report = probe.stop()
        time.sleep(1)  # a POST too many would show here
        posts = len(teams.requests)
    tasks: dict[str, list[float]] = defaultdict(list)
    busy = []
    for n in range(1, processes + 1):
        matches = list(TASK_LINE.finditer((folder / f"worker-{n}.log").read_text()))
        for match in matches:
            coalesced = match[1] == "alerts.evaluate" and match[3] == "[]"  # nothing owed: returned at once
            tasks[f"{match[1]} (nothing owed)" if coalesced else match[1]].append(float(match[2]))
        busy.append(sum(float(match[2]) for match in matches))
    return Burst(layout, files, seconds, stored_s, posts, dict(tasks), busy, concurrency, report)


DRAINED = """SELECT (SELECT count(*) FROM feed_file),
                      (SELECT count(*) FROM alert WHERE state = 'firing'),
                      (SELECT count(*) FROM evaluation_request),
                      (SELECT count(*) FROM notification WHERE status <> 'sent')"""


def wait_drained(url: str, files: int, started: float, limit_s: float = 600) -> tuple[float, float]:
    """Seconds from `started` until `files` files are stored, and until their alerts are all raised and sent with
    no evaluation owed (polled every 50 ms). An evaluation puts all of a practice's new alerts in one message."""
    import psycopg

    stored_s = None
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        while time.monotonic() < started + limit_s:
            stored, alerts, owed, unsent = connection.execute(DRAINED).fetchone() or (0, 0, 0, 0)
            if stored >= files and stored_s is None:
                stored_s = time.monotonic() - started
            if stored_s is not None and alerts >= files and owed == 0 and unsent == 0:
                return stored_s, time.monotonic() - started
            time.sleep(0.05)
    raise RuntimeError(f"{files} files were not stored and alerted on within {limit_s:.0f} s")


OTHERS = ("other processes", "postgres (other)", SHORT_LIVED)


def own_cpu_s(report: Report) -> float:
    """CPU seconds of the run's own processes: workers, watcher, Redis, its PostgreSQL backends, the loopback
    servers."""
    return sum(cpu for group, cpu in report.cpu_s.items() if group not in OTHERS)


def row(round_: int, run: Burst) -> str:
    """One run as a table row: rate, load, who had the cores, and how the worker children spent the time."""
    report = run.report
    children = [(cpu, waited) for label, cpu, _, waited in report.worker_procs if "child" in label]
    child_time = report.wall_s * len(children)
    on_cpu, waiting = sum(c for c, _ in children) / child_time, sum(w for _, w in children) / child_time
    idle = 1 - sum(run.busy_s) / child_time
    others = sum(report.cpu_s.get(group, 0.0) for group in OTHERS) / report.wall_s
    return (f"| {round_} | {run.layout} | {run.files_per_s:.1f} | {report.load_before[0]:.1f} | "
            f"{report.machine_busy_cores:.2f} | {own_cpu_s(report) / report.wall_s:.2f} | {others:.2f} | "
            f"{1000 * own_cpu_s(report) / run.files:.1f} | {on_cpu:.0%} / {waiting:.0%} / {idle:.0%} |")


def describe(run: Burst) -> str:
    report = run.report
    lines = [f"layout {run.layout}: {run.files} files in {run.seconds:.2f} s = {run.files_per_s:.1f} files/s "
             f"(all stored at {run.stored_s:.2f} s; {run.posts} Teams POSTs); load average "
             f"{report.load_before[0]:.2f} before, {report.load_after[0]:.2f} after",
             f"  cores busy, whole machine: {report.machine_busy_cores:.2f} (and {report.machine_stolen_cores:.2f} "
             "stolen by the hypervisor)"]
    for group, cpu in sorted(report.cpu_s.items(), key=lambda item: -item[1]):
        lines.append(f"  {group:32} {cpu:6.2f} CPU s = {report.cores(group):.2f} cores")
    stack = own_cpu_s(report)
    lines.append(f"  the run's own processes: {1000 * stack / run.files:.1f} CPU ms per file")
    for label, cpu, kernel, waited in report.worker_procs:
        lines.append(f"  {label:32} {cpu:6.2f} CPU s ({cpu / report.wall_s:4.0%} of the time; {kernel:.2f} s in the "
                     f"kernel), runnable waiting for a core {waited:6.2f} s ({waited / report.wall_s:4.0%})")
    for n, busy in enumerate(run.busy_s, 1):
        idle = run.seconds * run.concurrency - busy
        lines.append(f"  worker process {n}: in a task {busy:6.2f} s, a child without one {idle:5.2f} s "
                     f"({idle / (run.seconds * run.concurrency):.0%})")
    for name, durations in sorted(run.tasks.items()):
        lines.append(f"  task {name:34} {len(durations):4} runs, {sum(durations):6.2f} s in all, "
                     f"mean {1000 * statistics.mean(durations):.1f} ms")
    samples = max(1, report.pg_samples)
    for state, count in report.pg_states.most_common():
        lines.append(f"  PostgreSQL backends {state:40} {count / samples:.2f} on average")
    for query, count in report.lock_waits.most_common(5):
        lines.append(f"  lock wait ({count / samples:.2f}): {query}")
    return "\n".join(lines)


def throughput(files: int, settle: float, layouts: list[str], rounds: int) -> None:
    runs: dict[str, list[Burst]] = defaultdict(list)
    for _ in range(rounds):
        for layout in layouts:
            run_ = burst(layout, files, settle)
            runs[layout].append(run_)
            print(describe(run_), flush=True)
    print("| round | layout | files/s | load (1 min) | cores busy | vendorwatch's cores | others' cores | "
          "vendorwatch CPU ms per file | worker children: on a core / waiting for one / without a task |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for round_ in range(rounds):
        for layout in layouts:
            print(row(round_ + 1, runs[layout][round_]))
    one = statistics.median(r.files_per_s for r in runs[layouts[0]])
    print(f"| layout | files/s (each round) | median | ratio to layout {layouts[0]} |")
    print("|---|---|---:|---:|")
    for layout in layouts:
        rates = [r.files_per_s for r in runs[layout]]
        print(f"| {layout} | {', '.join(f'{rate:.1f}' for rate in rates)} | {statistics.median(rates):.1f} | "
              f"{statistics.median(rates) / one:.2f} |")
    for layout in layouts:
        processes, concurrency = parse_layout(layout)
        median = statistics.median(r.files_per_s for r in runs[layout])
        print(f"RESULT files={files} workers={processes} concurrency={concurrency} files_per_s={median:.1f} "
              f"ratio_vs_one={median / one:.2f}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--settle", type=float, default=0.2, help="the watcher's settle window, seconds")
    parser.add_argument("--burst", type=int, help="throughput: this many files at once, per worker layout")
    parser.add_argument("--workers", default="1,2,1x2", help="layouts for --burst (the first is the one to beat)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each layout for --burst, alternating")
    options = parser.parse_args()
    if options.burst:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the stack's processes on a kill too
        throughput(options.burst, options.settle, options.workers.split(","), options.rounds)
        return
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
