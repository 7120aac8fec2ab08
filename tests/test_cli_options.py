"""The command line as an operator types it, through the real `vendorwatch` executable: --json and --config after
the command as well as before it, a digest mailed to everyone only with --all, and a PostgreSQL database without
its schema met with the command to run instead of a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from storage.db import MIGRATIONS_DIR, engine_for, session_scope, upgrade
from storage.models import DigestRun
from tests.conftest import TEST_CONFIG, channel_environment, subprocess_env
from tests.support.services import drop_postgres_database, fresh_postgres_database
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.worker_process import vendorwatch

NOWHERE = "json://127.0.0.1:9/"  # the discard port: nothing listens, nothing is harmed
NO_SCHEMA = "the database has no schema yet: run `vendorwatch db upgrade`"
FEED = "practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,2026-10,9.7\n"
LEADERSHIP = ["manager@maple.example", "owner@maple.example"]


def environment(tmp_path: Path, database_url: str, channels: dict[str, str] | None = None) -> dict[str, str]:
    return subprocess_env({
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_DATABASE_URL": database_url,
        **(channels or dict.fromkeys(("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL"), NOWHERE)),
    })


def run(env: dict[str, str], *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    result = vendorwatch(*args, env=env, check=False)
    assert result.returncode == status, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def one_line(text: str) -> str:
    """Rich draws usage errors in a box and wraps at 80 columns when piped: the words, without the drawing."""
    return " ".join(line.strip(" │╭╮╰╯─") for line in text.splitlines())


@pytest.fixture
def env(tmp_path: Path, postgres_url: str) -> dict[str, str]:
    return environment(tmp_path, postgres_url)


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    path = tmp_path / "claimright-2026-10.csv"
    path.write_text(FEED, encoding="utf-8")
    return path


# -- --json and --config on either side of the command --------------------------------------------------------

SAME_EITHER_WAY = [("alerts", "list"), ("alerts", "silences"), ("feeds", "status")]


@pytest.mark.parametrize("command", SAME_EITHER_WAY, ids=" ".join)
def test_json_after_the_command_prints_what_json_before_it_prints(env: dict[str, str], command: tuple[str, ...]
                                                                  ) -> None:
    before = run(env, "--json", *command)
    after = run(env, *command, "--json")

    assert json.loads(after.stdout) == json.loads(before.stdout)


def test_ingest_and_evaluate_take_json_after_their_arguments(env: dict[str, str], feed: Path) -> None:
    ingested = json.loads(run(env, "ingest", "--no-evaluate", str(feed), "--json").stdout)
    [evaluation] = json.loads(run(env, "evaluate", "--as-of", "2026-11-15", "--json").stdout)

    assert [(f["status"], f["rows"]) for f in ingested["files"]] == [("accepted", 1)]
    assert evaluation["practice"] == "maple-clinic"
    assert ("denial_rate", "2026-10", 9.7) in [(c["kpi"], c["period"], c["value"]) for c in evaluation["changes"]]


@pytest.fixture
def birch_config(tmp_path: Path) -> Path:
    """The test configuration with its practice renamed: output that names birch-clinic read this directory."""
    directory = tmp_path / "birch-config"
    shutil.copytree(TEST_CONFIG, directory)
    practices = directory / "practices.yaml"
    practices.write_text(practices.read_text().replace("maple-clinic", "birch-clinic"))
    return directory


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_is_read_from_the_directory_given_before_or_after_the_command(
    env: dict[str, str], birch_config: Path, where: str
) -> None:
    given = ("--config", str(birch_config))
    arguments = (*given, "--json", "feeds", "status") if where == "before" else ("feeds", "status", *given, "--json")

    rows = json.loads(run(env, *arguments).stdout)

    assert [row["practice"] for row in rows] == ["birch-clinic"]


def test_each_command_lists_json_and_config_in_its_help(env: dict[str, str]) -> None:
    for command in (("alerts", "list"), ("ingest",), ("db", "upgrade"), ("digest",)):
        shown = run(env, *command, "--help").stdout
        assert "--json" in shown and "--config" in shown, command


# -- digest: everyone only when asked ------------------------------------------------------------------------


@pytest.fixture
def mail_env(tmp_path: Path, postgres_url: str, teams_server: CapturingHTTPSServer,
             smtp_server: CapturingSMTPServer) -> dict[str, str]:
    return environment(tmp_path, postgres_url, channel_environment(teams_server, smtp_server))


def digest_runs(database_url: str) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(DigestRun)) or 0)


def test_digest_without_a_target_is_a_usage_error_that_says_what_to_add_and_sends_nothing(
    mail_env: dict[str, str], smtp_server: CapturingSMTPServer, postgres_url: str
) -> None:
    result = run(mail_env, "digest", "--week", "2026-W48", status=2)

    said = one_line(result.stderr)
    assert "say which digests to send" in said, said
    assert "--practice" in said and "--region" in said and "--all" in said and "--preview" in said, said
    assert smtp_server.messages == []
    assert digest_runs(postgres_url) == 0


def test_digest_all_sends_every_practice_its_digest(
    mail_env: dict[str, str], smtp_server: CapturingSMTPServer, postgres_url: str
) -> None:
    result = run(mail_env, "digest", "--all", "--week", "2026-W48", "--json")

    [sent] = json.loads(result.stdout)
    assert (sent["key"], sent["status"]) == ("maple-clinic", "sent")
    [mail] = smtp_server.wait_for(1)
    assert sorted(mail.rcpt_tos) == LEADERSHIP


def test_digest_all_with_a_practice_is_refused_as_contradictory(mail_env: dict[str, str],
                                                                 smtp_server: CapturingSMTPServer) -> None:
    result = run(mail_env, "digest", "--all", "--practice", "maple-clinic", status=2)

    assert "--all sends every digest" in one_line(result.stderr)
    assert smtp_server.messages == []


def test_a_preview_without_a_target_writes_every_digest_and_sends_nothing(
    mail_env: dict[str, str], smtp_server: CapturingSMTPServer, tmp_path: Path
) -> None:
    run(mail_env, "digest", "--preview", str(tmp_path / "preview"), "--week", "2026-W48")

    assert (tmp_path / "preview" / "digest-maple-clinic-2026-W48.html").is_file()
    assert smtp_server.messages == []


# -- a PostgreSQL database before `db upgrade` ------------------------------------------------------------------


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A PostgreSQL database no migration has touched, as an operator has before `vendorwatch db upgrade`."""
    url = fresh_postgres_database()
    yield url
    engine_for(url).dispose()
    drop_postgres_database(url)


def every_migration() -> list[str]:
    """The revisions this vendorwatch ships, oldest first, as Alembic reads them."""
    return [script.revision for script in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()][::-1]


def commands_that_read_the_database(feed: Path) -> list[tuple[str, ...]]:
    return [("alerts", "list"), ("alerts", "ack", "1"), ("feeds", "status"), ("evaluate",),
            ("digest", "--practice", "maple-clinic"), ("ingest", "--no-evaluate", str(feed)),
            ("rerun", "evaluate")]


def test_every_command_on_a_database_without_schema_says_to_run_db_upgrade(
    tmp_path: Path, empty_postgres_url: str, feed: Path
) -> None:
    env = environment(tmp_path, empty_postgres_url)

    for command in commands_that_read_the_database(feed):
        result = run(env, *command, status=1)
        assert NO_SCHEMA in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr, (command, result.stderr)


def test_db_upgrade_says_which_migrations_it_applied_and_then_that_it_is_up_to_date(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    env = environment(tmp_path, empty_postgres_url)
    every = every_migration()

    first = run(env, "db", "upgrade")
    again = run(env, "db", "upgrade", "--json")

    assert f"applied {every[0]} -> {every[-1]}" in first.stdout
    assert "up to date" not in first.stdout
    assert json.loads(again.stdout) == {"status": "up to date", "revision": every[-1], "applied": []}
    assert json.loads(run(env, "alerts", "list", "--json").stdout) == []


def test_a_schema_behind_this_vendorwatch_is_named_and_db_upgrade_applies_the_rest(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    *earlier, head = every_migration()
    upgrade(empty_postgres_url, earlier[-1])
    env = environment(tmp_path, empty_postgres_url)

    refused = run(env, "alerts", "list", status=1)
    upgraded: dict[str, Any] = json.loads(run(env, "db", "upgrade", "--json").stdout)

    assert f"the database schema is at {earlier[-1]}, this vendorwatch needs {head}" in refused.stderr
    assert upgraded == {"status": "upgraded", "from": earlier[-1], "to": head, "applied": [head]}
