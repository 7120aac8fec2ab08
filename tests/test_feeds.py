"""Feeds: the messy shapes real exports have are read; every broken row is rejected with its spreadsheet row and
column; and through the real PostgreSQL, a file is stored whole, once, with corrections kept as revisions."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config import Config, load_config
from feeds.parse import parse_number, read_table
from feeds.validate import FeedOrigin, ObservationIn, Problem, spreadsheet_column, validate_table
from intake.ingest import ingest_path
from storage.db import session_scope
from storage.models import FeedFile, FeedRejection, Observation, ObservationRevision
from storage.periods import parse_period
from tests.conftest import TEST_CONFIG

TODAY = dt.date(2026, 6, 15)
HEADER = "practice,vendor,kpi,period,value\n"
GOOD_ROW = "maple-clinic,claimright,days_in_ar,2026-03,41\n"
INBOX = FeedOrigin(practice_id="maple-clinic", vendor_id="claimright")


@pytest.fixture(scope="module")
def config() -> Config:
    """The test configuration (practice maple-clinic, vendor claimright), its channels pointed at nothing.
    Loaded once: a Config is immutable."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL"):
            monkeypatch.setenv(name, "json://127.0.0.1:9/")
        return load_config(TEST_CONFIG)


def validate(
    data: bytes, config: Config, origin: FeedOrigin | None = None
) -> tuple[list[ObservationIn], list[Problem]]:
    return validate_table(read_table(data), config, origin or FeedOrigin(), TODAY)


def summary(observations: list[ObservationIn]) -> list[tuple[str, str, str, float]]:
    return [(o.kpi, o.period.label, o.segment, round(o.value, 6)) for o in observations]


# -- parsing numbers and periods ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "had_percent_sign"),
    [
        ("9.8", 9.8, False),
        ("9.8%", 9.8, True),
        (" 9.8 % ", 9.8, True),
        ("$1,234.50", 1234.5, False),
        ("1,234,567", 1234567.0, False),
        ("1 234", 1234.0, False),
        ("1\u00a0234", 1234.0, False),
        ("(1,200.00)", -1200.0, False),
        ("-$5", -5.0, False),
        ("0", 0.0, False),
        (".5", 0.5, False),
    ],
)
def test_parse_number_reads_numbers_as_vendors_write_them(text: str, value: float, had_percent_sign: bool) -> None:
    assert parse_number(text) == (pytest.approx(value), had_percent_sign)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "N/A", "nan", "inf", "-inf", "9,8", "1.234,5", "12,34", "1,2345", "0,123", "9.8.1", "--5"],
    ids=lambda t: t or "empty",
)
def test_parse_number_rejects_what_is_not_a_plain_number(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


@pytest.mark.parametrize(
    ("text", "start", "end", "label"),
    [
        ("2026-03", "2026-03-01", "2026-03-31", "2026-03"),
        ("2026-3", "2026-03-01", "2026-03-31", "2026-03"),
        ("2026-02", "2026-02-01", "2026-02-28", "2026-02"),
        ("2024-02", "2024-02-01", "2024-02-29", "2024-02"),
        (" 2026-12 ", "2026-12-01", "2026-12-31", "2026-12"),
        ("2026-W05", "2026-01-26", "2026-02-01", "2026-W05"),
        ("2026w5", "2026-01-26", "2026-02-01", "2026-W05"),
        ("2026-W01", "2025-12-29", "2026-01-04", "2026-W01"),
        ("2020-W53", "2020-12-28", "2021-01-03", "2020-W53"),
        ("2026-03-07", "2026-03-07", "2026-03-07", "2026-03-07"),
        ("2024-02-29", "2024-02-29", "2024-02-29", "2024-02-29"),
    ],
)
def test_parse_period_reads_months_iso_weeks_and_days(text: str, start: str, end: str, label: str) -> None:
    period = parse_period(text)

    assert (period.start.isoformat(), period.end.isoformat(), period.label) == (start, end, label)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("March 2026", "YYYY-MM, YYYY-Www or YYYY-MM-DD"),
        ("03/2026", "YYYY-MM, YYYY-Www or YYYY-MM-DD"),
        ("", "YYYY-MM, YYYY-Www or YYYY-MM-DD"),
        ("2026-13", "month 13"),
        ("2026-00", "month 0"),
        ("2026-W54", "week"),
        ("2025-W53", "week"),
        ("2026-W00", "week"),
        ("2026-02-30", "day"),
        ("2026-Q1", "YYYY-MM, YYYY-Www or YYYY-MM-DD"),
    ],
    ids=lambda v: v or "empty",
)
def test_parse_period_rejects_what_is_no_period(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_period(text)


# -- reading tables ----------------------------------------------------------------------------------------


def test_read_table_normalises_header_names_and_numbers_rows_like_a_spreadsheet() -> None:
    data = " Practice ; Vendor ;KPI;Period Start;VALUE\r\n\r\nmaple-clinic;claimright;days_in_ar;2026-03-01;41\r\n"

    table = read_table(data.encode())

    assert table.columns == ["practice", "vendor", "kpi", "period_start", "value"]
    assert table.rows == [
        (
            3,
            {
                "practice": "maple-clinic",
                "vendor": "claimright",
                "kpi": "days_in_ar",
                "period_start": "2026-03-01",
                "value": "41",
            },
        ),
    ]


@pytest.mark.parametrize(
    ("data", "columns"),
    [
        (b"\xef\xbb\xbfkpi,value\n", ["kpi", "value"]),
        ("kpi;Value;Segment\n".encode("cp1252"), ["kpi", "value", "segment"]),
        (b"kpi\tvalue\tunit\n", ["kpi", "value", "unit"]),
        (b"Period-Start,Period End\n", ["period_start", "period_end"]),
        (b"", []),
        (b"\xef\xbb\xbf", []),
    ],
    ids=["utf8_bom", "semicolons", "tabs", "dash_and_space", "empty", "bom_only"],
)
def test_read_table_finds_the_columns_whatever_the_encoding_and_delimiter(data: bytes, columns: list[str]) -> None:
    assert read_table(data).columns == columns


# -- accepted shapes ----------------------------------------------------------------------------------------

ACCEPTED = {
    "utf8_with_bom": (
        b"\xef\xbb\xbf" + HEADER.encode() + b"maple-clinic,claimright,denial_rate,2026-03,9.8\n",
        FeedOrigin(),
        [("denial_rate", "2026-03", "all", 9.8)],
    ),
    "cp1252_segment_name": (
        (
            HEADER.rstrip("\n") + ",segment\nmaple-clinic,claimright,denial_rate,2026-03,9.8,payer:Caf\u00e9 Health\n"
        ).encode("cp1252"),
        FeedOrigin(),
        [("denial_rate", "2026-03", "payer:Caf\u00e9 Health", 9.8)],
    ),
    "semicolons_and_messy_headers": (
        b" Practice ; Vendor ; KPI ;Period; Value \nmaple-clinic;claimright;denial_rate;2026-03;9.8\n",
        FeedOrigin(),
        [("denial_rate", "2026-03", "all", 9.8)],
    ),
    "tabs_and_crlf": (
        b"PRACTICE\tVENDOR\tKPI\tPERIOD\tVALUE\r\nmaple-clinic\tclaimright\tdays_in_ar\t2026-03\t41\r\n",
        FeedOrigin(),
        [("days_in_ar", "2026-03", "all", 41.0)],
    ),
    "percent_sign": (
        (HEADER + "maple-clinic,claimright,denial_rate,2026-03,9.8%\n").encode(),
        FeedOrigin(),
        [("denial_rate", "2026-03", "all", 9.8)],
    ),
    "dollars_with_thousands": (
        (HEADER + 'maple-clinic,claimright,net_collections,2026-03,"$1,234.50"\n').encode(),
        FeedOrigin(),
        [("net_collections", "2026-03", "all", 1234.5)],
    ),
    "ratio_unit_per_row": (
        (
            b"practice,vendor,kpi,period,value,unit\n"
            b"maple-clinic,claimright,denial_rate,2026-03,0.098,ratio\n"
            b"maple-clinic,claimright,denial_rate,2026-04,0.1,Ratio\n"
            b"maple-clinic,claimright,denial_rate,2026-05,9.8%,ratio\n"
            b"maple-clinic,claimright,denial_rate,2026-02,9.8,\n"
            b"maple-clinic,claimright,days_in_ar,2026-03,41,ratio\n"
        ),
        FeedOrigin(),
        [
            ("denial_rate", "2026-03", "all", 9.8),
            ("denial_rate", "2026-04", "all", 10.0),
            ("denial_rate", "2026-05", "all", 9.8),
            ("denial_rate", "2026-02", "all", 9.8),
            ("days_in_ar", "2026-03", "all", 41.0),
        ],
    ),
    "iso_weeks_and_days": (
        (
            HEADER
            + "maple-clinic,claimright,denial_rate,2026-W05,9.8\n"
            + "maple-clinic,claimright,denial_rate,2026-03-07,9.1\n"
            + "maple-clinic,claimright,denial_rate,2026-06-15,9.0\n"
        ).encode(),
        FeedOrigin(),
        [
            ("denial_rate", "2026-W05", "all", 9.8),
            ("denial_rate", "2026-03-07", "all", 9.1),
            ("denial_rate", "2026-06-15", "all", 9.0),
        ],
    ),
    "period_start_and_end_columns": (
        (
            b"practice,vendor,kpi,period_start,period_end,value\n"
            b"maple-clinic,claimright,days_in_ar,2026-03-01,2026-03-31,41\n"
            b"maple-clinic,claimright,days_in_ar,2026-01-26,2026-02-01,42\n"
            b"maple-clinic,claimright,days_in_ar,2026-03-02,2026-03-04,43\n"
            b"maple-clinic,claimright,days_in_ar,2026-04-02,,44\n"
        ),
        FeedOrigin(),
        [
            ("days_in_ar", "2026-03", "all", 41.0),
            ("days_in_ar", "2026-W05", "all", 42.0),
            ("days_in_ar", "2026-03-02..2026-03-04", "all", 43.0),
            ("days_in_ar", "2026-04-02", "all", 44.0),
        ],
    ),
    "segments": (
        (
            HEADER.rstrip("\n") + ",segment\n"
            "maple-clinic,claimright,denial_rate,2026-03,9.8,all\n"
            "maple-clinic,claimright,denial_rate,2026-03,12.5,payer:Aetna\n"
            "maple-clinic,claimright,denial_rate,2026-03,8.1,location:North Clinic\n"
            "maple-clinic,claimright,denial_rate,2026-03,7.7,provider:Dr. Lee\n"
            "maple-clinic,claimright,denial_rate,2026-04,9.9,\n"
            "maple-clinic,claimright,denial_rate,2026-05,9.7,ALL\n"
        ).encode(),
        FeedOrigin(),
        [
            ("denial_rate", "2026-03", "all", 9.8),
            ("denial_rate", "2026-03", "payer:Aetna", 12.5),
            ("denial_rate", "2026-03", "location:North Clinic", 8.1),
            ("denial_rate", "2026-03", "provider:Dr. Lee", 7.7),
            ("denial_rate", "2026-04", "all", 9.9),
            ("denial_rate", "2026-05", "all", 9.7),
        ],
    ),
    "practice_and_vendor_from_the_inbox_folder": (
        b"kpi,period,value\nDays_In_AR,2026-03,41\n",
        INBOX,
        [("days_in_ar", "2026-03", "all", 41.0)],
    ),
    "boundaries_of_the_ranges": (
        (
            HEADER
            + "maple-clinic,claimright,denial_rate,2026-01,0\n"
            + "maple-clinic,claimright,denial_rate,2026-02,100\n"
            + "maple-clinic,claimright,days_in_ar,2026-03,0\n"
            + "maple-clinic,claimright,net_collections,2026-03,0.00\n"
            + "maple-clinic,claimright,enps,2026-03,-12\n"
        ).encode(),
        FeedOrigin(),
        [
            ("denial_rate", "2026-01", "all", 0.0),
            ("denial_rate", "2026-02", "all", 100.0),
            ("days_in_ar", "2026-03", "all", 0.0),
            ("net_collections", "2026-03", "all", 0.0),
            ("enps", "2026-03", "all", -12.0),
        ],
    ),
}


@pytest.mark.parametrize(("data", "origin", "expected"), list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_messy_but_valid_exports_are_accepted(
    config: Config, data: bytes, origin: FeedOrigin, expected: list[tuple[str, str, str, float]]
) -> None:
    observations, problems = validate(data, config, origin)

    assert problems == []
    assert summary(observations) == expected
    assert {(o.practice_id, o.vendor_id) for o in observations} == {("maple-clinic", "claimright")}


def test_observations_remember_their_spreadsheet_row(config: Config) -> None:
    data = (HEADER + GOOD_ROW + "\n" + "maple-clinic,claimright,days_in_ar,2026-04,42\n").encode()

    observations, _ = validate(data, config)

    assert [o.row for o in observations] == [2, 4]


# -- rejections, each with its row and column ----------------------------------------------------------------

REJECTED_ROWS = {
    "unknown_kpi": ("maple-clinic,claimright,denial_rat,2026-03,9.8", "kpi", "denial_rat", "did you mean denial_rate?"),
    "unknown_practice": (
        "maple-clnic,claimright,denial_rate,2026-03,9.8",
        "practice",
        "maple-clnic",
        "unknown practice (did you mean maple-clinic?)",
    ),
    "unknown_vendor": (
        "maple-clinic,claimrite,denial_rate,2026-03,9.8",
        "vendor",
        "claimrite",
        "unknown vendor for practice maple-clinic (did you mean claimright?)",
    ),
    "period_in_words": ("maple-clinic,claimright,denial_rate,March 2026,9.8", "period", "March 2026", "YYYY-MM"),
    "period_month_13": ("maple-clinic,claimright,denial_rate,2026-13,9.8", "period", "2026-13", "month 13"),
    "period_impossible_day": ("maple-clinic,claimright,denial_rate,2026-02-30,9.8", "period", "2026-02-30", "day"),
    "value_in_words": ("maple-clinic,claimright,denial_rate,2026-03,nine", "value", "nine", "not a number"),
    "value_with_decimal_comma": ('maple-clinic,claimright,denial_rate,2026-03,"9,8"', "value", "9,8",
                                 "decimal comma: write 9.8"),
    "percent_above_100": ("maple-clinic,claimright,denial_rate,2026-03,100.5", "value", "100.5", "outside 0-100"),
    "percent_below_0": ("maple-clinic,claimright,denial_rate,2026-03,-0.1%", "value", "-0.1%", "outside 0-100"),
    "ratio_above_1": ("maple-clinic,claimright,denial_rate,2026-03,1.2,ratio", "value", "1.2", "outside 0-100"),
    "negative_days": ("maple-clinic,claimright,days_in_ar,2026-03,-3", "value", "-3", "negative days"),
    "negative_dollars": ("maple-clinic,claimright,net_collections,2026-03,-$5.00", "value", "-$5.00", "negative USD"),
    "accounting_negative_dollars": (
        'maple-clinic,claimright,net_collections,2026-03,"(1,200.00)"',
        "value",
        "(1,200.00)",
        "negative USD",
    ),
    "future_month": ("maple-clinic,claimright,denial_rate,2026-07,9.8", "period", "2026-07", "in the future"),
    "future_week": ("maple-clinic,claimright,denial_rate,2026-W26,9.8", "period", "2026-W26", "in the future"),
    "future_day": ("maple-clinic,claimright,denial_rate,2026-06-16,9.8", "period", "2026-06-16", "in the future"),
    "missing_value": ("maple-clinic,claimright,denial_rate,2026-03,", "value", "", "never read as zero"),
    "blank_value": ("maple-clinic,claimright,denial_rate,2026-03,   ", "value", "", "never read as zero"),
    "bad_segment": ("maple-clinic,claimright,denial_rate,2026-03,9.8,,payor:Aetna", "segment", "payor:Aetna", "payer:"),
    "period_end_before_start": (
        "maple-clinic,claimright,denial_rate,,9.8,,,2026-03-31,2026-03-01",
        "period_start",
        "2026-03-31",
        "before period_start",
    ),
}
FULL_HEADER = "practice,vendor,kpi,period,value,unit,segment,period_start,period_end\n"


@pytest.mark.parametrize(("row", "column", "value", "message"), list(REJECTED_ROWS.values()), ids=list(REJECTED_ROWS))
def test_a_bad_row_rejects_the_whole_file_naming_its_row_and_column(
    config: Config, row: str, column: str, value: str, message: str
) -> None:
    data = (FULL_HEADER + GOOD_ROW + row + "\n").encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert [(p.row, p.column, p.value) for p in problems] == [(3, column, value)]
    assert message in problems[0].message


@pytest.mark.parametrize(
    ("cell", "instead"),
    [("9,8", "9.8"), ("9,8%", "9.8%"), ("12,34", "12.34"), ("0,123", "0.123"), ("1.234,5", "1234.5"),
     ("$48,25", "$48.25")],
)
def test_a_decimal_comma_is_refused_saying_how_to_write_the_number(config: Config, cell: str, instead: str) -> None:
    data = (HEADER + f'maple-clinic,claimright,net_collections,2026-03,"{cell}"\n').encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert problems == [Problem(2, "value", cell, f"decimal comma: write {instead}")]


def test_a_semicolon_file_with_decimal_commas_is_told_how_to_write_each_one(config: Config) -> None:
    """A European export: semicolons between cells, commas in the numbers. Every such cell is named, so the
    operator fixes the file in one pass; with points it is accepted."""
    data = (b"practice;vendor;kpi;period;value\n"
            b"maple-clinic;claimright;denial_rate;2026-03;9,8\n"
            b"maple-clinic;claimright;days_in_ar;2026-03;41,5\n")

    observations, problems = validate(data, config)
    accepted, _ = validate(data.replace(b"9,8", b"9.8").replace(b"41,5", b"41.5"), config)

    assert observations == []
    assert problems == [Problem(2, "value", "9,8", "decimal comma: write 9.8"),
                        Problem(3, "value", "41,5", "decimal comma: write 41.5")]
    assert summary(accepted) == [("denial_rate", "2026-03", "all", 9.8), ("days_in_ar", "2026-03", "all", 41.5)]


@pytest.mark.parametrize("header", ["comments", "notes", "date", "enps_score"])
def test_an_unknown_column_unlike_every_known_name_gets_no_suggestion(config: Config, header: str) -> None:
    """'comments' is no slip of 'enps' (nor of 'segment'): a far-fetched "did you mean" only misleads."""
    long = (HEADER.rstrip("\n") + f",{header}\n" + GOOD_ROW.rstrip("\n") + ",x\n").encode()
    wide = f"period,days_in_ar,{header}\n2026-03,41,x\n".encode()

    for data, origin in ((long, None), (wide, INBOX)):
        _, problems = validate(data, config, origin)
        assert [(p.row, p.column) for p in problems] == [(1, header)]
        assert problems[0].message.startswith("unknown column")
        assert "did you mean" not in problems[0].message, problems[0].message


@pytest.mark.parametrize(("header", "meant"), [("vaule", "value"), ("perod", "period"), ("vender", "vendor"),
                                               ("denial_rat", "denial_rate"), ("clean_claims", "clean_claim_rate")])
def test_an_unknown_column_close_to_a_known_name_suggests_it(config: Config, header: str, meant: str) -> None:
    long = (HEADER.rstrip("\n") + f",{header}\n" + GOOD_ROW.rstrip("\n") + ",x\n").encode()
    wide = f"period,days_in_ar,{header}\n2026-03,41,x\n".encode()

    data, origin = (wide, INBOX) if "_" in meant else (long, None)
    _, problems = validate(data, config, origin)
    assert any(p.column == header and f"(did you mean {meant}?)" in p.message for p in problems), problems


def test_a_missing_value_is_never_read_as_zero(config: Config) -> None:
    data = (HEADER + "maple-clinic,claimright,denial_rate,2026-03,\n").encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert problems == [
        Problem(2, "value", "", "missing value (a missing value is never read as zero)"),
    ]


def test_the_same_kpi_period_and_segment_twice_names_the_earlier_row(config: Config) -> None:
    data = (
        HEADER
        + "maple-clinic,claimright,days_in_ar,2026-02,40\n"
        + "maple-clinic,claimright,days_in_ar,2026-03,41\n"
        + "maple-clinic,claimright,days_in_ar,2026-02,42\n"
    ).encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert [(p.row, p.column, p.value) for p in problems] == [(4, "period", "2026-02")]
    assert "already given in row 2" in problems[0].message


def test_a_week_written_two_ways_is_the_same_period_twice(config: Config) -> None:
    data = HEADER + "maple-clinic,claimright,days_in_ar,2026-W05,40\nmaple-clinic,claimright,days_in_ar,2026w5,41\n"

    observations, problems = validate(data.encode(), config)

    assert observations == []
    assert [(p.row, p.column) for p in problems] == [(3, "period")]
    assert "row 2" in problems[0].message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (HEADER.encode(), "the file has a header but no data rows"),
        ((HEADER + "\n,,,,\n\n").encode(), "the file has a header but no data rows"),
    ],
    ids=["empty", "bom_only", "blank_lines", "header_only", "header_and_blank_rows"],
)
def test_a_file_without_data_rows_is_rejected(config: Config, data: bytes, message: str) -> None:
    observations, problems = validate(data, config)

    assert observations == []
    assert [(p.row, p.column, p.message) for p in problems] == [(1, None, message)]


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("patient_name", "patient_name"),
        ("Patient Name", "patient_name"),
        ("DOB", "dob"),
        ("date_of_birth", "date_of_birth"),
        ("MRN", "mrn"),
        ("member_id", "member_id"),
        ("Member ID", "member_id"),
        ("SSN", "ssn"),
        ("address", "address"),
        ("phone", "phone"),
        ("first_name", "first_name"),
    ],
)
def test_a_patient_looking_column_rejects_the_file(config: Config, header: str, column: str) -> None:
    data = (HEADER.rstrip("\n") + f",{header}\n" + GOOD_ROW.rstrip("\n") + ",x\n").encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert [(p.row, p.column) for p in problems] == [(1, column)]
    assert "patient data" in problems[0].message
    assert "no PHI" in problems[0].message


@pytest.mark.parametrize(
    ("header", "column", "message"),
    [
        ("notes", "notes", "unknown column"),
        ("vaule", "vaule", "did you mean value?"),
        ("", "F (no header)", "a column without a header"),  # named by its spreadsheet letter: it has no name
    ],
)
def test_an_unknown_column_rejects_the_file(config: Config, header: str, column: str, message: str) -> None:
    data = (HEADER.rstrip("\n") + f",{header}\n" + GOOD_ROW.rstrip("\n") + ",x\n").encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert [(p.row, p.column) for p in problems] == [(1, column)]
    assert message in problems[0].message


@pytest.mark.parametrize(
    ("header", "origin", "missing"),
    [
        ("practice,vendor,period,value", FeedOrigin(), ["kpi"]),
        ("practice,vendor,kpi,period", FeedOrigin(), ["value"]),
        ("practice,vendor,kpi,value", FeedOrigin(), ["period"]),
        ("kpi,period,value", FeedOrigin(), ["practice", "vendor"]),
        ("practice,kpi,period,value", FeedOrigin(practice_id="maple-clinic"), ["vendor"]),
    ],
)
def test_a_missing_column_rejects_the_file(config: Config, header: str, origin: FeedOrigin, missing: list[str]) -> None:
    data = (header + "\n" + ",".join("x" for _ in header.split(",")) + "\n").encode()

    observations, problems = validate(data, config, origin)

    assert observations == []
    assert [(p.row, p.column, p.message) for p in problems] == [(1, c, f"missing column {c}") for c in missing]


def test_a_row_in_another_practices_inbox_is_rejected(config: Config) -> None:
    data = (HEADER + "oakridge-fm,claimright,days_in_ar,2026-03,41\n").encode()

    observations, problems = validate(data, config, INBOX)

    assert observations == []
    assert [(p.row, p.column, p.value) for p in problems] == [(2, "practice", "oakridge-fm")]


def test_a_row_with_more_cells_than_columns_is_rejected(config: Config) -> None:
    data = (HEADER + GOOD_ROW.rstrip("\n") + ",surplus\n").encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert [(p.row, p.value) for p in problems] == [(2, "surplus")]


def test_every_problem_of_a_file_is_listed_not_just_the_first(config: Config) -> None:
    data = (
        HEADER
        + GOOD_ROW
        + "maple-clinic,claimright,denial_rat,2026-03,9.8\n"
        + "maple-clinic,claimright,denial_rate,2026-03,abc\n"
        + GOOD_ROW
        + "maple-clinic,claimright,days_in_ar,2026-W99,-4\n"
        + "maple-clinic,claimright,denial_rate,2026-04,9.8\n"
    ).encode()

    observations, problems = validate(data, config)

    assert observations == []
    assert [(p.row, p.column) for p in problems] == [
        (3, "kpi"),
        (4, "value"),
        (5, "period"),
        (6, "period"),
        (6, "value"),
    ]
    assert "already given in row 2" in problems[2].message
    assert str(problems[0]) == "row 3, column kpi ('denial_rat'): unknown KPI (did you mean denial_rate?)"
    assert problems[0].as_dict() == {
        "row": 3,
        "column": "kpi",
        "value": "denial_rat",
        "message": "unknown KPI (did you mean denial_rate?)",
    }


def test_every_patient_looking_and_unknown_column_is_listed(config: Config) -> None:
    header = HEADER.rstrip("\n") + ",patient_name,dob,mrn,member_id,ssn,address,phone,notes"

    _, problems = validate((header + "\n").encode(), config)

    assert [p.column for p in problems] == [
        "patient_name",
        "dob",
        "mrn",
        "member_id",
        "ssn",
        "address",
        "phone",
        "notes",
    ]


# -- ingest against the real PostgreSQL ----------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def stored(database_url: str) -> dict[tuple[str, str, str, str, str], float]:
    with session_scope(database_url) as session:
        return {
            (o.practice_id, o.vendor_id, o.kpi, o.period, o.segment): o.value
            for o in session.scalars(select(Observation))
        }


def count(database_url: str, model: type) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def feed_file_id(database_url: str, data: bytes) -> int:
    with session_scope(database_url) as session:
        feed = session.scalars(select(FeedFile).where(FeedFile.sha256 == hashlib.sha256(data).hexdigest())).one()
        return feed.id


FIRST_DELIVERY = (
    HEADER + "maple-clinic,claimright,denial_rate,2026-03,9.8%\nmaple-clinic,claimright,days_in_ar,2026-03,41\n"
)


def test_an_accepted_file_stores_its_rows(config: Config, postgres_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "march.csv", FIRST_DELIVERY)

    result = ingest_path(path, config, database_url=postgres_url, today=TODAY)

    assert result.status == "accepted"
    assert result.rows == 2
    assert result.counts is not None and (result.counts.inserted, result.counts.revised) == (2, 0)
    assert result.practices == ["maple-clinic"]
    assert stored(postgres_url) == {
        ("maple-clinic", "claimright", "denial_rate", "2026-03", "all"): 9.8,
        ("maple-clinic", "claimright", "days_in_ar", "2026-03", "all"): 41.0,
    }
    with session_scope(postgres_url) as session:
        feed = session.scalars(select(FeedFile)).one()
        assert (feed.filename, feed.rows, feed.practice_id, feed.sha256) == (
            "march.csv",
            2,
            "maple-clinic",
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        march = session.scalars(select(Observation).where(Observation.kpi == "days_in_ar")).one()
        assert (march.period_start, march.period_end) == (dt.date(2026, 3, 1), dt.date(2026, 3, 31))


def test_a_file_in_the_inbox_takes_practice_and_vendor_from_its_folder(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    path = write(inbox / "maple-clinic" / "claimright" / "march.csv", "kpi,period,value\ndays_in_ar,2026-03,41\n")

    result = ingest_path(path, config, source="inbox", inbox=inbox, database_url=postgres_url, today=TODAY)

    assert result.status == "accepted"
    assert stored(postgres_url) == {("maple-clinic", "claimright", "days_in_ar", "2026-03", "all"): 41.0}
    with session_scope(postgres_url) as session:
        feed = session.scalars(select(FeedFile)).one()
        assert (feed.source, feed.practice_id, feed.vendor_id) == ("inbox", "maple-clinic", "claimright")


def test_the_same_bytes_twice_are_a_duplicate_that_changes_nothing(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    first = write(tmp_path / "march.csv", FIRST_DELIVERY)
    again = write(tmp_path / "march-resent.csv", FIRST_DELIVERY)
    assert ingest_path(first, config, database_url=postgres_url, today=TODAY).status == "accepted"

    result = ingest_path(again, config, database_url=postgres_url, today=TODAY)

    assert result.status == "duplicate"
    assert not result.changed
    assert count(postgres_url, Observation) == 2
    assert count(postgres_url, FeedFile) == 1
    assert count(postgres_url, ObservationRevision) == 0


def test_a_corrected_redelivery_revises_the_value_and_keeps_the_history(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    first = write(tmp_path / "march.csv", FIRST_DELIVERY)
    corrected_text = (
        HEADER + "maple-clinic,claimright,denial_rate,2026-03,10.4%\nmaple-clinic,claimright,days_in_ar,2026-03,41\n"
    )
    corrected = write(tmp_path / "march-corrected.csv", corrected_text)
    ingest_path(first, config, database_url=postgres_url, today=TODAY)

    result = ingest_path(corrected, config, database_url=postgres_url, today=TODAY)

    assert result.status == "accepted"
    assert result.counts is not None
    assert (result.counts.inserted, result.counts.revised, result.counts.unchanged) == (0, 1, 1)
    assert result.changed
    assert stored(postgres_url)[("maple-clinic", "claimright", "denial_rate", "2026-03", "all")] == 10.4
    assert count(postgres_url, Observation) == 2
    first_id = feed_file_id(postgres_url, first.read_bytes())
    second_id = feed_file_id(postgres_url, corrected.read_bytes())
    with session_scope(postgres_url) as session:
        revision = session.scalars(select(ObservationRevision)).one()
        observation = session.get(Observation, (revision.series_id, revision.period_start, revision.period_end))
        assert observation is not None
        assert (observation.kpi, observation.value, observation.feed_file_id) == ("denial_rate", 10.4, second_id)
        assert (revision.old_value, revision.new_value) == (9.8, 10.4)
        assert (revision.old_feed_file_id, revision.new_feed_file_id) == (first_id, second_id)


def test_a_rejected_file_stores_no_observation_and_records_why(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    good = write(tmp_path / "march.csv", FIRST_DELIVERY)
    ingest_path(good, config, database_url=postgres_url, today=TODAY)
    bad = write(
        tmp_path / "april.csv",
        HEADER
        + "maple-clinic,claimright,denial_rate,2026-03,12.0\n"
        + "maple-clinic,claimright,days_in_ar,2026-04,41\n"
        + "maple-clinic,claimright,days_in_ar,2026-05,forty\n",
    )

    result = ingest_path(bad, config, database_url=postgres_url, today=TODAY)

    assert result.status == "rejected"
    assert not result.changed
    assert [(p.row, p.column, p.value) for p in result.problems] == [(4, "value", "forty")]
    assert result.as_dict()["errors"] == [{"row": 4, "column": "value", "value": "forty", "message": "not a number"}]
    # nothing of the rejected file is stored: not its good rows, not its correction of March
    assert stored(postgres_url) == {
        ("maple-clinic", "claimright", "denial_rate", "2026-03", "all"): 9.8,
        ("maple-clinic", "claimright", "days_in_ar", "2026-03", "all"): 41.0,
    }
    assert count(postgres_url, FeedFile) == 1
    assert count(postgres_url, ObservationRevision) == 0
    with session_scope(postgres_url) as session:
        rejection = session.scalars(select(FeedRejection)).one()
        assert (rejection.filename, rejection.source) == ("april.csv", "cli")
        assert rejection.sha256 == hashlib.sha256(bad.read_bytes()).hexdigest()
        assert rejection.errors == [{"row": 4, "column": "value", "value": "forty", "message": "not a number"}]


def test_an_unknown_unit_is_rejected_rather_than_read_as_percent() -> None:
    from config import BUNDLED_DIR

    config = load_config(BUNDLED_DIR)
    data = b"kpi,period,value,unit\ndenial_rate,2026-10,0.098,fraction\n"
    observations, problems = validate_table(read_table(data), config, FeedOrigin("oakridge-fm", "acme-billing"),
                                            dt.date(2026, 11, 23))
    assert observations == []
    assert [(p.row, p.column, p.value) for p in problems] == [(2, "unit", "fraction")]


@pytest.mark.parametrize(("index", "letters"), [(0, "A"), (5, "F"), (25, "Z"), (26, "AA"), (51, "AZ"), (52, "BA")])
def test_a_column_is_named_by_its_spreadsheet_letters_when_it_has_no_header(index: int, letters: str) -> None:
    assert spreadsheet_column(index) == letters
