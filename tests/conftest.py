"""Shared fixtures: real PostgreSQL and Redis (started if down, never skipped), loopback TLS and SMTP servers,
and an isolated vendorwatch environment per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.services import (
    BackgroundDropper,
    drop_postgres_database,
    ensure_postgres,
    ensure_redis,
    free_redis_db,
    fresh_postgres_database,
    release_redis_db,
)
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer

if TYPE_CHECKING:
    from tests.support.demo import DemoRun

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_CONFIG = FIXTURES / "config"
WORKFLOW_ID, WORKFLOW_SIG = "abc123def456", "sigABC123xyz"


@pytest.fixture(scope="session", autouse=True)
def machine_services() -> None:
    ensure_redis()
    ensure_postgres()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One `vendorwatch demo` run for every test that reads what it printed and wrote (tests/test_demo.py,
    tests/test_spc_digest.py): about 13 s each. Tests only read its folder's out/; a test that would change what
    the demo left must copy it first."""
    from tests.support.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def migrated_template() -> Iterator[str]:
    """A database at the head migration, made once per run; each test's database is a copy of it."""
    from storage.db import engine_for, upgrade

    url = fresh_postgres_database("vw_template")
    upgrade(url)
    engine_for(url).dispose()  # CREATE DATABASE ... TEMPLATE refuses while anyone is connected to it
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="session")
def database_dropper() -> Iterator[BackgroundDropper]:
    dropper = BackgroundDropper()
    yield dropper
    dropper.close()


@pytest.fixture
def postgres_url(migrated_template: str, database_dropper: BackgroundDropper) -> Iterator[str]:
    """A database of this test's own, at the head migration (a copy of the template, which is what running the
    migrations on an empty one gives, in half the time). Dropped in the background after the test."""
    from storage.db import engine_for

    url = fresh_postgres_database(template=migrated_template)
    yield url
    engine_for(url).dispose()
    database_dropper.drop_later(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = free_redis_db()
    yield url
    release_redis_db(url)


@pytest.fixture
def teams_server() -> Iterator[CapturingHTTPSServer]:
    server = CapturingHTTPSServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server() -> Iterator[CapturingSMTPServer]:
    server = CapturingSMTPServer().start()
    yield server
    server.stop()


def channel_environment(teams: CapturingHTTPSServer, smtp: CapturingSMTPServer) -> dict[str, str]:
    return {
        "TEST_TEAMS_URL": f"workflows://127.0.0.1:{teams.port}/{WORKFLOW_ID}/{WORKFLOW_SIG}",
        "TEST_ALERT_EMAIL_URL": f"mailto://127.0.0.1:{smtp.port}?mode=insecure&from=vendorwatch@localhost"
        "&to=alerts@maple.example",
        "TEST_DIGEST_EMAIL_URL": f"mailto://127.0.0.1:{smtp.port}?mode=insecure&from=vendorwatch@localhost",
        "REQUESTS_CA_BUNDLE": str(teams.ca_bundle_path),
    }


@pytest.fixture
def vw_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    postgres_url: str,
    teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> Iterator[dict[str, str]]:
    """A complete vendorwatch environment (test config, PostgreSQL, loopback channels) for this process."""
    environment = {
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_DATABASE_URL": postgres_url,
        **channel_environment(teams_server, smtp_server),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VENDORWATCH_BROKER_URL", raising=False)
    reset_caches()
    yield environment
    reset_caches()


def reset_caches() -> None:
    from config.settings import get_settings
    from tasks.context import current_config

    get_settings.cache_clear()
    current_config.cache_clear()


def stack_env(data_dir: Path, postgres_url: str, redis_url: str, teams: CapturingHTTPSServer,
              smtp: CapturingSMTPServer, config_dir: Path = TEST_CONFIG) -> dict[str, str]:
    """The environment of a `vendorwatch` process on the whole real stack: PostgreSQL, Redis, the loopback Teams
    and SMTP servers."""
    return subprocess_env({
        "VENDORWATCH_CONFIG": str(config_dir),
        "VENDORWATCH_DATA_DIR": str(data_dir),
        "VENDORWATCH_DATABASE_URL": postgres_url,
        "VENDORWATCH_BROKER_URL": redis_url,
        **channel_environment(teams, smtp),
    })


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VENDORWATCH_")}
    environment.update(extra)
    environment["NO_PROXY"] = "127.0.0.1,localhost"
    return environment
