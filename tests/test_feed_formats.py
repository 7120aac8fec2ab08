"""Wide CSV and JSON feeds, and the streaming store on both databases."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from config import BUNDLED_DIR, Config, load_config
from intake.ingest import ingest_path
from storage.db import engine_for, session_scope, upgrade
from storage.models import Observation, ObservationRevision

TODAY = dt.date(2026, 11, 23)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
        return
    url = f"sqlite:///{tmp_path / 'feeds.sqlite'}"
    upgrade(url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def config_with_wide_columns(tmp_path: Path) -> Config:
    """The bundled config, with Acme's export headers mapped for oakridge-fm (as an operator would)."""
    directory = tmp_path / "config"
    directory.mkdir()
    columns = '{"Month": period, "Days in AR": days_in_ar, "Denials %": denial_rate}'
    practices = (BUNDLED_DIR / "practices.yaml").read_text().replace(
        "        fee_pct: 6.5\n", f"        fee_pct: 6.5\n        columns: {columns}\n"
    )
    (directory / "practices.yaml").write_text(practices)
    (directory / "channels.yaml").write_text((BUNDLED_DIR / "channels.yaml").read_text())
    return load_config(directory)


def stored(database_url: str) -> list[tuple[str, str, str, float]]:
    with session_scope(database_url) as session:
        rows = session.execute(select(Observation.kpi, Observation.period, Observation.segment, Observation.value)
                               .order_by(Observation.kpi, Observation.period))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_wide_csv_maps_vendor_headers_to_kpis_and_skips_empty_cells(
    tmp_path: Path, database_url: str, config_with_wide_columns: Config
) -> None:
    feed = tmp_path / "acme-export.csv"
    feed.write_text("Month,Days in AR,Denials %,clean_claim_rate\n2026-09,44.1,8.2%,\n2026-10,41.6,9.6%,96.3\n")
    result = ingest_path(feed, config_with_wide_columns, practice="oakridge-fm", vendor="acme-billing", today=TODAY,
                         database_url=database_url)
    assert result.status == "accepted", result.problems
    assert stored(database_url) == [
        ("clean_claim_rate", "2026-10", "all", 96.3),
        ("days_in_ar", "2026-09", "all", 44.1), ("days_in_ar", "2026-10", "all", 41.6),
        ("denial_rate", "2026-09", "all", 8.2), ("denial_rate", "2026-10", "all", 9.6),
    ]


def test_a_wide_csv_error_names_the_vendors_own_column(tmp_path: Path, database_url: str,
                                                       config_with_wide_columns: Config) -> None:
    feed = tmp_path / "acme-export.csv"
    feed.write_text("Month,Days in AR,Denials %\n2026-10,forty,9.6\n2026-10,41,9.6\n")
    result = ingest_path(feed, config_with_wide_columns, practice="oakridge-fm", vendor="acme-billing", today=TODAY,
                         database_url=database_url)
    assert result.status == "rejected"
    assert [(p.row, p.column, p.value) for p in result.problems] == [(2, "Days in AR", "forty"),
                                                                     (3, "Month", "2026-10")]
    assert stored(database_url) == []


def test_a_wide_csv_with_an_unmapped_column_is_refused_with_a_suggestion(tmp_path: Path, database_url: str) -> None:
    feed = tmp_path / "export.csv"
    feed.write_text("period,days_in_ar,denial_rat\n2026-10,41,9.6\n")
    result = ingest_path(feed, load_config(BUNDLED_DIR), practice="oakridge-fm", vendor="acme-billing", today=TODAY,
                         database_url=database_url)
    assert result.status == "rejected"
    [problem] = result.problems
    assert (problem.row, problem.column) == (1, "denial_rat") and "did you mean denial_rate" in problem.message


def test_a_json_feed_is_stored_and_its_errors_name_the_entry_and_field(tmp_path: Path, database_url: str) -> None:
    config = load_config(BUNDLED_DIR)
    good = tmp_path / "feed.json"
    good.write_text(json.dumps({"practice": "lakeside-peds", "vendor": "verifyfirst", "observations": [
        {"kpi": "eligibility_verified_rate", "period": "2026-10", "value": 97.4},
        {"kpi": "check_in_surprises", "period": "2026-10", "value": "2.2", "segment": "location:North"},
    ]}))
    assert ingest_path(good, config, today=TODAY, database_url=database_url).status == "accepted"
    assert stored(database_url) == [("check_in_surprises", "2026-10", "location:North", 2.2),
                                    ("eligibility_verified_rate", "2026-10", "all", 97.4)]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"practice": "lakeside-peds", "vendor": "verifyfirst", "observations": [
        {"kpi": "eligibility_verified_rate", "period": "2026-11", "value": 101},
        {"kpi": "check_in_surprises", "period": "2026-10", "value": 1, "patient": "x"},
    ]}))
    result = ingest_path(bad, config, today=TODAY, database_url=database_url)
    assert [(p.row, p.column) for p in result.problems] == [(1, "value"), (2, None)]
    assert "unknown field(s) patient" in str(result.problems[1].value)


def test_invalid_json_is_rejected_naming_the_line(tmp_path: Path, database_url: str) -> None:
    feed = tmp_path / "broken.json"
    feed.write_text('{"practice": "lakeside-peds",\n "observations": [\n  {"kpi": }\n ]}\n')
    result = ingest_path(feed, load_config(BUNDLED_DIR), today=TODAY, database_url=database_url)
    assert result.status == "rejected"
    assert result.problems[0].row == 3 and "not valid JSON" in result.problems[0].message


def test_a_correction_supersedes_the_value_and_keeps_its_history_on_both_databases(
    tmp_path: Path, database_url: str
) -> None:
    config = load_config(BUNDLED_DIR)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("practice,vendor,kpi,period,value\noakridge-fm,acme-billing,denial_rate,2026-10,9.6\n"
                     "oakridge-fm,acme-billing,days_in_ar,2026-10,41.6\n")
    second.write_text("practice,vendor,kpi,period,value\noakridge-fm,acme-billing,denial_rate,2026-10,8.9\n"
                      "oakridge-fm,acme-billing,days_in_ar,2026-10,41.6\n")
    assert ingest_path(first, config, today=TODAY, database_url=database_url).status == "accepted"
    result = ingest_path(second, config, today=TODAY, database_url=database_url)
    assert result.counts is not None
    assert (result.counts.inserted, result.counts.revised, result.counts.unchanged) == (0, 1, 1)
    assert ("denial_rate", "2026-10", "all", 8.9) in stored(database_url)
    with session_scope(database_url) as session:
        [revision] = session.scalars(select(ObservationRevision)).all()
        assert (revision.old_value, revision.new_value) == (9.6, 8.9)
        assert revision.old_feed_file_id != revision.new_feed_file_id
    assert ingest_path(second, config, today=TODAY, database_url=database_url).status == "duplicate"


def test_duplicates_within_a_streamed_file_name_the_earlier_row(tmp_path: Path, database_url: str) -> None:
    feed = tmp_path / "dup.csv"
    feed.write_text("practice,vendor,kpi,period,value\n" + "oakridge-fm,acme-billing,days_in_ar,2026-09,44\n"
                    + "oakridge-fm,acme-billing,days_in_ar,2026-10,41\n" * 3)
    result = ingest_path(feed, load_config(BUNDLED_DIR), today=TODAY, database_url=database_url)
    assert [(p.row, p.column, p.message) for p in result.problems] == [
        (4, "period", "days_in_ar for this period and segment already given in row 3"),
        (5, "period", "days_in_ar for this period and segment already given in row 3"),
    ]
    assert stored(database_url) == []


def test_a_file_that_stops_being_readable_csv_is_rejected_at_that_row(tmp_path: Path, database_url: str) -> None:
    feed = tmp_path / "huge-cell.csv"
    feed.write_text("practice,vendor,kpi,period,value\noakridge-fm,acme-billing,days_in_ar,2026-10,41\n"
                    f'oakridge-fm,acme-billing,days_in_ar,2026-09,"{"9" * 200_000}"\n')
    result = ingest_path(feed, load_config(BUNDLED_DIR), today=TODAY, database_url=database_url)
    assert result.status == "rejected"
    assert [(p.row, p.column) for p in result.problems] == [(3, None)]
    assert "not readable CSV" in result.problems[0].message
    assert stored(database_url) == []
