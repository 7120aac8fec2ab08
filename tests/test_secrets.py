"""No configured secret is written anywhere: not in a log line at DEBUG, an error, `--json` output, a database row
or a Redis key or message.

Every secret the stack can hold is set: a password on a private Redis (broker and result backend) and on the
PostgreSQL URL, a Teams Workflows signature (loopback TLS server), an SMTP password (loopback SMTP server, which
offers no AUTH, so that delivery fails), Slack webhook tokens (Slack lives outside this machine: its requests go to
an HTTPS proxy on a closed loopback port, so that delivery fails at the HTTP boundary), and a pull's auth header.
A real `vendorwatch worker` and the CLI run at DEBUG; then every captured text is searched for every secret."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
import redis
import yaml

from config.secrets import MASK, channel_secrets, install, redact, remember
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CannedResponse, CapturedRequest, CapturingHTTPSServer
from tests.worker_process import started_worker, vendorwatch

REDIS_PASSWORD = "redisPw-7Hq2Lm9Zx"
POSTGRES_PASSWORD = "pgPw-4Rt8Wn2Kv"
WORKFLOW_ID, WORKFLOW_SIG = "wfid9Kd72Jq0Px", "sigQ8v3Xn5Tz2Lw7"
SMTP_PASSWORD = "smtpPw-3Jd9Qa6Vm"
SLACK_TOKENS = ("T9SECR3TA", "B9SECR3TB", "slackTok9Xq4Wz7Lp2Nv")
PULL_TOKEN = "pullTok-8Fg3Hs1Dk6"
TOKEN_ENV = "SECRETS_TEST_FEED_TOKEN"
FEED_PATH = "/exports/maple/claimright.csv"
SECRETS = {
    "Redis password": REDIS_PASSWORD,
    "PostgreSQL password": POSTGRES_PASSWORD,
    "Workflows id": WORKFLOW_ID,
    "Workflows signature": WORKFLOW_SIG,
    "SMTP password": SMTP_PASSWORD,
    **{f"Slack token {index}": token for index, token in enumerate(SLACK_TOKENS, start=1)},
    "pull token": PULL_TOKEN,
}
CHANNELS_YAML = """\
dry_run: false
urls:
  - "${SECRETS_TEAMS_URL}":
      - tag: teams
  - "${SECRETS_EMAIL_URL}":
      - tag: email
  - "${SECRETS_SLACK_URL}":
      - tag: slack
routes:
  - when: {kind: operator}
    tags: [teams]
  - when: {severity: critical}
    tags: [teams, email, slack]
"""


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of our own that demands a password: the broker URL must carry it."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


def recent_months(count: int) -> list[str]:
    first = dt.date.today().replace(day=1)
    months = []
    for _ in range(count):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        months.append(first.strftime("%Y-%m"))
    return list(reversed(months))


def breaching_feed() -> bytes:
    """A year of denial rates, the latest far over the 10% critical limit of the test practice."""
    months = recent_months(12)
    rows = [f"maple-clinic,claimright,denial_rate,{month},{6.0 + index / 10:.1f}%" for index, month in
            enumerate(months[:-1])]
    rows.append(f"maple-clinic,claimright,denial_rate,{months[-1]},14.0%")
    return ("practice,vendor,kpi,period,value\n" + "\n".join(rows) + "\n").encode()


class Endpoints:
    """The loopback HTTPS server: the Teams workflow answers 200, the vendor's feed answers as told."""

    def __init__(self) -> None:
        self.feed_status = 200
        self.teams_status = 200

    def __call__(self, request: CapturedRequest) -> CannedResponse:
        if request.path.startswith(FEED_PATH):
            if self.feed_status != 200:
                return CannedResponse(self.feed_status, b"unavailable", {"Content-Type": "text/plain"})
            return CannedResponse(200, breaching_feed(), {"Content-Type": "text/csv"})
        return CannedResponse(self.teams_status, b"{}")


def write_config(directory: Path, base_url: str) -> Path:
    directory.mkdir(parents=True)
    practices = yaml.safe_load((TEST_CONFIG / "practices.yaml").read_text())
    vendor = practices["practices"][0]["vendors"][0]
    vendor["pull"] = {"url": base_url + FEED_PATH, "auth_header": "Authorization", "auth_env": TOKEN_ENV}
    (directory / "practices.yaml").write_text(yaml.safe_dump(practices, sort_keys=False))
    (directory / "channels.yaml").write_text(CHANNELS_YAML)
    return directory


def with_password(postgres_url: str) -> str:
    """The same database, its URL now carrying a password (the local cluster trusts loopback and ignores it)."""
    return postgres_url.replace("://postgres@", f"://postgres:{POSTGRES_PASSWORD}@", 1)


def secret_env(tmp_path: Path, database_url: str, broker_url: str, https: CapturingHTTPSServer,
               smtp: CapturingSMTPServer) -> dict[str, str]:
    closed = free_port()
    return subprocess_env({
        "VENDORWATCH_CONFIG": str(write_config(tmp_path / "config", https.base_url)),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_DATABASE_URL": database_url,
        "VENDORWATCH_BROKER_URL": broker_url,
        "VENDORWATCH_RESULT_BACKEND": broker_url.rsplit("/", 1)[0] + "/1",
        "VENDORWATCH_LOG_LEVEL": "DEBUG",
        "SECRETS_TEAMS_URL": f"workflows://127.0.0.1:{https.port}/{WORKFLOW_ID}/{WORKFLOW_SIG}",
        "SECRETS_EMAIL_URL": f"mailto://vendorwatch:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}?mode=insecure"
        "&from=vendorwatch@localhost&to=alerts@maple.example",
        "SECRETS_SLACK_URL": "slack://" + "/".join(SLACK_TOKENS) + "/#alerts",
        TOKEN_ENV: f"Bearer {PULL_TOKEN}",
        "REQUESTS_CA_BUNDLE": str(https.ca_bundle_path),
        # Slack's host is not on this machine: its requests go to a proxy that is not there, and fail.
        "HTTPS_PROXY": f"http://127.0.0.1:{closed}",
        "https_proxy": f"http://127.0.0.1:{closed}",
    })


class RedisListener:
    """Every message published on the broker's Redis while the test runs (Celery's pidbox and events)."""

    def __init__(self, url: str) -> None:
        self.messages: list[str] = []
        self.pubsub = redis.Redis.from_url(url).pubsub()
        self.pubsub.psubscribe("*")
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.listen, daemon=True)
        self.thread.start()

    def listen(self) -> None:
        while not self.stopped.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message is not None:
                self.messages.append(repr(message))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.pubsub.close()


def redis_dump(url: str) -> str:
    """Every key and value of every database on the server, as text."""
    texts = []
    for db in range(16):
        per_db = redis.Redis.from_url(url.rsplit("/", 1)[0] + f"/{db}")
        for key in per_db.scan_iter():
            texts.append(f"{key!r}: {redis_value(per_db, key)!r}")
    return "\n".join(texts)


def redis_value(client: redis.Redis, key: bytes) -> object:
    raw = client.type(key)
    kind = raw.decode() if isinstance(raw, bytes) else str(raw)
    readers: dict[str, Callable[[], object]] = {
        "string": lambda: client.get(key),
        "list": lambda: client.lrange(key, 0, -1),
        "hash": lambda: client.hgetall(key),
        "set": lambda: client.smembers(key),
        "zset": lambda: client.zrange(key, 0, -1, withscores=True),
    }
    return readers.get(kind, lambda: kind)()


def database_dump(postgres_url: str) -> str:
    libpq_url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    result = subprocess.run(["pg_dump", "--data-only", libpq_url], capture_output=True, text=True, timeout=120,
                            check=True)
    return result.stdout


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(log[-80:]))
        time.sleep(0.3)


def scalar(postgres_url: str, query: str) -> object:
    libpq_url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq_url) as connection:
        row = connection.execute(query).fetchone()
    return None if row is None else row[0]


def leaks(texts: dict[str, str]) -> list[str]:
    return [f"{name} in {where}: ...{text[max(0, text.find(value) - 120):text.find(value) + 40]}..."
            for where, text in texts.items() for name, value in SECRETS.items() if value in text]


def test_no_secret_reaches_a_log_an_error_json_the_database_or_redis_at_debug(
    tmp_path: Path, postgres_url: str, private_redis: str, smtp_server: CapturingSMTPServer
) -> None:
    endpoints = Endpoints()
    with CapturingHTTPSServer(endpoints) as https:
        env = secret_env(tmp_path, with_password(postgres_url), private_redis, https, smtp_server)
        listener = RedisListener(private_redis)
        outputs: dict[str, str] = {}

        def cli(*args: str) -> str:
            result = vendorwatch("--json", *args, env=env, check=False, timeout=120)
            outputs[f"vendorwatch {' '.join(args)} (exit {result.returncode})"] = result.stdout + result.stderr
            return result.stdout

        with started_worker(env, loglevel="DEBUG") as worker:
            cli("rerun", "pull", "--practice", "maple-clinic", "--vendor", "claimright")
            # Pull (auth header) -> ingest -> evaluate -> deliver: Teams takes it, email and Slack fail.
            wait_until(lambda: any(r.path.startswith("/workflows/") for r in https.requests), 90,
                       "the alert on the Teams workflow", worker.log)
            wait_until(lambda: scalar(postgres_url, "SELECT count(*) FROM delivery_attempt WHERE outcome IN "
                                      "('failed', 'rejected')") == 2, 60, "two failed attempts", worker.log)
            endpoints.feed_status = 503
            cli("rerun", "pull", "--practice", "maple-clinic", "--vendor", "claimright")
            wait_until(lambda: scalar(postgres_url, "SELECT count(*) FROM feed_pull WHERE status = 'failed'") == 1,
                       60, "the failed pull", worker.log)
            endpoints.teams_status = 500  # now every channel fails, Teams too
            tested = json.loads(cli("notify", "test"))
            cli("status")
            cli("alerts", "list")
            cli("feeds", "status")
            worker_log = "\n".join(worker.log)
        listener.stop()

    failures = scalar(postgres_url, "SELECT string_agg(error, ' | ') FROM delivery_attempt")
    assert failures, "the failing deliveries must have recorded why"
    assert "email" in str(failures) and "Slack" in str(failures)
    assert [(result["channel"].split("[")[-1], result["ok"]) for result in tested] == [
        ("teams]", False), ("email]", False), ("slack]", False)
    ], "every channel kind must have failed in the CLI, so that its error path was written out"
    assert any(r.header("Authorization") == f"Bearer {PULL_TOKEN}" for r in https.requests), "the pull sent no token"
    assert "urllib3.connectionpool" in worker_log, "the worker must have logged at DEBUG"
    texts = {
        "the worker's log": worker_log,
        **outputs,
        "the database": database_dump(postgres_url),
        "the Redis keys": redis_dump(private_redis),
        "the Redis messages": "\n".join(listener.messages),
    }
    found = leaks(texts)
    assert not found, "secrets written:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"POST /workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=Zx81kQ HTTP/1.1" 200',
         '"POST /workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=*** HTTP/1.1" 200'),
        ("connect to redis://:hunter22@redis:6379/0 failed", "connect to redis://:***@redis:6379/0 failed"),
        ("postgresql://vendorwatch:s3cret-pw@db/vendorwatch", "postgresql://vendorwatch:***@db/vendorwatch"),
        ("headers {'Authorization': 'Bearer abcdefgh12345'}", "headers {'Authorization': 'Bearer ***'}"),
        ("https://example.com/feed?token=abc123&page=2", "https://example.com/feed?token=***&page=2"),
        ("Slack notification failed: error=404.", "Slack notification failed: error=404."),
        ("mailto://127.0.0.1:1025?mode=insecure&from=a@b.example", "mailto://127.0.0.1:1025?mode=insecure&from=a@b.example"),
    ],
)
def test_redact_masks_url_passwords_signatures_and_tokens_it_was_never_told(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_what_apprise_marks_private_in_a_channel_url_in_every_form() -> None:
    url = "slack://" + "/".join(SLACK_TOKENS) + "/#alerts"
    remember(channel_secrets(url))
    text = f"POST https://hooks.slack.com/services/{'/'.join(SLACK_TOKENS)} and {SLACK_TOKENS[2]!r}"
    assert redact(text) == f"POST https://hooks.slack.com/services/{MASK}/{MASK}/{MASK} and '{MASK}'"


def test_a_short_or_empty_value_is_never_remembered() -> None:
    remember(["", None, "abc"])
    assert redact("abc 1.0 abcdef") == "abc 1.0 abcdef"



def test_the_filter_masks_a_secret_in_the_message_its_arguments_and_a_traceback() -> None:
    secret = "filterSecret-6Tq1Vb8"
    remember([secret])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.secrets.filter")
    logger.addHandler(handler)
    logger.propagate = False
    install(logger)
    try:
        raise ConnectionError(f"cannot reach https://example.invalid/hook/{secret}")
    except ConnectionError:
        logger.exception("posting %s failed", f"token={secret}")
    logger.removeHandler(handler)
    written = stream.getvalue()
    assert secret not in written
    assert "posting token=*** failed" in written and "hook/***" in written
