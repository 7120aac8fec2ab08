"""Patient data in a feed's cells, not only in its column names: an SSN, a member id, a phone number, a date of
birth or an email address in a segment (or any other text cell) rejects the file, naming its row and column and
never repeating the cell.

As in tests/test_ambiguous_input.py, each bad long CSV goes through every path that may store it (streamed, row
by row on PostgreSQL and on SQLite) and must be refused the same way everywhere; its clean twin
takes the fast path, so the refusal is the rule's. Wide CSV and JSON, read row by row, are refused alike. Real
segment names are accepted on every path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import BUNDLED_DIR, Config, load_config
from feeds.phi import phi_shape
from tests.support.every_path import FAST, HEADER, PRACTICE, SLOW, VENDOR, ingest, months, observations, path_databases


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A database per path, so every clean twin is a first delivery there."""
    yield from path_databases("vw_phi", tmp_path_factory.mktemp("phi"))


_periods = months()



@dataclass(frozen=True)
class Case:
    """A long CSV with patient data in row 3, the secret it must never repeat, and its clean twin."""

    bad: bytes
    clean: bytes
    secret: str
    column: str
    kind: str


def segment_case(secret: str, kind: str) -> Case:
    period = next(_periods)
    body = (f"{HEADER}\n{PRACTICE},{VENDOR},denial_rate,{period},5.5%,all\n"
            f"{PRACTICE},{VENDOR},denial_rate,{period},6.1%,{{}}\n")
    return Case(body.format(f'"{secret}"').encode(), body.format("payer:Aetna").encode(), secret, "segment", kind)


def cell_case(column: str, secret: str, kind: str) -> Case:
    """Patient data in a cell that is not free text: refused anyway (unknown, unreadable), but never repeated."""
    period = next(_periods)
    cells = {"practice": PRACTICE, "kpi": "days_in_ar", "period": period, "value": "41"}
    clean = f"{HEADER}\n{PRACTICE},{VENDOR},denial_rate,{period},5.5%,all\n" \
            f"{cells['practice']},{VENDOR},{cells['kpi']},{cells['period']},{cells['value']},all\n"
    bad_cells = {**cells, column: f'"{secret}"'}
    bad = f"{HEADER}\n{PRACTICE},{VENDOR},denial_rate,{period},5.5%,all\n" \
          f"{bad_cells['practice']},{VENDOR},{bad_cells['kpi']},{bad_cells['period']},{bad_cells['value']},all\n"
    return Case(bad.encode(), clean.encode(), secret, column, kind)


CASES = {
    "the issue's SSN": segment_case("payer:John Smith SSN 123-45-6789", "an SSN"),
    "an SSN without dashes": segment_case("payer:Aetna 123456789", "an SSN"),
    "a member id": segment_case("payer:UHC W123456789", "a member id"),
    "a member id by name": segment_case("payer:Cigna member id 4471", "a member id"),
    "a phone number": segment_case("provider:Dr Lee (312) 555-0142", "a phone number"),
    "a dotted phone number": segment_case("location:call 312.555.0142", "a phone number"),
    "a date of birth": segment_case("payer:Mary Jones 03/14/1985", "a date of birth"),
    "an ISO date of birth": segment_case("provider:J Doe 1985-03-14", "a date of birth"),
    "DOB by name": segment_case("payer:Jones DOB 4", "a date of birth"),
    "an email address": segment_case("payer:mary.jones@example.com", "an email address"),
    "an SSN as the value": cell_case("value", "123-45-6789", "an SSN"),
    "a phone number as the period": cell_case("period", "312-555-0142", "a phone number"),
    "an email as the practice": cell_case("practice", "mary.jones@example.com", "an email address"),
    "an SSN as the KPI": cell_case("kpi", "ssn 123-45-6789", "an SSN"),
    "an SSN across the 80 characters an error quotes": cell_case("kpi", "x" * 76 + " 123-45-6789", "an SSN"),
}


def tell_tales(secret: str) -> list[str]:
    """The words of a cell that would give it away: those with a digit, an '@' or a name after 'payer:'."""
    return [word.strip("()") for word in secret.split()
            if len(word) >= 4 and any(c.isdigit() or c in ":@" for c in word)]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_patient_data_in_a_cell_is_rejected_alike_on_every_path_without_repeating_it(
    case: Case, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    before = {path: observations(url) for path, url in databases.items()}
    results = {path: ingest(case.bad, config, url, tmp_path, FAST.get(path, ())) for path, url in databases.items()}

    for path, result in results.items():
        assert result.status == "rejected", f"{path} accepted it"
        [problem] = result.problems
        assert (problem.row, problem.column, problem.value) == (3, case.column, None), (path, problem)
        assert f"looks like patient data ({case.kind})" in problem.message, (path, problem.message)
        shown = json.dumps(result.as_dict())
        assert not [word for word in tell_tales(case.secret) if word in shown], "the cell is never repeated"
    assert len({tuple(result.problems) for result in results.values()}) == 1, "the same problem on every path"
    assert {path: observations(url) for path, url in databases.items()} == before, "nothing stored"

    for path, fast in FAST.items():
        twin = ingest(case.clean, config, databases[path], tmp_path, fast)
        assert (twin.status, twin.checked_in) == ("accepted", path), twin.problems


REAL_SEGMENTS = ["payer:Blue Cross 2024", "provider:p00123", "location:Suite 100", "provider:1234567893",
                 "payer:Medicare Part B", "location:Building 2, Floor 3", "payer:Aetna (PPO) 2025-26"]


@pytest.mark.parametrize("segment", REAL_SEGMENTS)
def test_real_segment_names_are_accepted_on_every_path(
    segment: str, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    data = f'{HEADER}\n{PRACTICE},{VENDOR},denial_rate,{next(_periods)},6.1%,"{segment}"\n'.encode()
    for path, url in databases.items():
        result = ingest(data, config, url, tmp_path, FAST.get(path, ()))
        assert result.status == "accepted", (path, result.problems)


@pytest.mark.parametrize("text", ["2026-03", "2026-W09", "2026-03-14"])
def test_a_period_is_a_date_by_right(text: str) -> None:
    assert phi_shape(text, dates=False) is None


# -- wide CSV and JSON: read row by row on either database -------------------------------------------------------

SECRET = "payer:John Smith SSN 123-45-6789"
WIDE = {
    "a segment column": (f'period,segment,days_in_ar\n2025-01,all,41\n2025-02,"{SECRET}",42\n', 3, "segment"),
    "a cell beyond the header": (f'period,days_in_ar\n2025-01,41\n2025-02,42,"{SECRET}"\n', 3, None),
}


@pytest.mark.parametrize(("text", "row", "column"), WIDE.values(), ids=WIDE.keys())
def test_a_wide_csv_with_patient_data_in_a_cell_is_rejected(
    text: str, row: int, column: str | None, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    for path in SLOW:
        before = observations(databases[path])
        result = ingest(text.encode(), config, databases[path], tmp_path, (), practice=PRACTICE, vendor=VENDOR)
        assert result.status == "rejected", path
        [problem] = result.problems
        assert (problem.row, problem.column, problem.value) == (row, column, None), problem
        assert "looks like patient data (an SSN)" in problem.message
        assert "123-45-6789" not in json.dumps(result.as_dict())
        assert observations(databases[path]) == before


def json_feed(entry: dict[str, object], practice: str = PRACTICE) -> bytes:
    document = {"practice": practice, "vendor": VENDOR,
                "observations": [{"kpi": "days_in_ar", "period": "2025-03", "value": 41}, entry]}
    return json.dumps(document).encode()


JSON_CASES = {
    "a segment": (json_feed({"kpi": "denial_rate", "period": "2025-03", "value": 4.1, "segment": SECRET}), 2,
                  "segment"),
    "the practice": (json_feed({"kpi": "denial_rate", "period": "2025-03", "value": 4.1},
                               practice="Mary Jones, 312-555-0142"), 1, "practice"),
}


@pytest.mark.parametrize(("data", "row", "column"), JSON_CASES.values(), ids=JSON_CASES.keys())
def test_a_json_feed_with_patient_data_in_a_value_is_rejected(
    data: bytes, row: int, column: str, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    for path in SLOW:
        before = observations(databases[path])
        result = ingest(data, config, databases[path], tmp_path, (), suffix=".json")
        assert result.status == "rejected", path
        assert (result.problems[0].row, result.problems[0].column, result.problems[0].value) == (row, column, None)
        assert "looks like patient data" in result.problems[0].message
        shown = json.dumps(result.as_dict())
        assert "123-45-6789" not in shown and "555-0142" not in shown
        assert observations(databases[path]) == before
