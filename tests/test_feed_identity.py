"""A duplicate is the same bytes for the same practice and vendor, as the file or its inbox folder (or --practice
and --vendor) names them; the same bytes for another practice or vendor are that one's data and are stored.

Every ingest path where the practice can come from outside the file: the inbox, `vendorwatch ingest --practice`,
the HTTPS pull, and pulse exports. Real files, real PostgreSQL, the real CLI and a real TLS server."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from config import BUNDLED_DIR, Config, load_config
from config.settings import Settings
from feeds.pull import pull_vendor
from intake.inbox import process_inbox_file
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import FeedFile, Observation, PulseSurvey
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_pull import CHANNEL_ENV, FEED_PATH, NOW, TOKEN_ENV, Feed, feed, recent_months, server, trusted
from tests.worker_process import vendorwatch
from worker.demo.run import DATA_DIR

__all__ = ["feed", "server", "trusted"]  # pytest fixtures borrowed from test_pull

[MONTH] = recent_months(1)
ONE_ROW = f"kpi,period,value\ndays_in_ar,{MONTH},41.5\n"
Stored = tuple[str, str, str, str, float]


def stored(url: str) -> set[Stored]:
    with session_scope(url) as session:
        rows = session.execute(select(Observation.practice_id, Observation.vendor_id, Observation.kpi,
                                      Observation.period, Observation.value))
        return {tuple(row) for row in rows}  # type: ignore[misc]


def drop(settings: Settings, practice: str, vendor: str, body: str = ONE_ROW, name: str = "feed.csv") -> Path:
    path = settings.inbox / practice / vendor / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    settled = time.time() - 30
    os.utime(path, (settled, settled))
    return path


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=postgres_url)


def test_the_same_file_in_two_practices_inbox_folders_is_stored_for_each_and_evaluated_for_each(
    settings: Settings, postgres_url: str
) -> None:
    config = load_config(BUNDLED_DIR)

    first = process_inbox_file(drop(settings, "oakridge-fm", "acme-billing"), config, settings)
    second = process_inbox_file(drop(settings, "lakeside-peds", "acme-billing"), config, settings)

    assert first is not None and (first.status, first.practices) == ("accepted", ["oakridge-fm"])
    assert second is not None and (second.status, second.practices) == ("accepted", ["lakeside-peds"]), (
        "the evaluation the ingest asks for is of the practice the file was dropped for")
    assert stored(postgres_url) == {("oakridge-fm", "acme-billing", "days_in_ar", MONTH, 41.5),
                                    ("lakeside-peds", "acme-billing", "days_in_ar", MONTH, 41.5)}


def test_the_same_file_for_two_vendors_of_one_practice_is_stored_for_each(
    settings: Settings, postgres_url: str
) -> None:
    config = load_config(BUNDLED_DIR)

    first = process_inbox_file(drop(settings, "oakridge-fm", "acme-billing"), config, settings)
    second = process_inbox_file(drop(settings, "oakridge-fm", "brightcall"), config, settings)

    assert first is not None and second is not None
    assert (first.status, second.status) == ("accepted", "accepted")
    assert stored(postgres_url) == {("oakridge-fm", "acme-billing", "days_in_ar", MONTH, 41.5),
                                    ("oakridge-fm", "brightcall", "days_in_ar", MONTH, 41.5)}


def test_the_same_file_for_the_same_practice_and_vendor_again_is_a_duplicate(
    settings: Settings, postgres_url: str
) -> None:
    config = load_config(BUNDLED_DIR)
    process_inbox_file(drop(settings, "lakeside-peds", "acme-billing"), config, settings)
    process_inbox_file(drop(settings, "oakridge-fm", "acme-billing"), config, settings)

    again = process_inbox_file(drop(settings, "lakeside-peds", "acme-billing", name="again.csv"), config, settings)

    assert again is not None and (again.status, again.practices) == ("duplicate", ["lakeside-peds"])
    with session_scope(postgres_url) as session:
        assert len(session.scalars(select(FeedFile)).all()) == 2


def test_a_file_that_names_its_practice_itself_is_a_duplicate_only_of_the_same_bytes(
    tmp_path: Path, postgres_url: str
) -> None:
    config = load_config(BUNDLED_DIR)
    named = tmp_path / "named.csv"
    named.write_text(f"practice,vendor,kpi,period,value\noakridge-fm,acme-billing,days_in_ar,{MONTH},40\n")

    first = ingest_path(named, config, database_url=postgres_url)
    again = ingest_path(named, config, database_url=postgres_url)

    assert (first.status, again.status, again.practices) == ("accepted", "duplicate", ["oakridge-fm"])


def test_the_cli_stores_the_same_file_for_each_practice_it_is_given_for(tmp_path: Path, postgres_url: str) -> None:
    env = subprocess_env({"VENDORWATCH_DATABASE_URL": postgres_url, "VENDORWATCH_CONFIG": str(BUNDLED_DIR),
                          "VENDORWATCH_DATA_DIR": str(tmp_path / "var")})
    path = tmp_path / "acme.csv"
    path.write_text(ONE_ROW)
    outcomes: dict[str, list[tuple[str, list[str], list[str]]]] = {}
    for practice in ("oakridge-fm", "lakeside-peds", "oakridge-fm"):
        result = vendorwatch("--json", "ingest", str(path), "--practice", practice, "--vendor", "acme-billing",
                             env=env, timeout=120)
        output = json.loads(result.stdout)
        [file] = output["files"]
        outcomes.setdefault(practice, []).append(
            (file["status"], file["practices"], [entry["practice"] for entry in output["evaluations"]]))

    assert outcomes == {
        "oakridge-fm": [("accepted", ["oakridge-fm"], ["oakridge-fm"]), ("duplicate", ["oakridge-fm"], [])],
        "lakeside-peds": [("accepted", ["lakeside-peds"], ["lakeside-peds"])],
    }
    assert stored(postgres_url) == {("oakridge-fm", "acme-billing", "days_in_ar", MONTH, 41.5),
                                    ("lakeside-peds", "acme-billing", "days_in_ar", MONTH, 41.5)}


def two_practice_pull_config(directory: Path, base_url: str) -> Path:
    """tests/fixtures/config with a second practice; both pull claimright's feed from the same URL."""
    directory.mkdir(parents=True, exist_ok=True)
    practices = yaml.safe_load((TEST_CONFIG / "practices.yaml").read_text())
    maple = practices["practices"][0]
    maple["vendors"][0]["pull"] = {"url": base_url + FEED_PATH, "auth_header": "Authorization",
                                   "auth_env": TOKEN_ENV}
    birch = copy.deepcopy(maple)
    birch.update(id="birch-clinic", name="Birch Clinic")
    practices["practices"].append(birch)
    (directory / "practices.yaml").write_text(yaml.safe_dump(practices, sort_keys=False))
    shutil.copy(TEST_CONFIG / "channels.yaml", directory / "channels.yaml")
    return directory


@pytest.mark.usefixtures("trusted")
def test_the_same_pulled_body_for_two_practices_is_stored_for_each(
    tmp_path: Path, postgres_url: str, settings: Settings, server: CapturingHTTPSServer, feed: Feed,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CHANNEL_ENV.items():
        monkeypatch.setenv(name, value)
    config: Config = load_config(two_practice_pull_config(tmp_path / "config", server.base_url))
    feed.body = ONE_ROW.encode()
    results = []
    for practice in config.practices:
        with session_scope(postgres_url) as session:
            outcome = pull_vendor(practice, practice.vendors[0], settings.inbox, session, NOW)
        assert outcome.path is not None
        os.utime(outcome.path, (time.time() - 30, time.time() - 30))
        results.append(process_inbox_file(outcome.path, config, settings))

    assert [(r.status, r.practices) for r in results if r is not None] == [
        ("accepted", ["maple-clinic"]), ("accepted", ["birch-clinic"])]
    assert stored(postgres_url) == {("maple-clinic", "claimright", "days_in_ar", MONTH, 41.5),
                                    ("birch-clinic", "claimright", "days_in_ar", MONTH, 41.5)}


def test_the_same_pulse_export_for_two_practices_is_stored_for_each(tmp_path: Path, postgres_url: str) -> None:
    config = load_config(BUNDLED_DIR)
    export = DATA_DIR / "oakridge-fm" / "pulse-2026-10-30.csv"
    today = dt.date(2026, 11, 30)

    first = ingest_path(export, config, practice="oakridge-fm", database_url=postgres_url, today=today)
    second = ingest_path(export, config, practice="lakeside-peds", database_url=postgres_url, today=today)
    again = ingest_path(export, config, practice="lakeside-peds", database_url=postgres_url, today=today)

    assert [(r.status, r.practices) for r in (first, second, again)] == [
        ("accepted", ["oakridge-fm"]), ("accepted", ["lakeside-peds"]), ("duplicate", ["lakeside-peds"])]
    with session_scope(postgres_url) as session:
        assert sorted(session.scalars(select(PulseSurvey.practice_id))) == ["lakeside-peds", "oakridge-fm"]
    assert {practice for practice, *_ in stored(postgres_url)} == {"oakridge-fm", "lakeside-peds"}
