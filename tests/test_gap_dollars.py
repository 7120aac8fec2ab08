"""The portfolio view, part four: dollars for the denial and A/R gaps, priced from a month's net collections, with
the arithmetic spelled out (issue 17 item 4). Values worked out by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerts.formats import HTML, TEXT
from digest.assess import dollar_lines
from digest.model import DollarLine, KpiRow
from digest.render import environment
from tests.test_digest_assess import card, practice, row
from tests.test_escaping import HOSTILE, html_problems, text_problems


def collections(value: float, period: str = "2026-10") -> KpiRow:
    return replace(row("net_collections", value, None), period=period, unit="USD")


def sentence(line: DollarLine, output_format: str) -> str:
    template = '{% import "_sentences.txt" as say %}{{ say.dollar(d) }}'
    return str(environment(output_format).from_string(template).render(d=line))


def test_days_in_ar_over_target_tie_up_days_times_average_daily_collections() -> None:
    # 46.24 days shows as 46.2: 6.2 days over the 40-day target; $43,400 in Oct 2026 (31 days) = $1,400 a day;
    # 6.2 x $1,400 = $8,680 of cash tied up, once (not a year).
    [line] = dollar_lines(practice(None), [card(row("days_in_ar", 46.24, 40.0, "lower"), collections(43_400))])

    assert (line.kind, line.gap, line.daily, line.period_days, line.amount) == ("ar_cash", 6.2, 1_400, 31,
                                                                               pytest.approx(8_680))
    assert not line.yearly


def test_a_denial_rate_over_target_puts_its_points_of_a_years_collections_at_risk() -> None:
    # 9.6% against 5.0%: 4.6 points x $42,000 a month (Nov 2026: 30 days) x 12 = $23,184 a year.
    [line] = dollar_lines(practice(None), [card(row("denial_rate", 9.6, 5.0, "lower"),
                                                collections(42_000, "2026-11"))])

    assert (line.kind, line.gap, line.collections, line.amount) == ("denial_gap", 4.6, 42_000, pytest.approx(23_184))
    assert line.yearly


def test_no_net_collections_no_price_and_on_target_no_line() -> None:
    assert dollar_lines(practice(None), [card(row("denial_rate", 9.6, 5.0, "lower"))]) == ()
    assert dollar_lines(practice(None), [card(row("denial_rate", 4.0, 5.0, "lower"), collections(42_000))]) == ()


def test_the_yearly_gaps_come_first_and_only_they_add_up_to_the_cost_a_year() -> None:
    lines = dollar_lines(practice(500_000), [card(row("days_in_ar", 50.0, 40.0, "lower"),
                                                  row("denial_rate", 6.0, 5.0, "lower"),
                                                  row("net_collection_rate", 96.0, 97.0), collections(31_000))])
    # collection gap 1.0 x $500,000 = $5,000; denials 1.0 x $31,000 x 12 = $3,720; A/R 10 x $1,000 = $10,000.
    assert [(line.kind, round(line.amount)) for line in lines] == [
        ("collection_gap", 5_000), ("denial_gap", 3_720), ("ar_cash", 10_000)]
    assert sum(line.amount for line in lines if line.yearly) == pytest.approx(8_720)


def test_the_arithmetic_is_spelled_out_in_the_email() -> None:
    lines = dollar_lines(practice(None), [card(row("days_in_ar", 46.2, 40.0, "lower"),
                                               row("denial_rate", 9.6, 5.0, "lower"), collections(43_400))])
    text = " ".join(sentence(line, TEXT) for line in lines)

    assert ("Acme RCM's initial denial rate is 9.6% against a 5.0% target: 4.6 points x $43,400 net collections "
            "in Oct 2026 x 12 months = $23,957 a year of claims denied beyond target, at risk until reworked.") in text
    assert ("Acme RCM's days in A/R are 46.2 days against a 40.0 days target: 6.2 days over x $1,400 a day (net "
            "collections of $43,400 in Oct 2026 / 31 days) = $8,680 of cash tied up.") in text


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_vendor_name_in_the_new_dollar_lines_is_escaped(hostile: str) -> None:
    vendor = f"Acme {hostile} RCM"
    lines = dollar_lines(practice(None), [card(row("days_in_ar", 46.2, 40.0, "lower"),
                                               row("denial_rate", 9.6, 5.0, "lower"), collections(43_400),
                                               name=vendor)])
    problems = []
    for line in lines:
        problems += html_problems(sentence(line, HTML), hostile, [vendor], set())
        problems += text_problems(sentence(line, TEXT), hostile, [vendor])
    assert len(lines) == 2 and not problems, problems
