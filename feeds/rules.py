"""The feed contract's rules for a row (SPEC section 4), declared once in RULES: every path that stores a feed
applies this list, and nothing else judges a cell's text (feeds.validate checks the header and a row's shape,
storage.observations and the table's key a key given twice).

How to add a rule
-----------------
1. Write its judge, `def judge(texts: tuple[str, ...], context: Context) -> Verdict`. It gets the texts of the
   columns the rule names, in that order (each cell stripped; '' for a column the file does not have) and returns
   None when they pass, else why not: a str (the problem names the rule's first column and quotes its cell), or a
   `Refusal` to name another column or cell. Ask `context` what the configuration says (`context.kpi(text)`,
   `context.period(period, start, end)`, `context.today`, ...): its answers are remembered.
2. Append `Rule(name, columns, message, judge)` to RULES. One column: judged once per distinct text. Several
   columns (a rule across columns): judged once per distinct combination of their texts. A rule on the value
   and other columns names "value" last and may say, as `alike`, what of the other columns' texts its verdict
   depends on (the value rule: how the value is scaled and bounded), so it is judged once per (alike, value text);
   without it, the texts themselves count, which is always right but judges more.
3. Add a file that breaks it to RULE_VIOLATIONS in tests/test_rule_list.py (a test there fails until you do).

That is all. The row-by-row check (`feeds.validate.RowValidator`) asks every rule about every row and names each
refusal by row, column and message; the streamed path (`feeds.stream`) asks the same rule objects about each
distinct text or combination of texts of a block and, on any refusal, leaves the file to the row-by-row check.
The numbers a row is stored with come from here too: `Context.value` scales with `unit_scale` and the value rule
bounds with `value_bounds`, the only places that say how.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from difflib import get_close_matches
from typing import NamedTuple, TypeVar

from config import Config, Kpi, Practice
from feeds.parse import AmbiguousNumber, DecimalComma, parse_number
from feeds.phi import phi_message, phi_shape
from storage.periods import Period, parse_period, span_period

PERIOD_COLUMNS = ("period", "period_start", "period_end")
VALUE_COLUMNS = ("practice", "vendor", "kpi", "unit", "value")
SEGMENT = re.compile(r"^(all|(payer|location|provider):\S.*)$")
SEGMENT_MAX_LENGTH = 200  # observation.segment is VARCHAR(200)
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text holds no NUL; UTF-8 no lone surrogate
# The most a value of each unit may be: beyond any real practice (a trillion dollars, a century of days), so only a
# slip stops here (a value in the wrong unit, a lost decimal point, 1e308); thresholds judge what is merely bad.
# Values are never negative, except a signed KPI's, which may go as far below zero.
LARGEST = {"%": 100.0, "USD": 1e12, "days": 36_500.0, "hours": 876_000.0, "rate": 1e6, "score": 1e6}
SIGNED_KPIS = {"enps"}  # % promoters - % detractors: -100 to 100
# The window a period must fall in (besides not starting in the future): '1900-01' is a typo or a spreadsheet's
# empty date, and a span of years is no reporting period.
EARLIEST_PERIOD = dt.date(2000, 1, 1)
LONGEST_PERIOD_DAYS = 366  # a leap year, first day to last
MAX_REMEMBERED = 200_000  # verdicts kept per rule (and value readings); past this a memo starts again
# How alike (difflib's ratio) a name must be to be offered as "did you mean": a slip of a letter or two scores
# 0.8 and more ('vaule' and value, 'claimrite' and claimright), while a different word can reach 0.5-0.72
# ('comments' and enps, 'enps_score' and readiness_score), which only misleads.
CLOSE_ENOUGH = 0.75
INVALID_UNIT = "invalid"


@dataclass(frozen=True)
class Refusal:
    """Why a row is refused, naming `column` (default: the rule's first) and quoting `cell` (default, own_cell:
    that column's text; else `cell` as given, None to quote nothing, as for patient data)."""

    message: str
    column: str | None = None
    cell: str | None = None
    own_cell: bool = True


Verdict = str | Refusal | None


@dataclass(frozen=True)
class Rule:
    """One rule: its name, the columns whose texts it judges, its message (what an operator reads; a judge may
    say more, e.g. 'did you mean'), and its judge. `alike`: for a rule whose last column is the value, what its
    verdict depends on in the other columns' texts (None: those texts themselves)."""

    name: str
    columns: tuple[str, ...]
    message: str
    judge: Callable[[tuple[str, ...], Context], Verdict]
    alike: Callable[[tuple[str, ...], Context], Hashable] | None = None

    def refusal(self, texts: tuple[str, ...], verdict: str | Refusal) -> tuple[str, str | None, str]:
        """(column, quoted cell, message) of a refusal of these texts."""
        if isinstance(verdict, str):
            return self.columns[0], texts[0], verdict
        column = verdict.column or self.columns[0]
        cell = texts[self.columns.index(column)] if verdict.own_cell and column in self.columns else verdict.cell
        return column, cell, verdict.message


K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """Answers remembered by key: a hit is a plain dict lookup (the row-by-row path asks several per row), a miss
    asks `work`; past MAX_REMEMBERED answers it starts again."""

    def __init__(self, work: Callable[[K], V]):
        super().__init__()
        self.work = work

    def __missing__(self, key: K) -> V:
        if len(self) >= MAX_REMEMBERED:
            self.clear()
        value = self[key] = self.work(key)
        return value


class Verdicts:
    """Each rule's verdict on each distinct texts it met, remembered (a feed repeats its names on every row)."""

    def __init__(self, rules: Iterable[Rule], context: Context):
        self.rules, self.context = tuple(rules), context
        self.seen: dict[str, dict[Hashable, Verdict]] = {rule.name: {} for rule in self.rules}
        self.alikes: dict[str, Memo[tuple[str, ...], Hashable]] = {
            rule.name: Memo(asking(rule.alike, context)) for rule in self.rules if rule.alike is not None}

    def of(self, rule: Rule, texts: tuple[str, ...]) -> Verdict:
        """The rule's verdict on these texts (one per column it names)."""
        key: Hashable = texts if rule.alike is None else (self.alikes[rule.name][texts[:-1]], texts[-1])
        seen = self.seen[rule.name]
        if key in seen:
            return seen[key]
        if len(seen) >= MAX_REMEMBERED:
            seen.clear()
        verdict = seen[key] = rule.judge(texts, self.context)
        return verdict

    def alike_of(self, rule: Rule, texts: tuple[str, ...]) -> Hashable:
        """What the rule's verdict depends on in these texts of its columns but the value."""
        return texts if rule.alike is None else self.alikes[rule.name][texts]


def asking(alike: Callable[[tuple[str, ...], Context], Hashable],
           context: Context) -> Callable[[tuple[str, ...]], Hashable]:
    return lambda texts: alike(texts, context)


class ValueKind(NamedTuple):
    """What a value's verdict and scaling depend on besides its text: the KPI's unit, the scale for a plain and
    for a %-signed number, the bounds; rows alike in it share every value verdict. (A tuple: hashed in C, as
    part of a memo's key on every row.)"""

    kpi_unit: str
    scale_plain: float
    scale_percent: float
    low: float
    high: float
    unit_invalid: bool = False


Owner = tuple[Practice | None, str | None, tuple[str, str] | None]


class Context:
    """What the rules and the readers ask about one file's texts, answered from its configuration, its origin
    (the practice and vendor its inbox folder names) and today; each answer remembered (the memos are public so
    the row-by-row path can look an answer up without a call)."""

    def __init__(self, config: Config, practice_id: str | None, vendor_id: str | None, today: dt.date):
        self.config, self.practice_id, self.vendor_id, self.today = config, practice_id, vendor_id, today
        self.owners: Memo[tuple[str, ...], Owner] = Memo(lambda texts: self.judge_owner(*texts))
        self.kpis: Memo[str, tuple[str, Kpi] | None] = Memo(self.find_kpi)
        self.periods: Memo[tuple[str, ...], Period | str] = Memo(
            lambda texts: judge_period(texts[0], texts[1], texts[2], self.today))
        self.segments: Memo[str, tuple[str, Refusal | None]] = Memo(judge_segment)
        self.kinds: Memo[tuple[str, ...], ValueKind | None] = Memo(lambda texts: self.judge_kind(*texts))
        self.numbers: Memo[str, tuple[float, bool] | str] = Memo(read_number)

    def owner(self, practice: str, vendor: str) -> Owner:
        """(practice, vendor id, None) or, for texts that name no practice or vendor of it, (column, why)."""
        return self.owners[(practice, vendor)]

    def judge_owner(self, practice_text: str, vendor_text: str) -> Owner:
        if self.practice_id and practice_text and practice_text != self.practice_id:
            return None, None, ("practice", f"file is in the inbox of practice {self.practice_id}")
        practice_id = practice_text or self.practice_id or ""
        practice = self.config.practice(practice_id)
        if practice is None:
            known = [p.id for p in self.config.practices]
            return None, None, ("practice", f"unknown practice{suggest(practice_id, known)}")
        if self.vendor_id and vendor_text and vendor_text != self.vendor_id:
            return practice, None, ("vendor", f"file is in the inbox of vendor {self.vendor_id}")
        vendor_id = vendor_text or self.vendor_id or ""
        if practice.vendor(vendor_id) is None:
            known = [v.id for v in practice.vendors]
            return practice, None, ("vendor", f"unknown vendor for practice {practice.id}{suggest(vendor_id, known)}")
        return practice, vendor_id, None

    def kpi(self, text: str) -> tuple[str, Kpi] | None:
        """(catalog key, KPI) named by the text, or None."""
        return self.kpis[text]

    def find_kpi(self, text: str) -> tuple[str, Kpi] | None:
        key = text.strip().lower()
        kpi = self.config.kpi(key)
        return (key, kpi) if kpi is not None else None

    def period(self, period: str, start: str, end: str) -> Period | str:
        """The Period the texts name, or why they name none (judge_period)."""
        return self.periods[(period, start, end)]

    def segment(self, text: str) -> tuple[str, Refusal | None]:
        """The segment as stored, and why it is refused (None: it is not)."""
        return self.segments[text]

    def number(self, text: str) -> tuple[float, bool] | str:
        """(value, had a % sign) the text reads as, or why it reads as none (read_number)."""
        return self.numbers[text]

    def value_kind(self, practice: str, vendor: str, kpi: str, unit: str) -> ValueKind | None:
        """How a value of this row is scaled and bounded; None for an unknown KPI (its own rule says so)."""
        return self.kinds[(practice, vendor, kpi, unit)]

    def judge_kind(self, practice_text: str, vendor_text: str, kpi_text: str, unit_text: str) -> ValueKind | None:
        found = self.kpi(kpi_text)
        if found is None:
            return None
        key, kpi = found
        practice, vendor_id, _ = self.owner(practice_text, vendor_text)
        vendor = practice.vendor(vendor_id) if practice is not None and vendor_id is not None else None
        unit = value_unit(unit_text, vendor.unit if vendor else None)
        low, high = value_bounds(kpi, signed=key in SIGNED_KPIS)
        return ValueKind(kpi.unit, unit_scale(kpi, unit, False), unit_scale(kpi, unit, True), low, high,
                         unit == INVALID_UNIT)

    def value(self, texts: tuple[str, ...]) -> float | None:
        """The value a row (its VALUE_COLUMNS texts) is stored with, scaled; None if it has none to store."""
        kind = self.kinds[texts[:4]]
        number = self.numbers[texts[4]]
        if kind is None or kind.unit_invalid or isinstance(number, str):
            return None
        return scaled(kind, number)


def suggest(word: str, known: Iterable[str]) -> str:
    close = get_close_matches(word, list(known), n=1, cutoff=CLOSE_ENOUGH)
    return f" (did you mean {close[0]}?)" if close else ""


# -- the readers the rules and the stored rows share ---------------------------------------------------------------

def judge_period(period: str, start: str, end: str, today: dt.date) -> Period | str:
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


def judge_segment(text: str) -> tuple[str, Refusal | None]:
    segment = (text or "all").strip()
    if segment.lower() == "all":
        return "all", None
    if (kind := phi_shape(segment)) is not None:  # first: the other messages repeat the segment
        return segment, Refusal(phi_message(kind), "segment", None, own_cell=False)
    if not SEGMENT.match(segment):
        why = "segment must be all, payer:<name>, location:<name> or provider:<name>"
    elif len(segment) > SEGMENT_MAX_LENGTH:
        why = f"segment longer than {SEGMENT_MAX_LENGTH} characters"
    elif UNSTORABLE.search(segment):
        why = "segment contains a NUL or an unpaired surrogate character"
    else:
        return segment, None
    return segment, Refusal(why, "segment", segment, own_cell=False)


def read_number(text: str) -> tuple[float, bool] | str:
    """(value, had a % sign), or why the text is not a value."""
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


def value_unit(unit_text: str, vendor_unit: str | None) -> str | None:
    """The row's unit column, else the vendor's `unit`; INVALID_UNIT for anything but percent or ratio."""
    unit = unit_text.strip().lower() or vendor_unit
    return unit if unit in (None, "percent", "%", "ratio") else INVALID_UNIT


def unit_scale(kpi: Kpi, unit: str | None, had_percent_sign: bool) -> float:
    """A percent KPI sent as a ratio (0.093) is stored as a percent (9.3), unless the cell itself says %."""
    return 100.0 if kpi.unit == "%" and unit == "ratio" and not had_percent_sign else 1.0


def value_bounds(kpi: Kpi, signed: bool = False) -> tuple[float, float]:
    """(lowest, highest) a stored value of this KPI may take."""
    high = LARGEST[kpi.unit]
    return (-high if signed and kpi.unit != "%" else 0.0), high


def scaled(kind: ValueKind, number: tuple[float, bool]) -> float:
    value, had_percent_sign = number
    scale = kind.scale_percent if had_percent_sign else kind.scale_plain
    return value * scale if scale != 1 else value


def bounds_problem(kind: ValueKind, value: float) -> str | None:
    if kind.low <= value <= kind.high:
        return None
    if kind.kpi_unit == "%":
        return "percent outside 0-100"
    if value < 0 and kind.low == 0:
        return f"negative {kind.kpi_unit}"
    beyond = f"more than {kind.high:,.0f}" if value > kind.high else f"less than {kind.low:,.0f}"
    return f"{beyond} {kind.kpi_unit}: beyond any real practice; check the unit and the decimal point"


# -- the rules -----------------------------------------------------------------------------------------------------

def known_owner(texts: tuple[str, ...], context: Context) -> Verdict:
    _, _, error = context.owner(*texts)
    if error is None:
        return None
    column, message = error
    text = texts[0] if column == "practice" else texts[1]
    given = text or (context.practice_id if column == "practice" else context.vendor_id) or None
    return Refusal(message, column, given, own_cell=False)


def known_kpi(texts: tuple[str, ...], context: Context) -> Verdict:
    if context.kpi(texts[0]) is not None:
        return None
    return f"unknown KPI{suggest(texts[0].strip().lower(), context.config.catalog.kpis)}"


def readable_period(texts: tuple[str, ...], context: Context) -> Verdict:
    verdict = context.period(*texts)
    if not isinstance(verdict, str):
        return None
    return Refusal(verdict, "period" if texts[0] else "period_start")


def valid_segment(texts: tuple[str, ...], context: Context) -> Verdict:
    return context.segment(texts[0])[1]


def valid_value(texts: tuple[str, ...], context: Context) -> Verdict:
    number = context.number(texts[4])
    if isinstance(number, str):
        return Refusal(number, "value")
    kind = context.value_kind(*texts[:4])
    if kind is None:
        return None  # an unknown KPI: known_kpi says so
    if kind.unit_invalid:
        return Refusal("unit must be percent or ratio", "unit")
    message = bounds_problem(kind, scaled(kind, number))
    return Refusal(message, "value") if message else None


RULES: tuple[Rule, ...] = (
    Rule("known practice and vendor", ("practice", "vendor"),
         "unknown practice or vendor, or another than the inbox folder names", known_owner),
    Rule("known KPI", ("kpi",), "unknown KPI", known_kpi),
    Rule("a period in reach", PERIOD_COLUMNS,
         "a period that cannot be read, is in the future, before 2000 or longer than a year", readable_period),
    Rule("a segment of the known kinds", ("segment",),
         "segment must be all, payer:<name>, location:<name> or provider:<name>", valid_segment),
    Rule("a value in its KPI's bounds", VALUE_COLUMNS,
         "a value that is missing, not a number, in an unknown unit or beyond its KPI's bounds", valid_value,
         alike=lambda texts, context: context.value_kind(*texts)),
)
