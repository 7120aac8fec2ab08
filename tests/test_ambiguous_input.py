"""Ambiguous input is refused, never guessed: a header naming a column twice, a JSON key given twice, numbers
Python's float() reads but no person writes (4_1, nan, full-width digits), periods outside any real feed's reach
(1900-01, 1026 to 2026) and values beyond any real practice (1e308 dollars).

A long CSV on PostgreSQL may be stored by two paths (streamed, row by row); the streamed one only ever accepts.
Each bad file goes through both, and through SQLite (the demo's database), and must be rejected the same way
everywhere, with its row, column and reason, and store nothing. Each bad file has a clean twin that the fast path
does accept: so the refusal is the rule's, not a shape the fast path never reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from config import BUNDLED_DIR, Config, load_config
from feeds.rules import read_number
from storage.db import session_scope
from storage.models import Observation
from tests.support.every_path import FAST, HEADER, PRACTICE, SLOW, VENDOR, ingest, months, observations, path_databases

SPAN_HEADER = "practice,vendor,kpi,period_start,period_end,value,segment"
CHECKED_IN = {"streamed": "streamed", "python-postgresql": "python", "python-sqlite": "python"}


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A database per path, so each sees only its own files and every clean twin is a first delivery."""
    yield from path_databases("vw_ambiguous", tmp_path_factory.mktemp("ambiguous"))


_periods = months()




@dataclass(frozen=True)
class Case:
    """A long CSV with one ambiguity, its clean twin, and where and why it must be refused."""

    bad: bytes
    clean: bytes
    row: int
    column: str
    reason: str


def value_case(bad: str, clean: str, reason: str, kpi: str = "days_in_ar") -> Case:
    """Row 3 of three carries the value; row 2 is clean, so a fast path has begun before it meets row 3."""
    period = next(_periods)
    body = (f"{HEADER}\n{PRACTICE},{VENDOR},clean_claim_rate,{period},96.1,all\n"
            f"{PRACTICE},{VENDOR},{kpi},{period},{{}},all\n")
    return Case(body.format(bad).encode(), body.format(clean).encode(), 3, "value", reason)


def period_case(bad: str, reason: str) -> Case:
    period = next(_periods)
    body = f"{HEADER}\n{PRACTICE},{VENDOR},denial_rate,{period},5.5%,all\n{PRACTICE},{VENDOR},days_in_ar,{{}},41,all\n"
    return Case(body.format(bad).encode(), body.format(period).encode(), 3, "period", reason)


def span_case(start: str, end: str, reason: str) -> Case:
    month = next(_periods)
    body = (f"{SPAN_HEADER}\n{PRACTICE},{VENDOR},denial_rate,{month}-01,{month}-28,5.5%,all\n"
            f"{PRACTICE},{VENDOR},days_in_ar,{{}},{{}},41,all\n")
    return Case(body.format(start, end).encode(), body.format(f"{month}-01", f"{month}-28").encode(), 3,
                "period_start", reason)


def both_periods_case() -> Case:
    """A file may carry both kinds of period column, each row filling one; row 3 fills both, and they differ."""
    month, other = next(_periods), next(_periods)
    body = (f"practice,vendor,kpi,period,period_start,period_end,value\n"
            f"{PRACTICE},{VENDOR},denial_rate,,{month}-01,{month}-28,5.5%\n"
            f"{PRACTICE},{VENDOR},days_in_ar,{month},{{}},41\n")
    return Case(body.format(f"{other}-01,{other}-28").encode(), body.format(",").encode(), 3, "period",
                "different periods")


def header_case(header: str) -> Case:
    """Two columns that read as one name: the row holds 41 and 99, and the file must not say which is meant."""
    period = next(_periods)
    bad = f"{header}\n{PRACTICE},{VENDOR},days_in_ar,{period},41,99\n"
    clean = f"{HEADER}\n{PRACTICE},{VENDOR},days_in_ar,{period},41,all\n"
    return Case(bad.encode(), clean.encode(), 1, "value", "twice")


CASES = {
    "two value columns": header_case("practice,vendor,kpi,period,value,value"),
    "two value columns after case and spaces": header_case("practice,vendor,kpi,period,Value, VALUE "),
    "underscore in a number": value_case("4_1", "41", "underscore"),
    "nan": value_case("nan", "41", "not a number"),
    "NaN%": value_case("NaN%", "41%", "not a number", kpi="denial_rate"),
    "inf": value_case("inf", "41", "not a number"),
    "infinity": value_case("-Infinity", "41", "not a number"),
    "full-width digits": value_case("\uff14\uff11", "41", "digits 0-9"),
    "arabic-indic digits": value_case("\u0664\u0661", "41", "digits 0-9"),
    "a space inside a number": value_case("4 1", "4 100", "thousands"),
    "1e308 dollars": value_case("1e308", "1e6", "more than", kpi="net_collections"),
    "ten trillion dollars": value_case('"$10,000,000,000,000"', '"$1,000,000"', "more than", kpi="net_collections"),
    "a number past float": value_case("1e400", "1e3", "too large", kpi="net_collections"),
    "a million days in A/R": value_case("1000000", "41", "more than"),
    "1900-01": period_case("1900-01", "before 2000"),
    "a week of 1999": period_case("1999-W52", "before 2000"),
    "a month and another month's days": both_periods_case(),
    "1026 to 2026": span_case("1026-01-01", "2026-01-01", "before 2000"),
    "2001 to 2026": span_case("2001-01-01", "2026-01-01", "longer than a year"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_an_ambiguous_long_csv_is_rejected_alike_on_every_path_and_stores_nothing(
    case: Case, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    before = {path: observations(url) for path, url in databases.items()}
    results = {path: ingest(case.bad, config, databases[path], tmp_path, FAST.get(path, ())) for path in databases}

    for path, result in results.items():
        assert result.status == "rejected", f"{path} accepted it"
        [problem] = result.problems
        assert (problem.row, problem.column) == (case.row, case.column), path
        assert case.reason in problem.message, (path, problem.message)
        assert len(str(problem)) < 300, "the message quotes at most the cell at fault"
    assert len({tuple(result.problems) for result in results.values()}) == 1, "the same problem on every path"
    assert {path: observations(url) for path, url in databases.items()} == before, "nothing stored"

    for path, fast in FAST.items():
        twin = ingest(case.clean, config, databases[path], tmp_path, fast)
        assert (twin.status, twin.checked_in) == ("accepted", path), "the clean twin takes the fast path"


ACCEPTED = {  # what a person does write, still read as meant on every path
    "+41": 41.0, "41.": 41.0, "1 234": 1234.0, "1\u00a0234": 1234.0, "1\u202f234": 1234.0, "1.5E+03": 1500.0,
    "2e1": 20.0, " 41 ": 41.0,
}


@pytest.mark.parametrize(("text", "value"), ACCEPTED.items(), ids=ACCEPTED.keys())
def test_numbers_as_people_write_them_are_still_read_on_every_path(
    text: str, value: float, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    case = value_case(text, text, "")
    for path, url in databases.items():
        result = ingest(case.bad, config, url, tmp_path, FAST.get(path, ()))
        assert (result.status, result.checked_in) == ("accepted", CHECKED_IN[path]), result.problems
        with session_scope(url) as session:
            period = case.bad.decode().splitlines()[1].split(",")[3]
            stored = session.scalar(select(Observation.value).where(Observation.kpi == "days_in_ar",
                                                                    Observation.period == period))
        assert stored == value, path


@pytest.mark.parametrize(("period_columns", "cells"), [
    ("period", "2000-01"),
    ("period_start,period_end", "2024-01-01,2024-12-31"),  # a leap year: 366 days is still a year
    ("period,period_start,period_end", "2025-02,2025-02-01,2025-02-28"),
], ids=["the first month of 2000", "a whole leap year", "a month and its own days"])
def test_periods_at_the_edge_of_the_window_are_accepted(period_columns: str, cells: str, config: Config,
                                                        databases: dict[str, str], tmp_path: Path) -> None:
    data = f"practice,vendor,kpi,{period_columns},value\n{PRACTICE},{VENDOR},days_in_ar,{cells},41\n".encode()
    for path, url in databases.items():
        result = ingest(data, config, url, tmp_path, FAST.get(path, ()))
        assert result.status == "accepted", (path, result.problems)


# -- wide CSV and JSON: read row by row on either database -------------------------------------------------------


@pytest.fixture(scope="module")
def config_with_wide_columns(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Acme's export headers mapped for oakridge-fm, as an operator would: Month is the period."""
    directory = tmp_path_factory.mktemp("config")
    practices = (BUNDLED_DIR / "practices.yaml").read_text().replace(
        "        fee_pct: 6.5\n", '        fee_pct: 6.5\n        columns: {"Month": period, "AR days": days_in_ar}\n')
    (directory / "practices.yaml").write_text(practices)
    (directory / "channels.yaml").write_text((BUNDLED_DIR / "channels.yaml").read_text())
    return load_config(directory)


WIDE = {
    "a KPI column twice": ("period,days_in_ar,Days_In_AR\n2025-01,41,99\n", "days_in_ar"),
    "a KPI under its own and its mapped name": ("Month,AR days,days_in_ar\n2025-01,41,99\n", "days_in_ar"),
    "the period under its own and its mapped name": ("Month,period,AR days\n2025-01,2025-02,41\n", "period"),
}


@pytest.mark.parametrize(("text", "column"), WIDE.values(), ids=WIDE.keys())
def test_a_wide_csv_naming_one_field_in_two_columns_is_rejected(
    text: str, column: str, config_with_wide_columns: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    for path in SLOW:
        url = databases[path]
        before = observations(url)
        result = ingest(text.encode(), config_with_wide_columns, url, tmp_path, (), practice=PRACTICE, vendor=VENDOR)
        assert result.status == "rejected", path
        [problem] = result.problems
        assert (problem.row, problem.column) == (1, column) and "twice" in problem.message, problem
        assert observations(url) == before


OBSERVATION = '{"kpi": "days_in_ar", "period": "2025-03", "value": 41}'
JSON_CASES = {
    "practice twice": (f'{{"practice": "nobody", "practice": "{PRACTICE}", "vendor": "{VENDOR}",'
                       f' "observations": [{OBSERVATION}]}}', 1, "practice"),
    "value twice in the second observation": (
        f'{{"practice": "{PRACTICE}", "vendor": "{VENDOR}", "observations": [{OBSERVATION},'
        ' {"kpi": "denial_rate", "period": "2025-03", "value": 4.1, "value": 9.9}]}', 2, "value"),
    "a key twice deep inside": (f'{{"practice": "{PRACTICE}", "vendor": "{VENDOR}", "observations": [{OBSERVATION}],'
                                ' "export": {"tool": {"version": 1, "version": 2}}}', 1, "export"),
}


@pytest.mark.parametrize(("text", "row", "column"), JSON_CASES.values(), ids=JSON_CASES.keys())
def test_a_json_feed_giving_a_key_twice_is_rejected(
    text: str, row: int, column: str, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    json.loads(text)  # valid JSON: Python would keep the last of each key without a word
    for path in SLOW:
        url = databases[path]
        before = observations(url)
        result = ingest(text.encode(), config, url, tmp_path, (), suffix=".json")
        assert result.status == "rejected", path
        [problem] = result.problems
        assert (problem.row, problem.column) == (row, column) and "twice" in problem.message, problem
        assert observations(url) == before


# -- the judge every path asks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["4_1", "1_000", "nan", "-NaN", "inf", "+inf", "Infinity", "\uff14\uff11",
                                  "\u0664\u0661", "4 1", "41 0", "1   1", "1  234", "1e400", "0x29", "4 1%", "$4_1"])
def test_read_number_refuses_what_only_float_would_read(text: str) -> None:
    assert isinstance(read_number(text), str)


@pytest.mark.parametrize(("text", "value"), [*ACCEPTED.items(), ("$1 234.50", 1234.5), ("(1 200)", -1200.0),
                                             ("9.8 %", 9.8), ("-.5", -0.5)])
def test_read_number_reads_what_people_write(text: str, value: float) -> None:
    assert read_number(text.strip()) == (value, text.strip().endswith("%"))
