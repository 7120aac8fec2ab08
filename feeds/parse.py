"""Bytes to rows: encoding, delimiter and header normalisation. No knowledge of KPIs here."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

THOUSANDS = re.compile(r"^[-+(]?\d{1,3}(,\d{3})+(\.\d*)?%?\)?$")


CHUNK = 1 << 20


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


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    encoding: str
    size: int
    head: bytes


def fingerprint(path: Path) -> Fingerprint:
    """One streaming pass: SHA-256 of the bytes, and whether they are UTF-8 (else cp1252, as Excel writes)."""
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    utf8, size, head = True, 0, b""
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            head = head or chunk[:4096]
            digest.update(chunk)
            size += len(chunk)
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return Fingerprint(digest.hexdigest(), "utf-8-sig" if utf8 else "cp1252", size, head)


def is_json_feed(path: Path, fp: Fingerprint) -> bool:
    """A JSON feed: named .json, or its first character (after a BOM and whitespace) opens an object."""
    return path.suffix.lower() == ".json" or fp.head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def decode(data: bytes) -> str:
    """UTF-8 with or without BOM, falling back to cp1252 (what Excel on Windows writes)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def sniff_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {delimiter: first_line.count(delimiter) for delimiter in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


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


def numbered_rows(reader: Iterator[list[str]], columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    width = len(columns)
    for row_number, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        row = dict(zip(columns, (cell.strip() for cell in record), strict=False))
        if len(record) < width:
            row.update(dict.fromkeys(columns[len(record) :], ""))
        elif len(record) > width:
            row["__extra__"] = ",".join(record[width:])
        yield row_number, row


def parse_number(text: str) -> tuple[float, bool]:
    """A number as vendors write it: '9.8', '9.8%', '$1,234.50', ' 1 234 '. Returns (value, had_percent_sign)."""
    cleaned = text.strip().replace("$", "").replace(" ", "").replace("\u00a0", "")
    if "," in cleaned and not THOUSANDS.match(cleaned):
        # '9,8' is a decimal comma, not 98: refuse to guess rather than store a value ten times too large.
        raise ValueError("commas may only separate thousands (1,234.5); write decimals with a point")
    cleaned = cleaned.replace(",", "")
    has_percent = cleaned.endswith("%")
    cleaned = cleaned.removesuffix("%")
    if cleaned.startswith("(") and cleaned.endswith(")"):
        cleaned = "-" + cleaned[1:-1]
    value = float(cleaned)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return value, has_percent


JSON_FIELDS = {"kpi", "period", "period_start", "period_end", "value", "segment", "unit"}


def json_table(data: bytes) -> Table:
    """The JSON feed as a long table: {"practice", "vendor", "observations": [{kpi, period, value, ...}]}.

    Row N is the Nth entry of `observations` (there is no header row in JSON). Raises ValueError with a
    'row|column|message' reason for a document that is not that shape."""
    import json

    try:
        document = json.loads(decode(data))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.lineno}||not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise ValueError("1||not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise ValueError("1||not valid JSON: a number has too many digits") from exc
    if not isinstance(document, dict) or not isinstance(document.get("observations"), list):
        raise ValueError('1|observations|a JSON feed is an object with an "observations" list')
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
        yield number, row
