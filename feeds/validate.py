"""Rows to observations, checking every rule of the feed contract (SPEC section 4): the header here, each row's
cells by the rules of feeds.rules (where a new rule goes).

All problems are collected, none stops the check early, so an operator fixes a file in one pass. Files are
validated row by row as they stream past (`RowValidator`), so a million-row file needs no more memory than a
small one; the answers for repeated texts (a KPI name, a period) are cached, since a feed repeats them on every
row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from config import Config
from feeds import rules
from feeds.parse import Table, UnreadableRow, normalise_header
from feeds.phi import phi_message, phi_shape
from feeds.rules import PERIOD_COLUMNS, VALUE_COLUMNS, Context, Verdicts, suggest

# The writer's vocabulary, in storage/ (pulse/ writes observations too); named here as feeds always did.
from storage.observations import MAX_QUOTED, ObservationIn, Problem, quoted  # noqa: F401
from storage.uploads import FeedOrigin

LONG_COLUMNS = {"practice", "vendor", "kpi", "period", "period_start", "period_end", "value", "segment", "unit"}
ROW_COLUMNS = {"practice", "vendor", "period", "period_start", "period_end", "segment", "unit"}
PHI_COLUMN = re.compile(
    r"(^|_)(patient|first_?name|last_?name|full_?name|name|dob|date_of_birth|birth_?date|mrn|medical_record"
    r"|ssn|social_security|member_?id|subscriber|insured_?id|address|street|zip|postal|phone|mobile|email)($|_)"
)
MAX_LISTED_PROBLEMS = 1000

class Rejected(Exception):
    """Raised from inside a stream when a problem makes the rest of the file meaningless (a bad header)."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def phi_problems(columns: list[str], allowed: set[str]) -> list[Problem]:
    return [
        Problem(1, column, column, "looks like patient data; feeds must be aggregate KPIs only (no PHI)")
        for column in columns
        if PHI_COLUMN.search(column) and column not in allowed
    ]


def spreadsheet_column(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: how the manager opening the file in Excel finds the column."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def blank_header(index: int) -> Problem:
    """A column with no name cannot be mapped: say where it is, since it has no name to say."""
    return Problem(1, f"{spreadsheet_column(index)} (no header)", None,
                   "a column without a header; name it, or delete it (a stray trailing delimiter makes one too)")


def fields_twice(fields: list[str]) -> dict[int, int]:
    """Column index -> the earlier column that gives the same field (a row would keep one of the two cells)."""
    first: dict[str, int] = {}
    twice: dict[int, int] = {}
    for index, field in enumerate(fields):
        if field and field in first:
            twice[index] = first[field]
        first.setdefault(field, index)
    return twice


def given_twice(table: Table, index: int, first: int, field: str) -> Problem:
    """Two columns for one field: a row would keep one of its two cells without a word (41 and 99: 99 stored)."""
    headers = table.headers or table.columns
    where = f"columns {spreadsheet_column(first)} and {spreadsheet_column(index)}"
    return Problem(1, table.columns[index], headers[index],
                   f"{field} given twice ({where}): which one is meant is ambiguous; keep one")


def check_long_columns(table: Table, origin: FeedOrigin) -> list[Problem]:
    """Every problem of a long CSV's header; the fast paths ask this too, and read a file only if it finds none."""
    problems = phi_problems(table.columns, LONG_COLUMNS)
    twice = fields_twice(table.columns)
    problems += [given_twice(table, index, first, table.columns[index]) for index, first in twice.items()]
    flagged = {p.column for p in problems}
    expected = "practice, vendor, kpi, period, value, segment, unit"
    for index, column in enumerate(table.columns):
        if not column:
            problems.append(blank_header(index))
        elif column not in LONG_COLUMNS and column not in flagged:
            hint = suggest(column, sorted(LONG_COLUMNS))
            problems.append(Problem(1, column, column, f"unknown column{hint}; expected {expected}"))
    required = ["kpi", "value"]
    if "period_start" not in table.columns:
        required.append("period")
    if origin.practice_id is None:
        required.append("practice")
    if origin.vendor_id is None:
        required.append("vendor")
    problems += [Problem(1, c, None, f"missing column {c}") for c in required if c not in table.columns]
    return problems


def is_wide(table: Table) -> bool:
    """No kpi/value columns: one row per period, one column per KPI."""
    return "kpi" not in table.columns and "value" not in table.columns and bool(table.columns)


def wide_mapping(table: Table, config: Config, origin: FeedOrigin) -> tuple[dict[str, str], list[Problem]]:
    """Header -> KPI key or row field, from the vendor's `columns` setting, else the header as a catalog key."""
    practice = config.practice(origin.practice_id or "")
    vendor = practice.vendor(origin.vendor_id or "") if practice else None
    declared = {normalise_header(name): target for name, target in (vendor.columns if vendor else {}).items()}
    mapping: dict[str, str] = {}
    problems = phi_problems(table.columns, set(declared))
    flagged = {p.column for p in problems}
    targets = [declared.get(column, column) for column in table.columns]
    twice = fields_twice(targets)  # the same header twice, or two headers mapped to one field
    for index, column in enumerate(table.columns):
        target = targets[index]
        if column in flagged:
            continue
        if not column:
            problems.append(blank_header(index))
        elif index in twice:
            problems.append(given_twice(table, index, twice[index], target))
        elif target in ROW_COLUMNS or target in config.catalog.kpis:
            mapping[column] = target
        else:
            hint = suggest(column, [*config.catalog.kpis, *declared])
            problems.append(Problem(1, column, column, f"unknown column{hint}: not a KPI and not in the "
                                                       "vendor's columns mapping"))
    if "period" not in mapping.values() and "period_start" not in mapping.values():
        problems.append(Problem(1, None, None, "a wide feed needs a period column (or period_start/period_end)"))
    if not any(target in config.catalog.kpis for target in mapping.values()):
        problems.append(Problem(1, None, None, "no column names a KPI"))
    return mapping, problems


def long_rows(table: Table) -> Iterator[tuple[int, dict[str, str], dict[str, str]]]:
    """(row number, canonical fields, column names to report) for a long feed."""
    for row_number, row in table.rows:
        yield row_number, row, {}


def wide_rows(table: Table, mapping: dict[str, str]) -> Iterator[tuple[int, dict[str, str], dict[str, str]]]:
    """Each non-empty KPI cell of a wide row becomes one canonical row; errors name the KPI's own column."""
    headers = dict(zip(table.columns, table.headers or table.columns, strict=False))
    row_fields = [(column, target) for column, target in mapping.items() if target in ROW_COLUMNS]
    kpi_columns = [(column, target) for column, target in mapping.items() if target not in ROW_COLUMNS]
    for row_number, row in table.rows:
        shared = {target: row.get(column, "") for column, target in row_fields}
        if "__extra__" in row:
            shared["__extra__"] = row["__extra__"]
        for column, kpi in kpi_columns:
            if row.get(column, "") == "":
                continue  # a KPI this vendor did not report this period: absent, never zero
            names = {"value": headers.get(column, column), "kpi": headers.get(column, column)}
            yield row_number, {**shared, "kpi": kpi, "value": row[column]}, names


class RowValidator:
    """Checks canonical rows against every rule of feeds.rules.RULES (read when the file's check starts), and reads
    the observation a row that passes them all is stored as; remembers the verdicts on repeated texts."""

    def __init__(self, config: Config, origin: FeedOrigin, today: dt.date):
        self.context = Context(config, origin.practice_id, origin.vendor_id, today)
        self.verdicts = Verdicts(rules.RULES, self.context)
        # Per rule: its columns, a '' for each (a column the row lacks reads as '': map(row.get, columns, blanks)),
        # and its remembered verdicts, looked up here first (several lookups a row: the calls would cost more).
        self.columns = [(rule, rule.columns, ("",) * len(rule.columns), self.verdicts.seen[rule.name],
                         self.verdicts.alikes.get(rule.name)) for rule in self.verdicts.rules]

    def validate(self, row_number: int, row: dict[str, str],
                 names: dict[str, str] | None = None) -> ObservationIn | list[Problem]:
        problems: list[Problem] = []
        if "__extra__" in row:
            problems.append(Problem(row_number, None, row["__extra__"], "more cells than header columns"))
        if "__repeated__" in row:  # JSON: an observation gave a key twice (feeds.parse.json_rows)
            problems.append(Problem(row_number, row["__repeated__"], None,
                                    "a key given twice here: which one is meant is ambiguous; give it once"))
        for rule, columns, blanks, seen, alikes in self.columns:
            texts = tuple(map(row.get, columns, blanks))
            verdict = seen.get(texts if alikes is None else (alikes[texts[:-1]], texts[-1]), UNSEEN)
            if verdict is UNSEEN:
                verdict = self.verdicts.of(rule, texts)
            if verdict is not None:
                problems.append(Problem(row_number, *rule.refusal(texts, verdict)))  # type: ignore[arg-type]
        if problems:
            problems = [screen_phi(problem, row) for problem in problems]
            return [rename_column(p, names) for p in problems] if names else problems
        return self.observation(row_number, row)

    def observation(self, row_number: int, row: dict[str, str]) -> ObservationIn:
        """The observation of a row that passed every rule."""
        context = self.context
        texts = tuple(map(row.get, OBSERVATION_COLUMNS, OBSERVATION_BLANKS))
        practice, vendor_id, _ = context.owners[texts[:2]]
        kpi = context.kpis[texts[2]]
        value = context.value(texts[:5])
        period = context.periods[texts[5:8]]
        segment, _ = context.segments[texts[8]]
        if practice is None or vendor_id is None or kpi is None or isinstance(period, str) or value is None:
            raise LookupError("a row passed every rule but names no observation: a rule of feeds.rules is missing")
        return ObservationIn(practice.id, vendor_id, kpi[0], period, segment, value, row_number)


OBSERVATION_COLUMNS = (*VALUE_COLUMNS, *PERIOD_COLUMNS, "segment")  # VALUE_COLUMNS first: a row's value texts
OBSERVATION_BLANKS = ("",) * len(OBSERVATION_COLUMNS)
UNSEEN = object()  # no verdict remembered yet


def screen_phi(problem: Problem, row: dict[str, str]) -> Problem:
    """A refused cell that looks like patient data is refused as that, and never repeated: errors are stored,
    mailed and logged. (The streamed path refuses every such cell too, as unknown or unreadable, and falls back
    here.) The whole cell is judged, not the 80 characters an error would quote, which may cut a number in two."""
    if not problem.value:
        return problem
    cell = row.get(problem.column or "__extra__") or problem.value
    if (kind := phi_shape(cell, dates=problem.column not in PERIOD_COLUMNS)) is None:
        return problem
    return Problem(problem.row, problem.column, None, phi_message(kind))


def rename_column(problem: Problem, names: dict[str, str]) -> Problem:
    if problem.column in names:
        return Problem(problem.row, names[problem.column], problem.value, problem.message)
    return problem


@dataclass(frozen=True)
class CanonicalRows:
    """A table's rows in canonical form, and the name of its period column as the file writes it."""

    rows: Iterator[tuple[int, dict[str, str], dict[str, str]]]
    period_column: str


def canonical_rows(table: Table, config: Config, origin: FeedOrigin) -> CanonicalRows:
    """The table's rows in canonical form (long or wide), or Rejected for a header that cannot be read."""
    if table.error is not None and not table.columns:
        raise Rejected([Problem(table.error.row, None, None, table.error.message)])
    if not table.columns:
        raise Rejected([Problem(1, None, None, "the file is empty")])
    headers = dict(zip(table.columns, table.headers or table.columns, strict=False))
    if is_wide(table):
        mapping, problems = wide_mapping(table, config, origin)
        if problems:
            raise Rejected(problems)
        period = next(c for c, t in mapping.items() if t in ("period", "period_start"))
        return CanonicalRows(wide_rows(table, mapping), headers.get(period, period))
    problems = check_long_columns(table, origin)
    if problems:
        raise Rejected(problems)
    return CanonicalRows(long_rows(table), "period" if "period" in table.columns else "period_start")


class ProblemLog(list[Problem]):
    """The problems of one file: every one counted, the first MAX_LISTED_PROBLEMS kept (a broken million-row
    file must not hold a million messages in memory)."""

    total = 0

    def add(self, problems: list[Problem]) -> None:
        self.total += len(problems)
        self.extend(problems[: max(0, MAX_LISTED_PROBLEMS - len(self))])


def validate_stream(rows: Iterable[tuple[int, dict[str, str], dict[str, str]]], validator: RowValidator,
                    problems: ProblemLog) -> Iterator[ObservationIn]:
    """Valid observations, in file order; problems go to `problems` as they are found."""
    seen_any = False
    try:
        for row_number, row, names in rows:
            seen_any = True
            verdict = validator.validate(row_number, row, names)
            if isinstance(verdict, list):
                problems.add(verdict)
                continue
            yield verdict
    except UnreadableRow as exc:
        problems.add([Problem(exc.row, None, None, exc.message)])
        return
    if not seen_any:
        problems.add([Problem(1, None, None, "the file has a header but no data rows")])


def duplicate_problem(observation: ObservationIn, earlier_row: int, column: str = "period") -> Problem:
    return Problem(observation.row, column, observation.period.label,
                   f"{observation.kpi} for this period and segment already given in row {earlier_row}")


def validate_table(table: Table, config: Config, origin: FeedOrigin,
                   today: dt.date) -> tuple[list[ObservationIn], list[Problem]]:
    """Validate a whole in-memory table (the streaming path in feeds.ingest checks duplicates in SQL instead)."""
    try:
        canonical = canonical_rows(table, config, origin)
    except Rejected as rejected:
        return [], rejected.problems
    problems = ProblemLog()
    observations: list[ObservationIn] = []
    seen: dict[tuple[str, str, str, str, str], int] = {}
    for observation in validate_stream(canonical.rows, RowValidator(config, origin, today), problems):
        key = (observation.practice_id, observation.vendor_id, observation.kpi, observation.period.label,
               observation.segment)
        if key in seen:
            problems.add([duplicate_problem(observation, seen[key], canonical.period_column)])
            continue
        seen[key] = observation.row
        observations.append(observation)
    if table.error is not None:
        problems.add([Problem(table.error.row, None, None, table.error.message)])
    problems.sort(key=lambda problem: problem.row)
    return (observations, []) if not problems else ([], list(problems))
