"""The Alembic migrations build exactly the schema the models describe, on SQLite and on PostgreSQL, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from storage.db import downgrade, engine_for, upgrade
from storage.models import Base
from tests.conftest import subprocess_env
from tests.support.services import drop_postgres_database, fresh_postgres_database
from tests.worker_process import vendorwatch

# The unique constraints that carry idempotency (ARCHITECTURE.md, "Idempotency is a database fact"):
# table -> (constraint name or None when the model leaves it unnamed, its columns in order).
IDEMPOTENCY_CONSTRAINTS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "feed_file": ("uq_feed_file_identity", ("sha256", "practice_key", "vendor_key")),
    "series": ("uq_series_key", ("practice_id", "vendor_id", "kpi", "segment")),
    "alert": ("uq_alert_identity", ("rule", "practice_id", "vendor_id", "kpi", "segment")),
    "digest_run": ("uq_digest_practice_week", ("practice_id", "week")),
}
# And the ones carried by a primary key: a stored value is unique per series and period (its first and last day).
IDEMPOTENCY_KEYS = {"observation_value": ("series_id", "period_start", "period_end")}
MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """An EMPTY PostgreSQL database (no migrations applied), dropped afterwards."""
    url = fresh_postgres_database()
    yield url
    engine_for(url).dispose()
    drop_postgres_database(url)


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'vendorwatch.sqlite'}"
    yield url
    engine_for(url).dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    fixture = "empty_sqlite_url" if request.param == "sqlite" else "empty_postgres_url"
    return str(request.getfixturevalue(fixture))


def table_names(url: str) -> set[str]:
    return set(inspect(engine_for(url)).get_table_names())


def unique_constraints(url: str, table: str) -> list[tuple[str | None, tuple[str, ...]]]:
    """(name, columns) of every unique constraint, plus unique indexes (how some backends report them)."""
    inspector = inspect(engine_for(url))
    found = [(c["name"], tuple(c["column_names"])) for c in inspector.get_unique_constraints(table)]
    found += [
        (i["name"], tuple(str(column) for column in i["column_names"]))
        for i in inspector.get_indexes(table)
        if i["unique"]
    ]
    return found


def assert_idempotency_constraints_exist(url: str) -> None:
    for table, (name, columns) in IDEMPOTENCY_CONSTRAINTS.items():
        found = unique_constraints(url, table)
        assert columns in [found_columns for _, found_columns in found], (
            f"{table}: no unique constraint on {columns}; found {found}"
        )
        if name is not None:
            assert (name, columns) in found, f"{table}: constraint {name} on {columns} missing; found {found}"
    for table, columns in IDEMPOTENCY_KEYS.items():
        key = inspect(engine_for(url)).get_pk_constraint(table)["constrained_columns"]
        assert tuple(key) == columns, f"{table}: primary key {key}, not {columns}"


def test_upgrade_creates_every_model_table(empty_database_url: str) -> None:
    assert not table_names(empty_database_url) & MODEL_TABLES

    upgrade(empty_database_url)

    assert table_names(empty_database_url) >= MODEL_TABLES
    assert "alembic_version" in table_names(empty_database_url)


def test_upgrade_creates_the_unique_constraints_that_carry_idempotency(empty_database_url: str) -> None:
    upgrade(empty_database_url)

    assert_idempotency_constraints_exist(empty_database_url)


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(empty_database_url: str) -> None:
    upgrade(empty_database_url)

    downgrade(empty_database_url, "base")

    assert table_names(empty_database_url) <= {"alembic_version"}

    upgrade(empty_database_url)

    assert table_names(empty_database_url) >= MODEL_TABLES
    assert_idempotency_constraints_exist(empty_database_url)


def test_migrations_match_the_models_on_postgresql(empty_postgres_url: str) -> None:
    """A model change without a migration shows up here as a difference."""
    upgrade(empty_postgres_url)

    with engine_for(empty_postgres_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_db_upgrade_command_migrates_an_empty_postgresql_database(empty_postgres_url: str, tmp_path: Path) -> None:
    # The README form of the URL (plain postgresql://), as an operator would export it.
    libpq_url = empty_postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    env = subprocess_env({"VENDORWATCH_DATABASE_URL": libpq_url, "VENDORWATCH_DATA_DIR": str(tmp_path / "var")})

    result = vendorwatch("db", "upgrade", env=env, check=False, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert table_names(empty_postgres_url) >= MODEL_TABLES
    assert_idempotency_constraints_exist(empty_postgres_url)


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    with engine_for(url).connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


OLD_OBSERVATIONS = (
    "INSERT INTO observation (id, practice_id, vendor_id, kpi, period, period_start, period_end, segment, value,"
    " feed_file_id, updated_at) VALUES"
    " (1, 'oakridge-fm', 'acme-billing', 'denial_rate', '2026-03', '2026-03-01', '2026-03-31', 'all', 10.4, 2, :at),"
    " (2, 'oakridge-fm', 'acme-billing', 'denial_rate', '2026-W10', '2026-03-02', '2026-03-08', 'all', 9.1, 1, :at),"
    " (3, 'oakridge-fm', 'acme-billing', 'days_in_ar', '2026-03', '2026-03-01', '2026-03-31', 'payer:Aetna', 41, 1,"
    " :at)"
)


def test_0008_moves_every_value_and_revision_to_the_series_layout_and_back(empty_database_url: str) -> None:
    """Stored values and their history survive the move to series + observation_value, and the way back."""
    url = empty_database_url
    upgrade(url, "0007")
    with engine_for(url).begin() as connection:
        connection.execute(text("INSERT INTO feed_file (id, sha256, filename, source, rows, received_at) VALUES"
                                " (1, 'a', 'march.csv', 'cli', 3, :first), (2, 'b', 'fix.csv', 'cli', 1, :second)"),
                           {"first": "2026-04-02 08:00:00+00", "second": "2026-04-09 08:00:00+00"})
        connection.execute(text(OLD_OBSERVATIONS), {"at": "2026-04-09 08:00:00+00"})
        connection.execute(text("INSERT INTO observation_revision (id, observation_id, old_value, new_value,"
                                " old_feed_file_id, new_feed_file_id, revised_at) VALUES (7, 1, 9.8, 10.4, 1, 2, :at)"),
                           {"at": "2026-04-09 08:00:00+00"})
    view = ("SELECT practice_id, vendor_id, kpi, period, period_start, period_end, segment, value, feed_file_id"
            " FROM observation ORDER BY kpi, period")
    before = rows(url, view)

    upgrade(url)

    assert rows(url, view) == before
    assert rows(url, "SELECT count(*) FROM series") == [(2,)], "one series per practice, vendor, KPI and segment"
    revisions = rows(url, "SELECT s.kpi, r.period_start, r.old_value, r.new_value, r.old_feed_file_id,"
                          " r.new_feed_file_id FROM observation_revision r JOIN series s ON s.id = r.series_id")
    assert [(kpi, str(start), *rest) for kpi, start, *rest in revisions] == [
        ("denial_rate", "2026-03-01", 9.8, 10.4, 1, 2)]

    downgrade(url, "0007")

    assert rows(url, view) == before
    assert rows(url, "SELECT o.kpi, o.period, r.old_value, r.new_value FROM observation_revision r"
                     " JOIN observation o ON o.id = r.observation_id") == [("denial_rate", "2026-03", 9.8, 10.4)]


def test_a_value_whose_period_label_is_missing_is_still_read(empty_database_url: str) -> None:
    """The view's join to period_label is a left join: a value is never left out of reads for want of a label."""
    url = empty_database_url
    upgrade(url)
    with engine_for(url).begin() as connection:
        connection.execute(text("INSERT INTO series (id, practice_id, vendor_id, kpi, segment)"
                                " VALUES (1, 'oakridge-fm', 'acme-billing', 'days_in_ar', 'all')"))
        connection.execute(text("INSERT INTO period_label (period_start, period_end, label)"
                                " VALUES ('2026-03-01', '2026-03-31', '2026-03')"))
        connection.execute(text("INSERT INTO observation_value (series_id, period_start, period_end, value,"
                                " feed_file_id) VALUES (1, '2026-03-01', '2026-03-31', 41, 1),"
                                " (1, '2026-04-01', '2026-04-30', 39.5, 1)"))

    assert rows(url, "SELECT period, value FROM observation ORDER BY period_start") == [
        ("2026-03", 41.0), ("2026-04-01..2026-04-30", 39.5)]


def test_0010_keys_each_stored_file_on_its_bytes_and_the_practice_and_vendor_it_was_for(
    empty_database_url: str,
) -> None:
    """Files stored before keep the names they had (none: ''), and the same bytes may then be stored for another
    practice; the way back refuses to squeeze two practices' copies under the old key."""
    url = empty_database_url
    upgrade(url, "0009")
    with engine_for(url).begin() as connection:
        connection.execute(text("INSERT INTO feed_file (id, sha256, filename, source, practice_id, vendor_id, rows,"
                                " received_at) VALUES (1, 'a', 'inbox.csv', 'inbox', 'oakridge-fm', 'acme-billing',"
                                " 1, :at), (2, 'b', 'named.csv', 'cli', NULL, NULL, 1, :at)"),
                           {"at": "2026-04-02 08:00:00+00"})

    upgrade(url)

    assert rows(url, "SELECT id, practice_key, vendor_key FROM feed_file ORDER BY id") == [
        (1, "oakridge-fm", "acme-billing"), (2, "", "")]
    with engine_for(url).begin() as connection:
        connection.execute(text("INSERT INTO feed_file (id, sha256, filename, source, practice_id, vendor_id,"
                                " practice_key, vendor_key, rows, received_at) VALUES (3, 'a', 'inbox.csv', 'inbox',"
                                " 'lakeside-peds', 'acme-billing', 'lakeside-peds', 'acme-billing', 1, :at)"),
                           {"at": "2026-04-03 08:00:00+00"})
    with pytest.raises(Exception, match="more than one practice"):
        downgrade(url, "0009")
    with engine_for(url).begin() as connection:
        connection.execute(text("DELETE FROM feed_file WHERE id = 3"))

    downgrade(url, "0009")

    assert rows(url, "SELECT id, sha256 FROM feed_file ORDER BY id") == [(1, "a"), (2, "b")]
    assert (None, ("sha256",)) in [(None, columns) for _, columns in unique_constraints(url, "feed_file")]
