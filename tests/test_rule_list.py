"""Every rule of feeds.rules.RULES holds on every path that may store a long CSV: streamed, row by row on
PostgreSQL and row by row on SQLite (the demo's database).

RULE_VIOLATIONS holds one bad file per rule of the list, by the rule's name (a rule without one fails the first
test). Each is rejected alike on every path: the same problems, by row, column and message, and nothing stored;
its clean twin is streamed, so the refusal is the rule's, not a shape the streamed path never reads. Then rules
defined here, as a newcomer would write them, are added to the list: every path refuses their violations, which
every path accepts without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import feeds.rules
from config import BUNDLED_DIR, Config, load_config
from feeds.ingest import IngestResult
from feeds.rules import PERIOD_COLUMNS, RULES, Context, Rule, Verdict
from tests.support.every_path import FAST, HEADER, PRACTICE, VENDOR, ingest, months, observations, path_databases

CHECKED_IN = {"streamed": "streamed", "python-postgresql": "python", "python-sqlite": "python"}


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A database per path, so each sees only its own files and every clean twin is a first delivery."""
    yield from path_databases("vw_rule_list", tmp_path_factory.mktemp("rule_list"))


_periods = months()


@dataclass(frozen=True)
class Violation:
    """A long CSV whose row 3 breaks one rule (row 2 is clean, so the streamed path has begun), its clean twin,
    and the problem every path must name."""

    bad: bytes
    clean: bytes
    column: str
    message: str


def violation(column: str, bad: str, clean: str, message: str, kpi: str = "days_in_ar",
              period: str | None = None) -> Violation:
    period = period or next(_periods)
    cells = {"practice": PRACTICE, "kpi": kpi, "period": period, "value": "41", "segment": "all"}
    row = ",".join("{}" if name == column else cells[name] if name != "vendor" else VENDOR
                   for name in HEADER.split(","))
    body = f"{HEADER}\n{PRACTICE},{VENDOR},clean_claim_rate,{period},96.1,all\n{row}\n"
    return Violation(body.format(bad).encode(), body.format(clean).encode(), column, message)


RULE_VIOLATIONS = {
    "known practice and vendor": violation("practice", "oakridge", PRACTICE, "unknown practice"),
    "known KPI": violation("kpi", "denials", "days_in_ar", "unknown KPI"),
    "a period in reach": violation("period", "2027-01", "2020-01", "period is in the future"),
    "a segment of the known kinds": violation("segment", "Aetna", "payer:Aetna", "segment must be"),
    "a value in its KPI's bounds": violation("value", "1000000", "41", "more than 36,500 days"),
}


def through_every_path(data: bytes, config: Config, databases: dict[str, str],
                       tmp_path: Path) -> dict[str, IngestResult]:
    return {path: ingest(data, config, url, tmp_path, FAST.get(path, ())) for path, url in databases.items()}


def assert_refused_alike(results: dict[str, IngestResult], column: str, message: str) -> None:
    """Rejected on every path, row 3 named with this column and message, the same problems everywhere."""
    for path, result in results.items():
        assert result.status == "rejected", f"{path} accepted it"
        [problem] = result.problems
        assert (problem.row, problem.column) == (3, column), (path, problem)
        assert message in problem.message, (path, problem.message)
    assert len({tuple(result.problems) for result in results.values()}) == 1, "the same problems on every path"


def test_every_rule_of_the_list_has_a_violation_here() -> None:
    assert set(RULE_VIOLATIONS) == {rule.name for rule in RULES}


@pytest.mark.parametrize("case", RULE_VIOLATIONS.values(), ids=RULE_VIOLATIONS.keys())
def test_a_violation_of_each_rule_is_refused_alike_on_every_path_and_stores_nothing(
    case: Violation, config: Config, databases: dict[str, str], tmp_path: Path
) -> None:
    before = {path: observations(url) for path, url in databases.items()}

    assert_refused_alike(through_every_path(case.bad, config, databases, tmp_path), case.column, case.message)

    assert {path: observations(url) for path, url in databases.items()} == before, "nothing stored"
    twins = through_every_path(case.clean, config, databases, tmp_path)
    assert {path: (twin.status, twin.checked_in) for path, twin in twins.items()} == {
        path: ("accepted", checked_in) for path, checked_in in CHECKED_IN.items()}, "the clean twin is streamed"


# -- rules a newcomer adds ---------------------------------------------------------------------------------------

def no_older_than_five_years(texts: tuple[str, ...], context: Context) -> Verdict:
    """A rule on the period columns (judged per distinct period)."""
    period = context.period(*texts)
    if isinstance(period, str):
        return None  # unreadable: the period rule says why
    oldest = context.today.replace(year=context.today.year - 5)
    return "period more than five years before today" if period.start < oldest else None


def no_perfect_denial_rate(texts: tuple[str, ...], context: Context) -> Verdict:
    """A rule across columns, the KPI and the value (judged per distinct pair): 0% denials is a count that went
    missing, not a perfect month."""
    kpi = context.kpi(texts[0])
    number = context.number(texts[1])
    if kpi is None or isinstance(number, str) or kpi[0] != "denial_rate" or number[0] != 0:
        return None
    return feeds.rules.Refusal("a denial rate of exactly 0: a count that went missing?", "value")


def no_location_days_in_ar(texts: tuple[str, ...], context: Context) -> Verdict:
    """A rule across a series' columns, the KPI and the segment (judged per distinct series)."""
    kpi = context.kpi(texts[0])
    if kpi is None or kpi[0] != "days_in_ar" or not texts[1].startswith("location:"):
        return None
    return feeds.rules.Refusal("days in A/R is reported for payers and providers, not locations", "segment")


def no_weekly_denial_rate(texts: tuple[str, ...], context: Context) -> Verdict:
    """A rule across the KPI and the period (judged per distinct pair in each block of the streamed path)."""
    kpi, period = context.kpi(texts[0]), context.period(*texts[1:])
    if kpi is None or kpi[0] != "denial_rate" or isinstance(period, str) or "W" not in period.label:
        return None
    return feeds.rules.Refusal("a denial rate is reported per month, not per week", "period")


ADDED = {
    "five years": (Rule("no period more than five years old", PERIOD_COLUMNS,
                        "period more than five years before today", no_older_than_five_years),
                   violation("period", "2015-06", "2015-06", "more than five years before today",
                             period="2025-06")),
    "across KPI and value": (Rule("no denial rate of exactly 0", ("kpi", "value"),
                                  "a denial rate of exactly 0: a count that went missing?", no_perfect_denial_rate),
                             violation("value", "0", "0", "a count that went missing", kpi="denial_rate")),
    "across a series' columns": (Rule("no days in A/R per location", ("kpi", "segment"),
                                      "days in A/R is reported for payers and providers, not locations",
                                      no_location_days_in_ar),
                                 violation("segment", "location:North", "", "not locations")),
    "across KPI and period": (Rule("no weekly denial rate", ("kpi", *PERIOD_COLUMNS),
                                   "a denial rate is reported per month, not per week", no_weekly_denial_rate),
                              violation("period", "2024-W10", "", "not per week", kpi="denial_rate")),
}


@pytest.mark.parametrize(("rule", "case"), ADDED.values(), ids=ADDED.keys())
def test_a_rule_added_to_the_list_is_honoured_on_every_path(
    rule: Rule, case: Violation, config: Config, databases: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {path: observations(url) for path, url in databases.items()}
    with monkeypatch.context() as patch:
        patch.setattr(feeds.rules, "RULES", (*RULES, rule))
        refused = through_every_path(case.bad, config, databases, tmp_path)
    assert_refused_alike(refused, case.column, case.message)
    assert {path: observations(url) for path, url in databases.items()} == before, "nothing stored"

    without_it = through_every_path(case.bad, config, databases, tmp_path)
    assert {path: (result.status, result.checked_in) for path, result in without_it.items()} == {
        path: ("accepted", checked_in) for path, checked_in in CHECKED_IN.items()}, "the rule alone refused it"
