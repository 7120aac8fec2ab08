"""Rows to observations, checking every rule of the feed contract (SPEC section 4).

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
from difflib import get_close_matches

from config import Config, Kpi, Practice
from feeds.parse import AmbiguousNumber, DecimalComma, Table, UnreadableRow, normalise_header, parse_number
from feeds.phi import phi_message, phi_shape

# The writer's vocabulary, in storage/ (pulse/ writes observations too); named here as feeds always did.
from storage.observations import MAX_QUOTED, ObservationIn, Problem, quoted  # noqa: F401
from storage.periods import Period, parse_period, span_period
from storage.uploads import FeedOrigin

LONG_COLUMNS = {"practice", "vendor", "kpi", "period", "period_start", "period_end", "value", "segment", "unit"}
ROW_COLUMNS = {"practice", "vendor", "period", "period_start", "period_end", "segment", "unit"}
PERIOD_COLUMNS = {"period", "period_start", "period_end"}
PHI_COLUMN = re.compile(
    r"(^|_)(patient|first_?name|last_?name|full_?name|name|dob|date_of_birth|birth_?date|mrn|medical_record"
    r"|ssn|social_security|member_?id|subscriber|insured_?id|address|street|zip|postal|phone|mobile|email)($|_)"
)
SEGMENT = re.compile(r"^(all|(payer|location|provider):\S.*)$")
SEGMENT_MAX_LENGTH = 200  # observation.segment is VARCHAR(200)
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text holds no NUL; UTF-8 no lone surrogate
# The most a value of each unit may be: beyond any real practice (a trillion dollars, a century of days), so only a
# slip stops here (a value in the wrong unit, a lost decimal point, 1e308); thresholds judge what is merely bad.
# Values are never negative, except a signed KPI's, which may go as far below zero.
LARGEST = {"%": 100.0, "USD": 1e12, "days": 36_500.0, "hours": 876_000.0, "rate": 1e6, "score": 1e6}
SIGNED_KPIS = {"enps"}  # % promoters - % detractors: -100 to 100
MAX_LISTED_PROBLEMS = 1000
# The window a period must fall in (besides not starting in the future): '1900-01' is a typo or a spreadsheet's
# empty date, and a span of years is no reporting period. Every path asks judge_period.
EARLIEST_PERIOD = dt.date(2000, 1, 1)
LONGEST_PERIOD_DAYS = 366  # a leap year, first day to last

class Rejected(Exception):
    """Raised from inside a stream when a problem makes the rest of the file meaningless (a bad header)."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


# How alike (difflib's ratio) a name must be to be offered as "did you mean": a slip of a letter or two scores
# 0.8 and more ('vaule' and value, 'claimrite' and claimright), while a different word can reach 0.5-0.72
# ('comments' and enps, 'enps_score' and readiness_score), which only misleads.
CLOSE_ENOUGH = 0.75


def suggest(word: str, known: Iterable[str]) -> str:
    close = get_close_matches(word, list(known), n=1, cutoff=CLOSE_ENOUGH)
    return f" (did you mean {close[0]}?)" if close else ""


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
    """Checks canonical rows against the configuration; remembers verdicts on repeated texts."""

    def __init__(self, config: Config, origin: FeedOrigin, today: dt.date):
        self.config, self.origin, self.today = config, origin, today
        self.practices: dict[tuple[str, str], tuple[Practice | None, str | None, tuple[str, str] | None]] = {}
        self.periods: dict[tuple[str, str, str], Period | str] = {}
        self.kpis: dict[str, tuple[str, Kpi] | None] = {}
        self.segments: dict[str, tuple[str, list[Problem]]] = {}
        self.units: dict[tuple[str, str], str | None] = {}

    def validate(self, row_number: int, row: dict[str, str],
                 names: dict[str, str] | None = None) -> ObservationIn | list[Problem]:
        problems: list[Problem] = []
        if "__extra__" in row:
            problems.append(Problem(row_number, None, row["__extra__"], "more cells than header columns"))
        if "__repeated__" in row:  # JSON: an observation gave a key twice (feeds.parse.json_rows)
            problems.append(Problem(row_number, row["__repeated__"], None,
                                    "a key given twice here: which one is meant is ambiguous; give it once"))
        practice, vendor_id = self.check_practice_and_vendor(row_number, row, problems)
        kpi = self.check_kpi(row_number, row, problems)
        period = self.check_period(row_number, row, problems)
        segment = self.check_segment(row_number, row, problems)
        vendor_unit = self.vendor_unit(practice, vendor_id)
        value = check_value(row_number, row, kpi[1] if kpi else None, vendor_unit, problems,
                            signed=bool(kpi and kpi[0] in SIGNED_KPIS))
        problems = [screen_phi(problem, row) for problem in problems]
        if problems or practice is None or vendor_id is None or kpi is None or period is None or value is None:
            if names:
                problems = [rename_column(p, names) for p in problems]
            return problems
        return ObservationIn(practice.id, vendor_id, kpi[0], period, segment, value, row_number)

    def check_practice_and_vendor(self, row_number: int, row: dict[str, str],
                                  problems: list[Problem]) -> tuple[Practice | None, str | None]:
        key = (row.get("practice", ""), row.get("vendor", ""))
        if key not in self.practices:
            self.practices[key] = self.judge_practice_and_vendor(*key)
        practice, vendor_id, error = self.practices[key]
        if error is not None:
            column, message = error
            given = row.get(column) or (self.origin.practice_id if column == "practice" else self.origin.vendor_id)
            problems.append(Problem(row_number, column, given, message))
        return practice, vendor_id

    def judge_practice_and_vendor(self, practice_text: str, vendor_text: str) -> tuple[
        Practice | None, str | None, tuple[str, str] | None
    ]:
        origin = self.origin
        if origin.practice_id and practice_text and practice_text != origin.practice_id:
            return None, None, ("practice", f"file is in the inbox of practice {origin.practice_id}")
        practice_id = practice_text or origin.practice_id or ""
        practice = self.config.practice(practice_id)
        if practice is None:
            known = [p.id for p in self.config.practices]
            return None, None, ("practice", f"unknown practice{suggest(practice_id, known)}")
        if origin.vendor_id and vendor_text and vendor_text != origin.vendor_id:
            return practice, None, ("vendor", f"file is in the inbox of vendor {origin.vendor_id}")
        vendor_id = vendor_text or origin.vendor_id or ""
        if practice.vendor(vendor_id) is None:
            known = [v.id for v in practice.vendors]
            return practice, None, ("vendor", f"unknown vendor for practice {practice.id}{suggest(vendor_id, known)}")
        return practice, vendor_id, None

    def vendor_unit(self, practice: Practice | None, vendor_id: str | None) -> str | None:
        if practice is None or vendor_id is None:
            return None
        key = (practice.id, vendor_id)
        if key not in self.units:
            vendor = practice.vendor(vendor_id)
            self.units[key] = vendor.unit if vendor else None
        return self.units[key]

    def check_segment(self, row_number: int, row: dict[str, str], problems: list[Problem]) -> str:
        text = row.get("segment") or ""
        if text not in self.segments:
            found: list[Problem] = []
            self.segments[text] = (check_segment(0, row, found), found)
        segment, found = self.segments[text]
        problems.extend(Problem(row_number, p.column, p.value, p.message) for p in found)
        return segment

    def check_kpi(self, row_number: int, row: dict[str, str], problems: list[Problem]) -> tuple[str, Kpi] | None:
        text = row.get("kpi", "")
        if text not in self.kpis:
            key = text.strip().lower()
            kpi = self.config.kpi(key)
            self.kpis[text] = (key, kpi) if kpi is not None else None
        found = self.kpis[text]
        if found is None:
            hint = suggest(text.strip().lower(), self.config.catalog.kpis)
            problems.append(Problem(row_number, "kpi", text, f"unknown KPI{hint}"))
        return found

    def check_period(self, row_number: int, row: dict[str, str], problems: list[Problem]) -> Period | None:
        key = (row.get("period", ""), row.get("period_start", ""), row.get("period_end", ""))
        if key not in self.periods:
            self.periods[key] = judge_period(*key, today=self.today)
        verdict = self.periods[key]
        if isinstance(verdict, str):
            column = "period" if key[0] else "period_start"
            problems.append(Problem(row_number, column, row.get(column, ""), verdict))
            return None
        return verdict


def screen_phi(problem: Problem, row: dict[str, str]) -> Problem:
    """A refused cell that looks like patient data is refused as that, and never repeated: errors are stored,
    mailed and logged. (The fast paths refuse every such cell too, as unknown or unreadable, and fall back here.)
    The whole cell is judged, not the 80 characters an error would quote, which may cut a number in two."""
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


def judge_period(period: str, start: str, end: str, *, today: dt.date) -> Period | str:
    """A Period, or the reason it is refused."""
    try:
        parsed = parse_period(period) if period else span_period(start, end or start)
    except (ValueError, KeyError) as exc:
        return str(exc) or "unparseable period"
    if period and (start or end) and not span_agrees(parsed, start, end):
        # A file may have both kinds of column, each row filling one; a row filling both must mean one period.
        return "period and period_start/period_end name different periods; give one"
    if parsed.start > today:
        return "period is in the future"
    if parsed.start < EARLIEST_PERIOD:
        return f"period starts before {EARLIEST_PERIOD.year}: no feed reaches back that far (a typo?)"
    if (parsed.end - parsed.start).days >= LONGEST_PERIOD_DAYS:
        return "period longer than a year; a feed reports months, weeks or days"
    return parsed


def span_agrees(period: Period, start: str, end: str) -> bool:
    """Do the period_start and period_end given (either may be empty) fall on the period's first and last day?"""
    try:
        given = [(dt.date.fromisoformat(text.strip()), day) for text, day in ((start, period.start), (end, period.end))
                 if text]
    except ValueError:
        return False
    return all(date == day for date, day in given)


def check_segment(row_number: int, row: dict[str, str], problems: list[Problem]) -> str:
    segment = (row.get("segment") or "all").strip()
    if segment.lower() == "all":
        return "all"
    if (kind := phi_shape(segment)) is not None:  # first: the other messages repeat the segment
        problems.append(Problem(row_number, "segment", None, phi_message(kind)))
    elif not SEGMENT.match(segment):
        problems.append(Problem(row_number, "segment", segment,
                                "segment must be all, payer:<name>, location:<name> or provider:<name>"))
    elif len(segment) > SEGMENT_MAX_LENGTH:
        problems.append(Problem(row_number, "segment", segment,
                                f"segment longer than {SEGMENT_MAX_LENGTH} characters"))
    elif UNSTORABLE.search(segment):
        problems.append(Problem(row_number, "segment", segment,
                                "segment contains a NUL or an unpaired surrogate character"))
    return segment


def check_value(row_number: int, row: dict[str, str], kpi: Kpi | None, vendor_unit: str | None,
                problems: list[Problem], signed: bool = False) -> float | None:
    text = row.get("value", "")
    number = read_number(text)
    if isinstance(number, str):
        problems.append(Problem(row_number, "value", text, number))
        return None
    if kpi is None:
        return None
    unit = value_unit(row, vendor_unit)
    if unit is INVALID_UNIT:
        problems.append(Problem(row_number, "unit", row.get("unit", ""), "unit must be percent or ratio"))
        return None
    value, had_percent_sign = number
    if (scale := unit_scale(kpi, unit, had_percent_sign)) != 1:
        value *= scale
    return check_range(row_number, text, value, kpi, problems, signed)


def read_number(text: str) -> tuple[float, bool] | str:
    """(value, had a % sign), or why the text is not a value. Every path judges value texts here."""
    if text == "":
        return "missing value (a missing value is never read as zero)"
    try:
        return parse_number(text)
    except DecimalComma as exc:
        return str(exc)
    except AmbiguousNumber as exc:
        return f"not a number: {exc}"
    except ValueError:
        return "not a number"


INVALID_UNIT = "invalid"


def value_unit(row: dict[str, str], vendor_unit: str | None) -> str | None:
    """The row's unit column, else the vendor's `unit`; INVALID_UNIT for anything but percent or ratio."""
    unit = (row.get("unit") or "").strip().lower() or vendor_unit
    return unit if unit in (None, "percent", "%", "ratio") else INVALID_UNIT


def unit_scale(kpi: Kpi, unit: str | None, had_percent_sign: bool) -> float:
    """A percent KPI sent as a ratio (0.093) is stored as a percent (9.3), unless the cell itself says %."""
    return 100.0 if kpi.unit == "%" and unit == "ratio" and not had_percent_sign else 1.0


def value_bounds(kpi: Kpi, signed: bool = False) -> tuple[float, float]:
    """(lowest, highest) a stored value of this KPI may take; every path checks values against these."""
    high = LARGEST[kpi.unit]
    return (-high if signed and kpi.unit != "%" else 0.0), high


def bounds_problem(kpi: Kpi, value: float, signed: bool = False) -> str | None:
    low, high = value_bounds(kpi, signed)
    if low <= value <= high:
        return None
    if kpi.unit == "%":
        return "percent outside 0-100"
    if value < 0 and low == 0:
        return f"negative {kpi.unit}"
    beyond = f"more than {high:,.0f}" if value > high else f"less than {low:,.0f}"
    return f"{beyond} {kpi.unit}: beyond any real practice; check the unit and the decimal point"


def check_range(row_number: int, text: str, value: float, kpi: Kpi, problems: list[Problem],
                signed: bool = False) -> float | None:
    if (message := bounds_problem(kpi, value, signed)) is not None:
        problems.append(Problem(row_number, "value", text, message))
        return None
    return value


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
