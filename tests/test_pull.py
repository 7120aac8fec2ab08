"""HTTPS pull, with real parts: a TLS server on loopback behind a throw-away CA, PostgreSQL, the inbox on disk, and
for the whole chain a real worker on Redis. The token travels in the header, and nowhere else."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from config import Config, load_config
from feeds.pull import PullFailed, PullMisconfigured, PullOutcome, pull_due, pull_vendor
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import FeedFile, FeedPull, Observation, Rerun
from tests.conftest import TEST_CONFIG, reset_caches, subprocess_env
from tests.support.tls_capture import CannedResponse, CapturedRequest, CapturingHTTPSServer
from tests.worker_process import running_worker, vendorwatch

TOKEN_ENV = "ACME_FEED_TOKEN"
TOKEN = "s3cr3t-Feed-Token-7f2a9c41e0"
HEADER_VALUE = f"Bearer {TOKEN}"
FEED_PATH = "/exports/maple/claimright.csv"
NOW = dt.datetime(2026, 11, 23, 6, 30, tzinfo=dt.UTC)
CHANNEL_ENV = {name: "json://localhost" for name in ("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL")}


def recent_months(count: int) -> list[str]:
    """The last `count` complete months, oldest first (a feed may not report the future)."""
    first = dt.date.today().replace(day=1)
    months = []
    for _ in range(count):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        months.append(first.strftime("%Y-%m"))
    return list(reversed(months))


def long_csv(denial_offset: float = 0.0) -> bytes:
    """A year of three KPIs in the canonical long shape, every value inside the contract (no alert fires)."""
    lines = ["practice,vendor,kpi,period,value"]
    for index, month in enumerate(recent_months(12)):
        lines.append(f"maple-clinic,claimright,days_in_ar,{month},{38 + index % 3}")
        lines.append(f"maple-clinic,claimright,denial_rate,{month},{6.1 + index % 4 / 10 + denial_offset:.1f}%")
        lines.append(f"maple-clinic,claimright,clean_claim_rate,{month},{96 + index % 2}")
    return ("\n".join(lines) + "\n").encode()


BODY = long_csv()
ROWS = 36


@dataclass
class Feed:
    """What the vendor's server answers, changeable mid-test."""

    body: bytes = BODY
    status: int = 200
    content_type: str = "text/csv; charset=utf-8"
    missing: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: CapturedRequest) -> CannedResponse:
        with self.lock:
            if request.path in self.missing:
                return CannedResponse(404, b"not found", {"Content-Type": "text/plain"})
            return CannedResponse(self.status, self.body, {"Content-Type": self.content_type})


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
def server(feed: Feed) -> Iterator[CapturingHTTPSServer]:
    with CapturingHTTPSServer(feed) as https:
        yield https


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, server: CapturingHTTPSServer) -> None:
    """This process trusts the test CA (as production trusts a vendor's public CA) and holds the token."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle_path))
    monkeypatch.setenv(TOKEN_ENV, HEADER_VALUE)


def write_config(directory: Path, base_url: str, extra_vendors: Sequence[Mapping[str, object]] | None = None) -> Path:
    """tests/fixtures/config with a pull: entry on claimright (plus optional extra vendors)."""
    directory.mkdir(parents=True, exist_ok=True)
    practices = yaml.safe_load((TEST_CONFIG / "practices.yaml").read_text())
    vendors = practices["practices"][0]["vendors"]
    vendors[0]["pull"] = {"url": base_url + FEED_PATH, "auth_header": "Authorization", "auth_env": TOKEN_ENV}
    vendors.extend(extra_vendors or [])
    (directory / "practices.yaml").write_text(yaml.safe_dump(practices, sort_keys=False))
    shutil.copy(TEST_CONFIG / "channels.yaml", directory / "channels.yaml")
    return directory


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: CapturingHTTPSServer) -> Config:
    for name, value in CHANNEL_ENV.items():
        monkeypatch.setenv(name, value)
    return load_config(write_config(tmp_path / "config", server.base_url))


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path / "var" / "inbox"


def pull(config: Config, inbox: Path, database_url: str, now: dt.datetime = NOW) -> PullOutcome:
    practice = config.practices[0]
    vendor = practice.vendors[0]
    with session_scope(database_url) as session:
        return pull_vendor(practice, vendor, inbox, session, now)


def pulls(database_url: str) -> list[FeedPull]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(FeedPull).order_by(FeedPull.id)))


def vendor_folder(inbox: Path) -> Path:
    return inbox / "maple-clinic" / "claimright"


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def count(model: type, database_url: str) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# -- fetch ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("trusted")
def test_a_pull_sends_the_token_and_writes_the_body_into_the_vendors_inbox_folder(
    config: Config, inbox: Path, postgres_url: str, server: CapturingHTTPSServer
) -> None:
    outcome = pull(config, inbox, postgres_url)

    [request] = server.requests
    assert request.method == "GET"
    assert request.path == FEED_PATH
    assert request.header("Authorization") == HEADER_VALUE
    assert outcome.status == "fetched"
    assert outcome.path == vendor_folder(inbox) / "pull-20261123T063000Z.csv"
    assert outcome.path.read_bytes() == BODY
    assert files_in(vendor_folder(inbox)) == ["pull-20261123T063000Z.csv"], "no .part file may be left behind"
    [row] = pulls(postgres_url)
    assert (row.practice_id, row.vendor_id, row.status, row.http_status) == (
        "maple-clinic",
        "claimright",
        "fetched",
        200,
    )
    assert row.sha256 == hashlib.sha256(BODY).hexdigest()
    assert row.file_name == "pull-20261123T063000Z.csv"
    assert row.attempted_at == NOW
    assert row.error is None


@pytest.mark.usefixtures("trusted")
def test_the_same_body_again_writes_nothing_and_a_changed_body_is_fetched(
    config: Config, inbox: Path, postgres_url: str, feed: Feed
) -> None:
    first = pull(config, inbox, postgres_url)
    assert first.path is not None
    first.path.unlink()  # ingestion moved it to the archive

    second = pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=6))
    third = pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=12))

    assert (second.status, second.path, third.status) == ("unchanged", None, "unchanged")
    assert files_in(vendor_folder(inbox)) == []

    feed.body = long_csv(denial_offset=0.5)
    fourth = pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=18))

    assert fourth.status == "fetched"
    assert files_in(vendor_folder(inbox)) == ["pull-20261124T003000Z.csv"]
    rows = pulls(postgres_url)
    assert [(r.status, r.http_status, r.file_name) for r in rows] == [
        ("fetched", 200, "pull-20261123T063000Z.csv"),
        ("unchanged", 200, None),
        ("unchanged", 200, None),
        ("fetched", 200, "pull-20261124T003000Z.csv"),
    ]
    assert rows[1].sha256 == rows[0].sha256 != rows[3].sha256


@pytest.mark.usefixtures("trusted")
def test_a_json_content_type_names_the_file_json(config: Config, inbox: Path, postgres_url: str, feed: Feed) -> None:
    feed.body = b'{"practice": "maple-clinic", "vendor": "claimright", "observations": []}'
    feed.content_type = "application/json"

    outcome = pull(config, inbox, postgres_url)

    assert outcome.path is not None and outcome.path.name == "pull-20261123T063000Z.json"


# -- failures -------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("status", [500, 404])
def test_a_non_200_answer_is_a_failed_pull_with_its_status(
    config: Config, inbox: Path, postgres_url: str, feed: Feed, status: int
) -> None:
    feed.status = status

    with pytest.raises(PullFailed, match=f"HTTP {status}") as failure:
        pull(config, inbox, postgres_url)

    assert failure.value.http_status == status
    assert files_in(vendor_folder(inbox)) == []
    [row] = pulls(postgres_url)  # recorded although the caller's session rolled back
    assert (row.status, row.http_status, row.sha256, row.file_name) == ("failed", status, None, None)
    assert row.error is not None and f"HTTP {status}" in row.error


@pytest.mark.usefixtures("trusted")
def test_a_failure_does_not_count_as_the_last_successful_pull(
    config: Config, inbox: Path, postgres_url: str, feed: Feed
) -> None:
    first = pull(config, inbox, postgres_url)
    assert first.path is not None
    first.path.unlink()
    feed.status = 500
    with pytest.raises(PullFailed):
        pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=6))
    feed.status = 200

    again = pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=12))

    assert again.status == "unchanged"
    assert [r.status for r in pulls(postgres_url)] == ["fetched", "failed", "unchanged"]


def test_a_missing_token_variable_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, config: Config, inbox: Path, postgres_url: str, server: CapturingHTTPSServer
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle_path))
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    with pytest.raises(PullMisconfigured, match=f"environment variable {TOKEN_ENV} is not set"):
        pull(config, inbox, postgres_url)

    assert server.requests == [], "nothing is sent without the token"
    [row] = pulls(postgres_url)
    assert row.status == "failed" and row.error is not None and TOKEN_ENV in row.error


def test_an_untrusted_certificate_fails_because_tls_is_verified(
    monkeypatch: pytest.MonkeyPatch, config: Config, inbox: Path, postgres_url: str, server: CapturingHTTPSServer
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv(TOKEN_ENV, HEADER_VALUE)

    with pytest.raises(PullFailed, match="TLS error") as failure:
        pull(config, inbox, postgres_url)

    assert "CERTIFICATE_VERIFY_FAILED" in str(failure.value)
    server.wait_for_tls_failures(1)
    assert server.requests == [], "the token never left over an unverified connection"
    assert files_in(vendor_folder(inbox)) == []
    [row] = pulls(postgres_url)
    assert (row.status, row.http_status) == ("failed", None)


@pytest.mark.usefixtures("trusted")
def test_a_refused_connection_is_a_failed_pull(config: Config, inbox: Path, postgres_url: str) -> None:
    practice = config.practices[0]
    unreachable = practice.vendors[0].model_copy(
        update={"pull": practice.vendors[0].pull.model_copy(update={"url": "https://127.0.0.1:9/feed.csv"})}  # type: ignore[union-attr]
    )

    with session_scope(postgres_url) as session, pytest.raises(PullFailed, match="cannot connect"):
        pull_vendor(practice, unreachable, inbox, session, NOW)

    [row] = pulls(postgres_url)
    assert (row.status, row.http_status) == ("failed", None)


def test_the_token_appears_in_no_row_no_log_record_and_no_error(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    config: Config,
    inbox: Path,
    postgres_url: str,
    server: CapturingHTTPSServer,
    feed: Feed,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(TOKEN_ENV, HEADER_VALUE)
    errors: list[str] = []

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle_path))
    pull(config, inbox, postgres_url)  # fetched
    pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=6))  # unchanged
    feed.status = 500
    with pytest.raises(PullFailed) as failure:
        pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=12))
    errors.append(str(failure.value))
    # A value requests refuses to send: its InvalidHeader error would quote the header value.
    monkeypatch.setenv(TOKEN_ENV, f"{HEADER_VALUE}\r\nX-Injected: 1")
    with pytest.raises(PullFailed) as failure:
        pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=18))
    errors.append(str(failure.value))
    monkeypatch.setenv(TOKEN_ENV, HEADER_VALUE)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(PullFailed) as failure:
        pull(config, inbox, postgres_url, NOW + dt.timedelta(hours=24))
    errors.append(str(failure.value))

    assert [r.status for r in pulls(postgres_url)] == ["fetched", "unchanged", "failed", "failed", "failed"]
    assert server.requests[0].header("Authorization") == HEADER_VALUE, "the token was sent, so it was in play"
    for row in pulls(postgres_url):
        stored = " ".join(str(value) for value in vars(row).values())
        assert TOKEN not in stored
    assert caplog.records, "the pull logs what it did"
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), record.getMessage()
    assert TOKEN not in caplog.text
    for error in errors:
        assert TOKEN not in error and repr(TOKEN)[1:-1] not in error


# -- pull_due and ingestion -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("trusted")
def test_pull_due_pulls_every_configured_vendor_and_one_failure_stops_no_other(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    inbox: Path,
    postgres_url: str,
    server: CapturingHTTPSServer,
    feed: Feed,
) -> None:
    for name, value in CHANNEL_ENV.items():
        monkeypatch.setenv(name, value)
    broken = {
        "id": "remindly",
        "name": "Remindly",
        "service": "reminders",
        "go_live": "2025-01-01",
        "pull": {"url": server.base_url + "/gone.csv"},
    }
    no_pull = {"id": "askus", "name": "AskUs Surveys", "service": "surveys", "go_live": "2025-01-01"}
    config = load_config(write_config(tmp_path / "config", server.base_url, [broken, no_pull]))
    feed.missing.add("/gone.csv")

    with session_scope(postgres_url) as session:
        outcomes = pull_due(config, inbox, session, NOW)

    assert [(o.vendor, o.status, o.http_status) for o in outcomes] == [
        ("claimright", "fetched", 200),
        ("remindly", "failed", 404),
    ]
    assert {r.path for r in server.requests} == {FEED_PATH, "/gone.csv"}
    gone = next(r for r in server.requests if r.path == "/gone.csv")
    assert gone.header("Authorization") is None, "no auth_env, no auth header"
    assert [(r.vendor_id, r.status) for r in pulls(postgres_url)] == [("claimright", "fetched"), ("remindly", "failed")]


@pytest.mark.usefixtures("trusted")
def test_a_pulled_file_ingests_like_any_inbox_file(config: Config, inbox: Path, postgres_url: str) -> None:
    outcome = pull(config, inbox, postgres_url)
    assert outcome.path is not None

    result = ingest_path(outcome.path, config, inbox=inbox, database_url=postgres_url)

    assert result.status == "accepted", result.problems
    assert result.rows == ROWS
    assert count(Observation, postgres_url) == ROWS
    with session_scope(postgres_url) as session:
        [stored] = session.scalars(select(FeedFile))
        assert (stored.practice_id, stored.vendor_id, stored.sha256) == ("maple-clinic", "claimright", outcome.sha256)


# -- tasks, schedule, CLI ---------------------------------------------------------------------------------------


def test_the_pull_tasks_are_registered_and_scheduled() -> None:
    from celery.schedules import crontab

    from worker.app import app, beat_schedule

    app.loader.import_default_modules()
    assert {"feeds.pull", "feeds.pull_all"} <= set(app.tasks)
    entry = beat_schedule()["pull-feeds"]
    assert entry["task"] == "feeds.pull_all"
    assert entry["schedule"] == crontab(minute=30, hour="*/6")
    assert entry["options"] == {"expires": 3000}
    assert app.tasks["feeds.pull"].max_retries == 3


@pytest.fixture
def task_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str, config: Config) -> Iterator[None]:
    """What a worker process sees: this test's configuration, data folder and database."""
    monkeypatch.setenv("VENDORWATCH_CONFIG", str(config.directory))
    monkeypatch.setenv("VENDORWATCH_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("VENDORWATCH_DATABASE_URL", postgres_url)
    reset_caches()
    yield
    reset_caches()


@pytest.mark.usefixtures("trusted", "task_env")
def test_the_pull_task_retries_a_failing_feed_three_times_then_gives_up(
    postgres_url: str, server: CapturingHTTPSServer, feed: Feed
) -> None:
    from tasks.pull import pull_task

    feed.status = 503

    result = pull_task.apply(args=("maple-clinic", "claimright"))  # eager: retries run at once, no countdown

    assert result.failed() and isinstance(result.result, PullFailed)
    assert len(server.requests) == 4, "the first try and 3 retries"
    assert [(r.status, r.http_status) for r in pulls(postgres_url)] == [("failed", 503)] * 4


@pytest.mark.usefixtures("trusted", "task_env")
def test_the_pull_task_does_not_retry_a_missing_token(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, server: CapturingHTTPSServer
) -> None:
    from tasks.pull import pull_task

    monkeypatch.delenv(TOKEN_ENV)

    result = pull_task.apply(args=("maple-clinic", "claimright"))

    assert result.failed() and isinstance(result.result, PullMisconfigured)
    assert TOKEN_ENV in str(result.result)
    assert server.requests == []
    assert [r.status for r in pulls(postgres_url)] == ["failed"]


def test_rerun_pull_through_a_real_worker_fetches_ingests_and_archives(
    tmp_path: Path, postgres_url: str, redis_url: str, server: CapturingHTTPSServer
) -> None:
    data_dir = tmp_path / "var"
    env = subprocess_env(
        {
            "VENDORWATCH_CONFIG": str(write_config(tmp_path / "config", server.base_url)),
            "VENDORWATCH_DATA_DIR": str(data_dir),
            "VENDORWATCH_DATABASE_URL": postgres_url,
            "VENDORWATCH_BROKER_URL": redis_url,
            "REQUESTS_CA_BUNDLE": str(server.ca_bundle_path),
            TOKEN_ENV: HEADER_VALUE,
            **CHANNEL_ENV,
        }
    )

    with running_worker(env) as log:
        vendorwatch("rerun", "pull", "--practice", "maple-clinic", "--vendor", "claimright", env=env)
        wait_until(lambda: len(list((data_dir / "archive").rglob("*-pull-*.csv"))) == 1, log, "pulled file archived")
        vendorwatch("rerun", "pull", env=env)  # feeds.pull_all: the same bytes again
        wait_until(lambda: count(FeedPull, postgres_url) == 2, log, "second pull recorded")

    assert [r.status for r in pulls(postgres_url)] == ["fetched", "unchanged"]
    assert [r.header("Authorization") for r in server.requests] == [HEADER_VALUE, HEADER_VALUE]
    assert count(FeedFile, postgres_url) == 1
    assert count(Observation, postgres_url) == ROWS
    assert files_in(vendor_folder(data_dir / "inbox")) == []
    with session_scope(postgres_url) as session:
        reruns = [(r.task, r.arguments) for r in session.scalars(select(Rerun).order_by(Rerun.id))]
    assert reruns == [
        ("feeds.pull", {"practice_id": "maple-clinic", "vendor_id": "claimright"}),
        ("feeds.pull_all", {}),
    ]
    assert TOKEN not in "\n".join(log)


def wait_until(condition: object, log: list[str], message: str, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}:\n" + "\n".join(log[-40:]))
