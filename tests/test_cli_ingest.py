"""`vendorwatch ingest` through the real command line: exit codes, what an operator reads on stderr, the --json
errors, and what the database holds afterwards, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import session_scope
from storage.models import FeedFile, FeedRejection, Observation
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.worker_process import vendorwatch

HEADER = "practice,vendor,kpi,period,value\n"
GOOD_FEED = (
    HEADER
    + "maple-clinic,claimright,denial_rate,2025-10,9.8%\n"
    + "maple-clinic,claimright,days_in_ar,2025-10,41\n"
    + 'maple-clinic,claimright,net_collections,2025-10,"$48,250.00"\n'
)
BAD_FEED = (
    HEADER
    + "maple-clinic,claimright,denial_rate,2025-10,9.8\n"
    + "maple-clinic,claimright,days_in_ar,2025-10,forty-one\n"
    + "maple-clinic,claimright,denial_rat,2025-11,9.1\n"
)
BAD_FEED_ERRORS = [
    {"row": 3, "column": "value", "value": "forty-one", "message": "not a number"},
    {"row": 4, "column": "kpi", "value": "denial_rat", "message": "unknown KPI (did you mean denial_rate?)"},
]


def environment(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    """The test configuration; its channels point at a port nothing listens on (and --no-evaluate sends nothing)."""
    settings = {
        "VENDORWATCH_CONFIG": str(TEST_CONFIG),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "TEST_TEAMS_URL": "json://127.0.0.1:9/teams",
        "TEST_ALERT_EMAIL_URL": "json://127.0.0.1:9/email",
        "TEST_DIGEST_EMAIL_URL": "json://127.0.0.1:9/digest",
    }
    if database_url is not None:
        settings["VENDORWATCH_DATABASE_URL"] = database_url
    return subprocess_env(settings)


@pytest.fixture
def postgres_env(tmp_path: Path, postgres_url: str) -> dict[str, str]:
    return environment(tmp_path, postgres_url)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def count(database_url: str, model: type) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def one_line(stderr: str) -> str:
    """Rich wraps stderr at 80 columns when it is not a terminal; undo the wrapping to read whole messages."""
    return stderr.replace("\n", "")


def test_a_bad_file_exits_3_naming_file_row_column_and_reason_and_stores_nothing(
    tmp_path: Path, postgres_url: str, postgres_env: dict[str, str]
) -> None:
    path = write(tmp_path / "claimright-2025-10.csv", BAD_FEED)

    result = vendorwatch("ingest", "--no-evaluate", str(path), env=postgres_env, check=False)

    assert result.returncode == 3, result.stdout + result.stderr
    stderr = one_line(result.stderr)
    assert f"{path}: row 3, column value ('forty-one'): not a number" in stderr
    assert f"{path}: row 4, column kpi ('denial_rat'): unknown KPI (did you mean denial_rate?)" in stderr
    assert "rejected" in result.stdout
    assert "2 problem(s)" in result.stdout
    assert count(postgres_url, Observation) == 0
    assert count(postgres_url, FeedFile) == 0
    with session_scope(postgres_url) as session:
        rejection = session.scalars(select(FeedRejection)).one()
        assert rejection.filename == path.name
        assert rejection.errors == BAD_FEED_ERRORS


def test_json_output_lists_every_error_as_row_column_value_message(
    tmp_path: Path, postgres_url: str, postgres_env: dict[str, str]
) -> None:
    path = write(tmp_path / "claimright-2025-10.csv", BAD_FEED)

    result = vendorwatch("--json", "ingest", "--no-evaluate", str(path), env=postgres_env, check=False)

    assert result.returncode == 3, result.stdout + result.stderr
    output = json.loads(result.stdout)
    assert [(f["path"], f["status"], f["rows"]) for f in output["files"]] == [(str(path), "rejected", 0)]
    assert output["files"][0]["errors"] == BAD_FEED_ERRORS
    assert output["evaluations"] == []
    assert count(postgres_url, Observation) == 0


def test_a_good_file_exits_0_and_stores_its_rows(
    tmp_path: Path, postgres_url: str, postgres_env: dict[str, str]
) -> None:
    path = write(tmp_path / "claimright-2025-10.csv", GOOD_FEED)

    result = vendorwatch("--json", "ingest", "--no-evaluate", str(path), env=postgres_env, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    (file,) = json.loads(result.stdout)["files"]
    assert (file["status"], file["rows"], file["inserted"], file["revised"], file["errors"]) == (
        "accepted",
        3,
        3,
        0,
        [],
    )
    with session_scope(postgres_url) as session:
        values = {o.kpi: o.value for o in session.scalars(select(Observation))}
    assert values == {"denial_rate": 9.8, "days_in_ar": 41.0, "net_collections": 48250.0}


def test_a_good_and_a_bad_file_together_exit_3_and_keep_the_good_one(
    tmp_path: Path, postgres_url: str, postgres_env: dict[str, str]
) -> None:
    good = write(tmp_path / "good.csv", GOOD_FEED)
    bad = write(tmp_path / "bad.csv", BAD_FEED)

    result = vendorwatch("ingest", "--no-evaluate", str(good), str(bad), env=postgres_env, check=False)

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"{bad}: row 3, column value" in one_line(result.stderr)
    assert str(good) not in result.stderr
    assert count(postgres_url, Observation) == 3
    assert count(postgres_url, FeedRejection) == 1


def test_a_bad_file_on_the_embedded_sqlite_exits_3_and_leaves_the_observation_table_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "claimright-2025-10.csv", BAD_FEED)
    env = environment(tmp_path, database_url=None)

    result = vendorwatch("ingest", "--no-evaluate", str(path), env=env, check=False)

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"{path}: row 3, column value ('forty-one'): not a number" in one_line(result.stderr)
    database = tmp_path / "var" / "vendorwatch.sqlite"
    assert database.is_file(), "the CLI creates and migrates the SQLite database under VENDORWATCH_DATA_DIR"
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("select count(*) from observation").fetchone() == (0,)
        assert connection.execute("select count(*) from feed_file").fetchone() == (0,)
        (errors,) = connection.execute("select errors from feed_rejection").fetchone()
    assert json.loads(errors) == BAD_FEED_ERRORS
