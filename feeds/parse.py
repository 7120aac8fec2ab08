"""Bytes to rows: encoding, delimiter and header normalisation. No knowledge of KPIs here."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Reading a delivered file's bytes is shared with pulse/ (storage/uploads.py); named here as feeds always did.
from storage.uploads import CHUNK, Fingerprint, decode, fingerprint, sniff_delimiter  # noqa: F401

# A leading group never starts with 0: '0,123' is no thousands grouping, but a decimal comma.
THOUSANDS = re.compile(r"^[-+(]?[1-9]\d{0,2}(,\d{3})+(\.\d*)?%?\)?$")
# A comma that can only be a decimal one (THOUSANDS is asked first): '9,8', '12,34', '0,123', '1.234,5'.
DECIMAL_COMMA = re.compile(r"^[-+(]?(\d+|\d{1,3}(\.\d{3})+),\d+%?\)?$")
SPACED_THOUSANDS = re.compile(r"^[-+(]?\d{1,3}( \d{3})+(\.\d*)?%?\)?$")
SPACE = re.compile("[ \u00a0\u202f]")  # what locales put between thousands: a space, a no-break, a narrow one
SPACES = re.compile(" +")
# A number once its '$', '%', thousands separators and parentheses are gone: ASCII digits, a point, an exponent.
# float() reads more ('4_1' as 41, full-width digits, 'nan', 'infinity'), none of which a vendor means.
# Each part can match only one way, so a long cell that is no number fails in linear time.
PLAIN_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", re.ASCII)


class UnreadableRow(Exception):
    """The CSV itself cannot be read at this row (an unterminated quote, a cell beyond the size limit)."""

    def __init__(self, row: int, message: str):
        super().__init__(f"row {row}: {message}")
        self.row, self.message = row, message


@dataclass(frozen=True)
class Table:
    """A parsed CSV: normalised header names and the data rows, numbered as a spreadsheet shows them.

    `rows` is a list for small in-memory tables and a one-pass iterator for files streamed from disk."""

    columns: list[str]
    rows: list[tuple[int, dict[str, str]]] | Iterator[tuple[int, dict[str, str]]]
    headers: list[str] | None = None  # as written in the file, for error messages
    error: UnreadableRow | None = None  # where an in-memory table stopped being readable CSV


def is_json_feed(path: Path, fp: Fingerprint) -> bool:
    """A JSON feed: named .json, or its first character (after a BOM and whitespace) opens an object."""
    return path.suffix.lower() == ".json" or fp.head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def read_table(data: bytes) -> Table:
    """A whole CSV held in memory (small files, tests)."""
    text = decode(data)
    try:
        table = table_from_lines(io.StringIO(text, newline=""), sniff_delimiter(text))
    except UnreadableRow as exc:
        return Table(columns=[], rows=[], error=exc)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        rows.extend(table.rows)
    except UnreadableRow as exc:
        return Table(table.columns, rows, table.headers, error=exc)
    return Table(table.columns, rows, table.headers)


def stream_table(stream: io.TextIOBase) -> Table:
    """A CSV read row by row from an open text stream: memory stays flat whatever the file size."""
    first_line = stream.readline()
    stream.seek(0)
    return table_from_lines(stream, sniff_delimiter(first_line))


def table_from_lines(lines: io.TextIOBase, delimiter: str) -> Table:
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise UnreadableRow(1, f"the header row is not readable CSV ({exc})") from exc
    if header is None:
        return Table(columns=[], rows=[])
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    columns = [normalise_header(name) for name in header]
    return Table(columns=columns, rows=data_rows(reader, columns), headers=[name.strip() for name in header])


def data_rows(reader: Iterator[list[str]], columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    row_number = 1
    try:
        for row_number, row in numbered_rows(reader, columns):
            yield row_number, row
    except csv.Error as exc:
        raise UnreadableRow(row_number + 1, f"not readable CSV from here on ({exc})") from exc


def is_blank(cells: Iterable[str]) -> bool:
    """Nothing but empty or space-only cells: a row every path skips (the streamed one asks per distinct cell)."""
    return not any(map(str.strip, cells))


def numbered_rows(reader: Iterator[list[str]], columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    width = len(columns)
    for row_number, record in enumerate(reader, start=2):
        if is_blank(record):
            continue
        row = dict(zip(columns, (cell.strip() for cell in record), strict=False))
        if len(record) < width:
            row.update(dict.fromkeys(columns[len(record) :], ""))
        elif len(record) > width:
            row["__extra__"] = ",".join(record[width:])
        yield row_number, row


def parse_number(text: str) -> tuple[float, bool]:
    """A number as vendors write it: '9.8', '9.8%', '$1,234.50', ' 1 234 '. Returns (value, had_percent_sign).

    Raises AmbiguousNumber for what float() would read but no person means (4_1, full-width digits, '4 1'), and
    ValueError for anything else that is not a number."""
    if PLAIN_NUMBER.fullmatch(text):
        return finite(text), False
    cleaned = text.strip().replace("$", "")
    if SPACE.search(cleaned):
        cleaned = without_spaces(cleaned)
    if "," in cleaned and not THOUSANDS.match(cleaned):
        # '9,8' is a decimal comma, not 98: refuse to store it, but say how to write it.
        if DECIMAL_COMMA.match(cleaned):
            raise DecimalComma(with_decimal_point(text.strip()))
        raise ValueError("commas may only separate thousands (1,234.5); write decimals with a point")
    cleaned = cleaned.replace(",", "")
    has_percent = cleaned.endswith("%")
    cleaned = cleaned.removesuffix("%")
    if cleaned.startswith("(") and cleaned.endswith(")"):
        cleaned = "-" + cleaned[1:-1]
    if not PLAIN_NUMBER.fullmatch(cleaned):
        raise why_not_a_number(cleaned)
    return finite(cleaned), has_percent


class AmbiguousNumber(ValueError):
    """A text Python's float() reads as a number, but not one a person means: the reason says why."""


class DecimalComma(ValueError):
    """A number written with a decimal comma ('9,8'); `instead` is how to write it ('9.8')."""

    def __init__(self, instead: str):
        super().__init__(f"decimal comma: write {instead}")
        self.instead = instead


def with_decimal_point(text: str) -> str:
    """'9,8%' -> '9.8%', '1.234,5' -> '1234.5': the points there were thousands separators."""
    return text.replace(".", "").replace(",", ".")


def without_spaces(text: str) -> str:
    """'1 234' is 1234 as some locales write it (with a space, a no-break or a narrow no-break space); '4 1' is no
    number anyone means. Spaces beside a sign, '$', '%' or a parenthesis just go."""
    spaced = SPACES.sub(lambda run: run[0] if between_digits(run) else "", SPACE.sub(" ", text))
    if " " in spaced and not SPACED_THOUSANDS.match(spaced):
        raise AmbiguousNumber("a space between digits may only separate thousands (1 234.5)")
    return spaced.replace(" ", "")


def between_digits(run: re.Match[str]) -> bool:
    text, start, end = run.string, run.start(), run.end()
    return start > 0 and end < len(text) and text[start - 1].isdigit() and text[end].isdigit()


def why_not_a_number(cleaned: str) -> ValueError:
    if "_" in cleaned:
        return AmbiguousNumber("an underscore is no digit separator here")
    if any(character.isdigit() and not character.isascii() for character in cleaned):
        return AmbiguousNumber("write the digits 0-9")
    return ValueError("not a plain number")  # words, 'nan', 'inf', '9.8.1': nothing to explain beyond that


def finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise AmbiguousNumber("too large to store")
    return value


JSON_FIELDS = {"kpi", "period", "period_start", "period_end", "value", "segment", "unit"}


def json_table(data: bytes) -> Table:
    """The JSON feed as a long table: {"practice", "vendor", "observations": [{kpi, period, value, ...}]}.

    Row N is the Nth entry of `observations` (there is no header row in JSON). Raises ValueError with a
    'row|column|message' reason for a document that is not that shape."""
    import json

    try:
        document = json.loads(decode(data), object_pairs_hook=keep_repeats)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.lineno}||not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise ValueError("1||not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise ValueError("1||not valid JSON: a number has too many digits") from exc
    if not isinstance(document, dict) or not isinstance(document.get("observations"), list):
        raise ValueError('1|observations|a JSON feed is an object with an "observations" list')
    check_document_keys(document)
    shared = {key: str(document[key]).strip() for key in ("practice", "vendor") if document.get(key) is not None}
    columns = ["practice", "vendor", *sorted(JSON_FIELDS)]
    return Table(columns=columns, rows=json_rows(document["observations"], shared), headers=columns)


def json_rows(entries: list[object], shared: dict[str, str]) -> Iterator[tuple[int, dict[str, str]]]:
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            yield number, {**shared, "__extra__": "entry is not an object"}
            continue
        row = {**shared, **{key: "" if value is None else str(value).strip() for key, value in entry.items()}}
        unknown = sorted(set(entry) - JSON_FIELDS)
        if unknown:
            row["__extra__"] = f"unknown field(s) {', '.join(unknown)}"
            for key in unknown:
                row.pop(key, None)
        if (repeated := repeated_key(entry)) is not None:
            row["__repeated__"] = repeated
        yield number, row


class RepeatedKeys(dict[str, object]):
    """A JSON object that gives a key more than once: json keeps the last one without a word."""

    repeated = ""  # the first key given twice


def keep_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json's object_pairs_hook: the object as json makes it, marked if it gave a key twice."""
    made = dict(pairs)
    if len(made) == len(pairs):
        return made
    marked = RepeatedKeys(made)
    seen: set[str] = set()
    marked.repeated = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
    return marked


def repeated_key(node: object) -> str | None:
    """Of an object: its key given twice, else its key whose value gives a key twice at any depth; None if none."""
    if isinstance(node, RepeatedKeys):
        return node.repeated
    if isinstance(node, dict):
        return next((str(key) for key, value in node.items() if gives_a_key_twice(value)), None)
    return None


def gives_a_key_twice(value: object) -> bool:
    """Walked with a stack, not recursion: json reads documents nested deeper than Python's own stack allows."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, RepeatedKeys):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_document_keys(document: dict[str, object]) -> None:
    """A key given twice outside the observations (whose entries are rows, each judged on its own)."""
    if isinstance(document, RepeatedKeys):
        raise ValueError(f"1|{as_column(document.repeated)}|given twice in the document: which one is meant is"
                         " ambiguous")
    if (inside := repeated_key({k: v for k, v in document.items() if k != "observations"})) is not None:
        raise ValueError(f"1|{as_column(inside)}|a key given twice inside this one: which one is meant is ambiguous")


def as_column(key: str) -> str:
    return key.replace("|", "/")  # '|' would split the reason json_table raises
