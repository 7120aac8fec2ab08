"""Where the time of a burst goes: CPU per process group, time spent runnable but waiting for a core, and what the
run's PostgreSQL backends were waiting on (used by `bench.latency --burst`).

Linux only. CPU seconds are read from /proc/<pid>/stat (utime + stime) at the start and the end of the burst, for
every process on the machine, and put in groups: the worker processes (by process group: each is started in a
session of its own), the watcher, the run's `redis-server`, the run's PostgreSQL backends (pids seen in
pg_stat_activity for its database), the rest of PostgreSQL (its background processes and other sessions'
backends), this process (the loopback Teams and SMTP servers run in its threads) and everything else on the
machine; what the machine was busy with beyond these (processes that ended before the burst did) is counted
apart. /proc/<pid>/schedstat adds, per worker process, the time it was runnable but not running: waiting for a
core. pg_stat_activity is sampled every SAMPLE_S for the run's database: running, idle in a transaction, or waiting
(and on what: a lock, WAL, the client).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.02
SHORT_LIVED = "processes gone by the end, kernel"


@dataclass
class Proc:
    pid: int
    pgrp: int
    comm: str
    cpu_s: float  # utime + stime
    sys_s: float  # stime: in the kernel
    wait_s: float  # runnable, waiting for a core (schedstat)


def read_proc(pid: int) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        sched = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()  # from field 3 (state) on
    pgrp, utime, stime = int(fields[2]), int(fields[11]), int(fields[12])
    return Proc(pid, pgrp, comm, (utime + stime) / TICK, stime / TICK, int(sched[1]) / 1e9)


def snapshot() -> dict[int, Proc]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (proc := read_proc(int(entry.name))) is not None:
            found[proc.pid] = proc
    return found


def machine_ticks() -> tuple[int, int, int]:
    """(busy, stolen, total) jiffies of all cores, from /proc/stat; iowait counts as idle, and time the hypervisor
    gave to another guest (steal) as neither."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle, steal = values[3] + values[4], values[7]
    total = sum(values[:8])
    return total - idle - steal, steal, total


@dataclass
class Report:
    wall_s: float
    cpu_s: dict[str, float]  # per group
    worker_procs: list[tuple[str, float, float, float]]  # (label, CPU s, of which in the kernel, runnable-waiting s)
    machine_busy_cores: float
    machine_stolen_cores: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    pg_states: Counter[str] = field(default_factory=Counter)  # backend samples by state / wait event
    pg_samples: int = 0
    lock_waits: Counter[str] = field(default_factory=Counter)  # query heads seen waiting on a Lock

    def cores(self, group: str) -> float:
        return self.cpu_s.get(group, 0.0) / self.wall_s


class Probe:
    """Start before the burst, stop after; `groups` names process groups (a pgid per name) to count apart."""

    def __init__(self, database_url: str, groups: dict[str, list[int]], redis_pid: int) -> None:
        self.dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
        self.database = self.dsn.rsplit("/", 1)[1]
        self.groups = groups
        self.redis_pid = redis_pid
        self.backends: set[int] = set()
        self.states: Counter[str] = Counter()
        self.lock_waits: Counter[str] = Counter()
        self.samples = 0
        self.stopping = threading.Event()
        self.sampler = threading.Thread(target=self.sample, name="probe-pg", daemon=True)

    def start(self) -> None:
        self.load_before = os.getloadavg()
        self.before = snapshot()
        self.machine_before = machine_ticks()
        self.started = time.monotonic()
        self.sampler.start()

    def sample(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            me = connection.info.backend_pid
            while not self.stopping.wait(SAMPLE_S):
                rows = connection.execute(
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> %s AND backend_type = 'client backend'",
                    (self.database, me)).fetchall()
                self.samples += 1
                for pid, state, wait_type, wait_event, query in rows:
                    self.backends.add(pid)
                    self.states[backend_state(state, wait_type, wait_event)] += 1
                    if wait_type == "Lock":
                        self.lock_waits[f"{wait_event}: {' '.join(query.split())}"] += 1

    def stop(self) -> Report:
        wall = time.monotonic() - self.started
        after = snapshot()
        busy, stolen, total = machine_ticks()
        self.stopping.set()
        self.sampler.join()
        cpu: dict[str, float] = defaultdict(float)
        workers = []
        for pid, proc in after.items():
            start = self.before.get(pid)
            cpu_s = proc.cpu_s - (start.cpu_s if start else 0.0)
            wait_s = proc.wait_s - (start.wait_s if start else 0.0)
            sys_s = proc.sys_s - (start.sys_s if start else 0.0)
            group = self.group_of(proc)
            cpu[group] += cpu_s
            if group.startswith("worker"):
                role = "parent" if pid == proc.pgrp else f"child {pid}"
                workers.append((f"{group} {role}", cpu_s, sys_s, wait_s))
        cores = (os.cpu_count() or 1) / max(1, total - self.machine_before[2])
        busy_cores = (busy - self.machine_before[0]) * cores
        stolen_cores = (stolen - self.machine_before[1]) * cores
        # A process that started and ended within the burst (another session's short command) is in no snapshot.
        cpu[SHORT_LIVED] = max(0.0, busy_cores * wall - sum(cpu.values()))
        return Report(wall, dict(cpu), sorted(workers), busy_cores, stolen_cores, self.load_before, os.getloadavg(),
                      self.states, self.samples, self.lock_waits)

    def group_of(self, proc: Proc) -> str:
        for name, pgids in self.groups.items():
            if proc.pgrp in pgids:
                return name
        if proc.pid == self.redis_pid:
            return "redis"
        if proc.pid in self.backends:
            return "postgres (the run's backends)"
        if proc.comm == "postgres":
            return "postgres (other)"
        if proc.pid == os.getpid():
            return "bench (Teams, SMTP)"
        return "other processes"


def backend_state(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    if state == "idle":
        return "idle"
    prefix = "idle in transaction" if state and state.startswith("idle in") else "active"
    if wait_type is None:
        return f"{prefix}: on CPU"
    return f"{prefix}: {wait_type}/{wait_event}"
