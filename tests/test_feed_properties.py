"""Issue 3, as properties: random bytes and mutated valid files never crash the parser, never store part of a
file, and every problem names a row (and, where there is one, a column). Checked on PostgreSQL (COPY into the
staging table) and on SQLite (batched inserts), since the staging path differs between the two."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from config import BUNDLED_DIR, Config, load_config
from feeds.parse import Table, json_table, read_table
from feeds.validate import FeedOrigin, Problem, validate_table
from intake.ingest import ingest_path, is_pulse_export
from storage.db import engine_for, session_scope, upgrade
from storage.models import FeedFile, FeedRejection, Observation, ObservationRevision
from storage.uploads import IngestResult
from tests.support.services import drop_postgres_database, fresh_postgres_database

TODAY = dt.date(2026, 11, 23)
PRACTICE, VENDOR = "oakridge-fm", "acme-billing"
HEADER = "practice,vendor,kpi,period,value,segment"
PERIODS = [f"2026-{month:02d}" for month in range(1, 11)]
SEGMENTS = ["all", "payer:Aetna", "provider:p0001"]
BASE_VALUES = {"days_in_ar": 38.0, "denial_rate": 5.5, "net_collections": 48250.0}

POSTGRES_EXAMPLES, SQLITE_EXAMPLES, PURE_EXAMPLES = 150, 60, 300
DB_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}

# -- fixtures: one database per module (hypothesis runs every example inside one test call) ---------------------


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    url = fresh_postgres_database("vw_props")
    upgrade(url)
    yield url
    engine_for(url).dispose()
    drop_postgres_database(url)


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'vendorwatch.sqlite'}"
    upgrade(url)
    yield url
    engine_for(url).dispose()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feeds")


# -- strategies -------------------------------------------------------------------------------------------------

CSV_ALPHABET = st.sampled_from(
    [*",;\t\"\n\r %$-.:()", *"0123456789", *"abcdefgkprtvWy", "\x00", "\ufeff", "\u00e9", "\u00a0", "\u20ac",
     "\u2028", "all", "provider:", "payer:", "2026-", "days_in_ar", "denial_rate", PRACTICE, VENDOR]
)
csv_like_text = st.lists(CSV_ALPHABET, max_size=200).map("".join)


def encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


random_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda tail: (HEADER + "\n").encode() + tail, st.binary(max_size=2048)),
    st.builds(encoded, csv_like_text, st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"])),
    st.builds(lambda text: (HEADER + "\n" + text).encode(), csv_like_text),
    st.builds(lambda text: ('{"practice": "oakridge-fm", "vendor": "acme-billing", "observations": ' + text).encode(),
              st.lists(st.sampled_from(['[', ']', '{', '}', ',', ':', '"kpi"', '"value"', '"period"', '"2026-03"',
                                        '"days_in_ar"', '41', '-1', '1e999', 'null', 'true', '"x"']),
                       max_size=300).map("".join)),
)


def valid_feed(shift: int) -> str:
    """A clean long CSV: a few KPIs for oakridge-fm / acme-billing, 2026-01..2026-10, three segments."""
    lines = [HEADER]
    for kpi, base in BASE_VALUES.items():
        for period in PERIODS:
            for segment in SEGMENTS:
                lines.append(f"{PRACTICE},{VENDOR},{kpi},{period},{base + shift / 10:g},{segment}")
    return "\n".join(lines) + "\n"


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One damage a real export suffers: a byte or character lost, added or changed, lines swapped or doubled,
    a truncation, a surplus or stretched cell, another delimiter on one line, another encoding."""
    kind = draw(st.sampled_from([
        "delete", "insert_byte", "replace_byte", "insert_char", "replace_char", "swap_lines", "duplicate_line",
        "truncate", "insert_cell", "stretch_cell", "delimiter", "encoding", "any_cell", "any_cell",
    ]))
    at = draw(st.integers(0, max(0, len(data) - 1)))
    if kind == "delete":
        return data[:at] + data[at + 1:]
    if kind == "insert_byte":
        return data[:at] + draw(st.binary(min_size=1, max_size=1)) + data[at:]
    if kind == "replace_byte":
        return data[:at] + draw(st.binary(min_size=1, max_size=1)) + data[at + 1:]
    if kind in ("insert_char", "replace_char"):
        char = draw(st.one_of(CSV_ALPHABET, st.characters())).encode("utf-8", errors="replace")
        return data[:at] + char + data[at + (kind == "replace_char"):]
    if kind == "truncate":
        return data[:at]
    lines = data.split(b"\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    if kind == "swap_lines":
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "duplicate_line":
        lines.insert(j, lines[i])
    elif kind in ("insert_cell", "stretch_cell"):
        cells = lines[i].split(b",")
        k = draw(st.integers(0, len(cells)))
        if kind == "insert_cell":
            cells.insert(k, draw(csv_like_text).encode("utf-8", errors="replace"))
        elif k < len(cells):
            cells[k] = cells[k] * draw(st.sampled_from([2, 3, 20, 60]))
        lines[i] = b",".join(cells)
    elif kind == "any_cell":  # any text at all in one cell of a data row, quoted as a spreadsheet would
        cells = lines[max(i, 1) % len(lines)].split(b",")
        prefix = draw(st.sampled_from(["", "provider:", "payer:", "location:"]))
        text = prefix + draw(st.one_of(st.text(max_size=20), st.text(min_size=180, max_size=260)))
        cells[draw(st.integers(0, len(cells) - 1))] = ('"' + text.replace('"', '""') + '"').encode(errors="replace")
        lines[max(i, 1) % len(lines)] = b",".join(cells)
    elif kind == "delimiter":
        lines[i] = lines[i].replace(b",", draw(st.sampled_from([b";", b"\t", b", ", b"|"])))
    else:  # encoding: the same text as another program would have saved it
        text = data.decode("utf-8", errors="replace")
        target = draw(st.sampled_from(["cp1252", "utf-8-sig", "utf-16", "latin-1", "crlf"]))
        return text.replace("\n", "\r\n").encode() if target == "crlf" else encoded(text, target)
    return b"\n".join(lines)


@st.composite
def mutated_feed(draw: st.DrawFn) -> bytes:
    data = valid_feed(draw(st.integers(0, 40))).encode()
    for _ in range(draw(st.integers(1, 4))):
        data = draw(mutation(data))
    return data


# -- what the database holds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    feed_files: int
    rejections: int
    observations: int
    revisions: int


def snapshot(url: str) -> Snapshot:
    with session_scope(url) as session:
        counts = [int(session.scalar(select(func.count()).select_from(model)) or 0)
                  for model in (FeedFile, FeedRejection, Observation, ObservationRevision)]
    return Snapshot(*counts)


def stored_for(url: str, data: bytes) -> tuple[FeedFile, list[tuple[str, str, str, str, str, float]], int]:
    """The feed_file row of these bytes, the observations it wrote, and the revisions it made."""
    with session_scope(url) as session:
        feed = session.scalars(select(FeedFile).where(FeedFile.sha256 == hashlib.sha256(data).hexdigest())).one()
        rows = [(o.practice_id, o.vendor_id, o.kpi, o.period, o.segment, o.value)
                for o in session.scalars(select(Observation).where(Observation.feed_file_id == feed.id))]
        revisions = int(session.scalar(select(func.count()).select_from(ObservationRevision)
                                       .where(ObservationRevision.new_feed_file_id == feed.id)) or 0)
        return feed, rows, revisions


_names = itertools.count()


def ingest_bytes(data: bytes, config: Config, url: str, workdir: Path, suffix: str = ".csv") -> IngestResult:
    path = workdir / f"example-{next(_names)}{suffix}"
    path.write_bytes(data)
    try:
        return ingest_path(path, config, today=TODAY, database_url=url)
    finally:
        path.unlink()


def assert_every_problem_names_its_row(problems: list[Problem]) -> None:
    assert problems, "a rejected file must say why"
    for problem in problems:
        assert isinstance(problem.row, int) and not isinstance(problem.row, bool) and problem.row >= 1, problem
        assert isinstance(problem.message, str) and problem.message.strip(), problem
        assert problem.column is None or isinstance(problem.column, str), problem


def in_memory_table(data: bytes, as_json: bool) -> Table:
    """The same bytes read whole, as the in-memory path reads them (JSON: a file named .json or starting with {)."""
    if as_json or data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return json_table(data)
    return read_table(data)


def assert_all_or_nothing(data: bytes, result: IngestResult, before: Snapshot, config: Config, url: str,
                          as_json: bool = False) -> None:
    """The invariants of issue 3 for one ingested file."""
    after = snapshot(url)
    assert result.status in ("accepted", "duplicate", "rejected")
    if result.status == "rejected":
        assert_every_problem_names_its_row(result.problems)
        assert result.problem_count >= len(result.problems)
        assert after == Snapshot(before.feed_files, before.rejections + 1, before.observations, before.revisions), (
            "a rejected file stores nothing but its rejection"
        )
        return
    if result.status == "duplicate":
        assert after == before, "the same bytes twice are a no-op"
        return
    assert result.counts is not None and result.problems == []
    feed, rows, revisions = stored_for(url, data)
    assert feed.rows == result.rows
    assert after == Snapshot(before.feed_files + 1, before.rejections, before.observations + result.counts.inserted,
                             before.revisions + result.counts.revised)
    assert result.counts.inserted + result.counts.revised + result.counts.unchanged == result.rows
    assert len(rows) == result.counts.inserted + result.counts.revised
    assert revisions == result.counts.revised
    # Everything stored came from a row of this very file: the in-memory reading of the same bytes agrees.
    expected, problems = validate_table(in_memory_table(data, as_json), config, FeedOrigin(), TODAY)
    assert problems == [], "the streaming path accepted what the in-memory path rejects"
    assert len(expected) == result.rows
    in_file = {(o.practice_id, o.vendor_id, o.kpi, o.period.label, o.segment, o.value) for o in expected}
    assert set(rows) <= in_file


# -- the properties -----------------------------------------------------------------------------------------------

JSON_TOO_DEEP = b'{"observations": ' + b"[" * 100_000  # hypothesis raises the recursion limit while it runs
JSON_HUGE_NUMBER = b'{"observations": [{"kpi": "days_in_ar", "period": "2026-03", "value": ' + b"4" * 5000 + b"}]}"
STRETCHED_SEGMENT = (f"{HEADER}\n{PRACTICE},{VENDOR},days_in_ar,2026-03,41,provider:{'p0001' * 50}\n").encode()
JSON_SURROGATE_SEGMENT = (b'{"practice": "oakridge-fm", "vendor": "acme-billing", "observations": [{"kpi":'
                          b' "days_in_ar", "period": "2026-03", "value": 41, "segment": "provider:\\ud800"}]}')
NUL_IN_SEGMENT = (f"{HEADER}\n{PRACTICE},{VENDOR},days_in_ar,2026-03,41,provider:p\x000001\n").encode()


@pytest.mark.parametrize("database", ["postgres_database", "sqlite_database"])
def test_random_bytes_never_crash_ingest_and_a_rejection_stores_nothing_but_names_every_row(
    database: str, request: pytest.FixtureRequest, config: Config, workdir: Path
) -> None:
    url = request.getfixturevalue(database)

    @settings(max_examples=POSTGRES_EXAMPLES if database == "postgres_database" else SQLITE_EXAMPLES, **DB_SETTINGS)
    @given(data=random_bytes, suffix=st.sampled_from([".csv", ".csv", ".json", ".txt"]))
    @example(data=JSON_TOO_DEEP, suffix=".json")
    @example(data=JSON_HUGE_NUMBER, suffix=".json")
    @example(data=JSON_SURROGATE_SEGMENT, suffix=".json")
    @example(data=STRETCHED_SEGMENT, suffix=".csv")
    @example(data=NUL_IN_SEGMENT, suffix=".csv")
    @example(data=b"", suffix=".csv")
    def check(data: bytes, suffix: str) -> None:
        if is_pulse_export(data[:200]):
            return  # a staff pulse export, another parser
        before = snapshot(url)
        result = ingest_bytes(data, config, url, workdir, suffix)
        assert_all_or_nothing(data, result, before, config, url, as_json=suffix == ".json")

    check()


@pytest.mark.parametrize("database", ["postgres_database", "sqlite_database"])
def test_mutated_valid_files_are_stored_whole_from_their_own_rows_or_rejected_whole(
    database: str, request: pytest.FixtureRequest, config: Config, workdir: Path
) -> None:
    url = request.getfixturevalue(database)
    clean = valid_feed(0).encode()
    before = snapshot(url)
    first = ingest_bytes(clean, config, url, workdir)
    assert first.status in ("accepted", "duplicate"), first.problems
    assert_all_or_nothing(clean, first, before, config, url)

    @settings(max_examples=POSTGRES_EXAMPLES if database == "postgres_database" else SQLITE_EXAMPLES, **DB_SETTINGS)
    @given(data=mutated_feed())
    @example(data=STRETCHED_SEGMENT)
    @example(data=NUL_IN_SEGMENT)
    def check(data: bytes) -> None:
        before = snapshot(url)
        result = ingest_bytes(data, config, url, workdir)
        assert_all_or_nothing(data, result, before, config, url)

    check()


@settings(max_examples=PURE_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(random_bytes, mutated_feed()),
       origin=st.sampled_from([FeedOrigin(), FeedOrigin(PRACTICE, VENDOR), FeedOrigin(PRACTICE, None)]))
@example(data=STRETCHED_SEGMENT, origin=FeedOrigin())
@example(data=NUL_IN_SEGMENT, origin=FeedOrigin())
def test_validate_table_never_raises_and_returns_observations_or_problems_never_both(
    config: Config, data: bytes, origin: FeedOrigin
) -> None:
    observations, problems = validate_table(read_table(data), config, origin, TODAY)

    assert bool(observations) != bool(problems), "a table is either accepted with its rows or rejected with why"
    if problems:
        assert_every_problem_names_its_row(problems)
    for observation in observations:  # what is accepted fits observation.segment (VARCHAR(200), no NUL, UTF-8)
        assert len(observation.segment) <= 200
        observation.segment.encode("utf-8")
        assert "\x00" not in observation.segment
