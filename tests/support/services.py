"""Make sure the machine's Redis and PostgreSQL are up, and hand out isolated slices of them.

Policy: tests use the real services and never skip.  If a service is down it
is started; if it still does not answer, :class:`ServiceUnavailable` is raised
with the command output so the failure explains itself.

Isolation between concurrent test runs on one machine:

* PostgreSQL: every caller gets its own freshly created database
  (:func:`fresh_postgres_database` / :func:`drop_postgres_database`), optionally a copy of a template database
  (one already migrated: copying it is quicker than running the migrations again). :class:`BackgroundDropper`
  drops databases on a thread of its own: DROP DATABASE forces a checkpoint, which can take a second on a busy
  machine, and no test needs to wait for it.
* Redis: databases 1..15 are leased with a ``SET NX`` lock key that expires
  after an hour, so a crashed run cannot hold a database forever
  (:func:`free_redis_db` / :func:`release_redis_db`).  Database 0 is left to
  developers.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql
from psycopg.rows import TupleRow

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_SQLALCHEMY_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432"

REDIS_LOCK_KEY = "vendorwatch:test:lock"
REDIS_LOCK_TTL_S = 3600
REDIS_TEST_DBS = range(1, 16)

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_PG_START_COMMAND = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
_DB_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]{0,20}$")
_PROTECTED_DATABASES = {"postgres", "template0", "template1"}

# Lock token of each Redis db this process leased, so release never flushes a db
# whose lease expired and was taken over by another run.
_redis_leases: dict[str, str] = {}


class ServiceUnavailable(RuntimeError):
    """A required local service is down and could not be started."""


def _wait_until(check: Callable[[], str | None], timeout: float, interval: float = 0.25) -> str | None:
    """Call ``check`` until it returns None (success) or time runs out; return the last error."""
    deadline = time.monotonic() + timeout
    error = check()
    while error is not None and time.monotonic() < deadline:
        time.sleep(interval)
        error = check()
    return error


def _run_shell(command: list[str] | str) -> str:
    """Run a start command; its output is only needed to explain a later failure."""
    try:
        done = subprocess.run(
            command, shell=isinstance(command, str), capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"{command!r} could not run: {error!r}"
    return f"{command!r} exited {done.returncode}; stdout={done.stdout!r} stderr={done.stderr!r}"


# -- Redis ---------------------------------------------------------------------------
def _redis_ping_error(url: str) -> str | None:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        return repr(error)
    return None


def _redis_server_command(url: str) -> list[str]:
    port = str(urlsplit(url).port or 6379)
    return [
        "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", port,
        "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
    ]  # fmt: skip


def ensure_redis(url: str = REDIS_URL) -> None:
    """Ping Redis; start a local redis-server if it is down; raise if it stays down."""
    error = _redis_ping_error(url)
    if error is None:
        return
    if urlsplit(url).hostname not in _LOOPBACK_HOSTS:
        raise ServiceUnavailable(f"Redis at {url} is down ({error}) and is not local; cannot start it")
    output = _run_shell(_redis_server_command(url))
    error = _wait_until(lambda: _redis_ping_error(url), timeout=10)
    if error is not None:
        raise ServiceUnavailable(
            f"Redis at {url} is still down after starting it: {error}\n{output}\nsee /var/log/redis/ci.log"
        )


def _redis_db_url(db: int, base_url: str = REDIS_URL) -> str:
    return urlsplit(base_url)._replace(path=f"/{db}").geturl()


def _lease_token() -> str:
    return f"{os.getpid()}:{uuid.uuid4().hex}"


def _try_lease(url: str, token: str) -> bool:
    with redis.Redis.from_url(url) as client:
        if not client.set(REDIS_LOCK_KEY, token, nx=True, ex=REDIS_LOCK_TTL_S):
            return False
        # FLUSHDB would also drop our lock; doing both in one MULTI leaves no gap
        # in which another run could grab the db.
        with client.pipeline(transaction=True) as pipe:
            pipe.flushdb()
            pipe.set(REDIS_LOCK_KEY, token, ex=REDIS_LOCK_TTL_S)
            pipe.execute()
    return True


def free_redis_db() -> str:
    """Lease an empty Redis database (1..15) for this test run and return its URL."""
    ensure_redis()
    token = _lease_token()
    for db in REDIS_TEST_DBS:
        url = _redis_db_url(db)
        if _try_lease(url, token):
            _redis_leases[url] = token
            return url
    raise ServiceUnavailable(
        f"all Redis test databases {REDIS_TEST_DBS.start}..{REDIS_TEST_DBS.stop - 1} are leased "
        f"(key {REDIS_LOCK_KEY!r}); stale leases expire after {REDIS_LOCK_TTL_S}s"
    )


def release_redis_db(url: str) -> None:
    """Flush a leased database and drop its lock so another run can use it."""
    token = _redis_leases.pop(url, None)
    with redis.Redis.from_url(url) as client:
        holder = client.get(REDIS_LOCK_KEY)
        if token is not None and holder is not None and holder.decode() != token:
            return  # our lease expired and another run owns the db now; leave its data alone
        with client.pipeline(transaction=True) as pipe:
            pipe.flushdb()
            pipe.delete(REDIS_LOCK_KEY)  # flushdb removes it too; explicit for the reader
            pipe.execute()


# -- PostgreSQL ----------------------------------------------------------------------
def _postgres_connect_error() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return repr(error)
    return None


def ensure_postgres() -> None:
    """Connect as postgres on 127.0.0.1:5432; start the cluster if down; raise if it stays down."""
    error = _postgres_connect_error()
    if error is None:
        return
    output = _run_shell(_PG_START_COMMAND)
    error = _wait_until(_postgres_connect_error, timeout=20)
    if error is not None:
        raise ServiceUnavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} is still down: {error}\n{output}")


def _admin_connection() -> psycopg.Connection[TupleRow]:
    # CREATE/DROP DATABASE refuse to run inside a transaction block.
    return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)


def fresh_postgres_database(prefix: str = "vw_test", template: str | None = None) -> str:
    """Create a uniquely named database and return its SQLAlchemy URL: empty, or a copy of the database at the URL
    ``template`` (which nobody may be connected to)."""
    if not _DB_PREFIX_RE.match(prefix):
        raise ValueError(f"database prefix {prefix!r} must match {_DB_PREFIX_RE.pattern}")
    ensure_postgres()
    name = f"{prefix}_{uuid.uuid4().hex}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(database_name(template)))
    with _admin_connection() as conn:
        conn.execute(create)
    return f"{POSTGRES_SQLALCHEMY_BASE}/{name}"


def database_name(url: str) -> str:
    """The database part of a postgres URL (SQLAlchemy or libpq style)."""
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ValueError(f"no database name in {url!r}")
    return name


def drop_postgres_database(url: str) -> None:
    """Terminate connections to the database in ``url`` and drop it."""
    name = database_name(url)
    if name in _PROTECTED_DATABASES:
        raise ValueError(f"refusing to drop system database {name!r}")
    with _admin_connection() as conn:
        # Leftover pooled connections (e.g. an undisposed SQLAlchemy engine) would block DROP.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        # WITH (FORCE) covers a connection that sneaks in between terminate and drop.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class BackgroundDropper:
    """Drops the databases it is given, one after another, on a thread of its own. :meth:`close` waits for the
    last and raises if any drop failed, so a leak is still reported."""

    def __init__(self) -> None:
        self._urls: queue.Queue[str | None] = queue.Queue()
        self._errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="drop-databases", daemon=True)
        self._thread.start()

    def drop_later(self, url: str) -> None:
        self._urls.put(url)

    def _run(self) -> None:
        while (url := self._urls.get()) is not None:
            try:
                drop_postgres_database(url)
            except Exception as error:  # reported by close(), in the test run's own output
                self._errors.append(f"{database_name(url)}: {error!r}")

    def close(self) -> None:
        self._urls.put(None)
        self._thread.join()
        if self._errors:
            raise RuntimeError("test databases left behind: " + "; ".join(self._errors))
