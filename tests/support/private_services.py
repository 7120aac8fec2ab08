"""A private Redis and a private PostgreSQL cluster that a fault test may kill and restart at will, without touching
the machine's shared services (which other tests and other runs use).

* :class:`PrivateRedis`: `redis-server` on a free loopback port with its own data folder, optionally with the
  append-only file, so a restart either keeps the queue (AOF) or loses everything in it (no persistence).
* :class:`PrivatePostgres`: a cluster made with `initdb` in a temp folder, run as the `postgres` user (PostgreSQL
  refuses to run as root), on a free port, trust auth on loopback.

Both raise with the server's own output when they cannot start, so a failure explains itself; tests never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import redis
from psycopg import sql

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class PrivateRedis:
    def __init__(self, folder: Path, appendonly: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(self.answers, 15, f"redis-server on port {self.port}")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log_tail()}") from None
        return self

    def answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown save, connections cut mid-command."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self) -> str:
        log = self.folder / "redis.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else "(no log)"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=5)


@contextmanager
def private_redis(folder: Path, appendonly: bool = False) -> Iterator[PrivateRedis]:
    server = PrivateRedis(folder, appendonly).start()
    try:
        yield server
    finally:
        server.kill()


class PrivatePostgres:
    """A throwaway cluster. Files belong to `postgres`; the test process (root) drives it through `runuser`."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is root's and closed to `postgres`.
        self.folder = Path(tempfile.mkdtemp(prefix="vw-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout)

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        done = self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )
        if done.returncode != 0:
            raise AssertionError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        return self

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "pg.log"),
            "-w", "-t", "60", "start",
        )
        if done.returncode != 0:
            raise AssertionError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{self.log_tail()}")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is the crash: every backend is killed and the next start replays the WAL."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new empty database on the cluster; its SQLAlchemy URL."""
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def answers(self) -> bool:
        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def log_tail(self) -> str:
        log = self.folder / "pg.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else "(no log)"


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres().init().start()
    try:
        yield cluster
    finally:
        with suppress(Exception):
            cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
