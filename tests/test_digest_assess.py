"""The digest's pure judgements as tables: what a gap costs, the verdict, the talking points, the charts."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from alerts.rules import Point, Thresholds, judge_latest
from config import Practice
from config.schema import Kpi, Tolerance
from digest.assess import dollar_lines, headline, pulse_severity, row_status, staff_signal, talking_points
from digest.model import AlertLine, DollarLine, KpiRow, TalkingPoint, TrendPoint, VendorCard
from digest.pulse_report import PulseReport, PulseScore
from digest.render import bars, format_period, lower_first, range_note, spark
from feeds.freshness import FeedDue

NEXT = FeedDue("2026-11", dt.date(2026, 12, 10), dt.date(2026, 12, 13), False, 0, 0)


def row(key: str, value: float, target: float | None, better: str = "higher", status: str = "ok",
        baseline: float | None = None, stale: bool = False) -> KpiRow:
    change = None if baseline is None else round(value - baseline, 2)
    return KpiRow(key, key.replace("_", " ").capitalize(), "%", better, value, "2026-10", target, None, baseline,
                  change, status, (TrendPoint("2026-10", value, False),), stale)


def card(*rows: KpiRow, fee: float | None = None, service: str = "billing", name: str = "Acme RCM") -> VendorCard:
    return VendorCard("acme", name, service, dt.date(2026, 3, 1), fee, rows, dt.date(2026, 11, 17), True, NEXT,
                      None)


def point(value: float) -> Point:
    return Point("2026-10", dt.date(2026, 10, 1), dt.date(2026, 10, 31), value)


def practice(annual: float | None = 500_000) -> Practice:
    return Practice(id="p", name="P", annual_net_collectible=annual)


def alert(severity: str, kpi: str = "denial_rate", vendor: str = "Acme RCM", rule: str = "threshold") -> AlertLine:
    return AlertLine("acme", vendor, kpi, kpi, "%", "lower", rule, severity, 9.6, 9.0, "2026-10",
                     dt.date(2026, 11, 20), False)


@pytest.mark.parametrize(
    ("value", "target", "annual", "gap", "amount"),
    [
        (92.0, 97.0, 500_000, 5.0, 25_000),  # SPEC section 2: a 5% gap on $500,000 is $25,000 a year
        (94.1, 97.0, 600_000, 2.9, 17_400),
        (96.66, 97.0, 500_000, 0.3, 1_500),  # priced as shown (0.34 shows as 0.3), so the arithmetic adds up
    ],
)
def test_a_collection_gap_costs_its_points_of_the_annual_net_collectible(
    value: float, target: float, annual: float, gap: float, amount: float
) -> None:
    [line] = dollar_lines(practice(annual), [card(row("net_collection_rate", value, target))])

    assert (line.kind, line.gap, line.annual) == ("collection_gap", gap, annual)
    assert line.amount == pytest.approx(amount)


def test_a_rate_at_or_above_target_a_stale_value_or_an_unknown_revenue_costs_nothing() -> None:
    assert dollar_lines(practice(), [card(row("net_collection_rate", 97.5, 97.0))]) == ()
    assert dollar_lines(practice(), [card(row("net_collection_rate", 90.0, 97.0, stale=True))]) == ()
    assert dollar_lines(practice(None), [card(row("net_collection_rate", 90.0, 97.0))]) == ()


def test_gaps_come_biggest_first_then_the_fee_with_the_in_house_range_for_a_billing_vendor() -> None:
    lines = dollar_lines(practice(), [card(row("cost_to_collect_pct", 7.0, 6.0, better="lower"),
                                           row("net_collection_rate", 94.0, 97.0), fee=6.5)])

    assert [(line.kind, line.amount) for line in lines] == [
        ("collection_gap", pytest.approx(15_000)), ("cost_gap", pytest.approx(5_000)),
        ("vendor_fee", pytest.approx(32_500))]
    assert (lines[-1].in_house_low, lines[-1].in_house_high) == (pytest.approx(45_000), pytest.approx(50_000))


def test_a_reminder_vendors_fee_has_no_in_house_billing_comparison() -> None:
    [fee] = dollar_lines(practice(), [card(fee=3.0, service="reminders")])

    assert fee.kind == "vendor_fee" and fee.in_house_low is None


@pytest.mark.parametrize(
    ("alerts", "late", "rows", "new_data", "tone", "more"),
    [
        ([alert("critical"), alert("warning")], [], 1, True, "critical", 1),
        ([alert("warning")], [alert("warning", "feed", rule="freshness")], 1, True, "warning", 1),
        ([], [alert("warning", "feed", rule="freshness")], 1, True, "late", 0),
        ([], [], 1, False, "quiet", 0),
        ([], [], 1, True, "ok", 0),
        ([], [], 0, False, "empty", 0),
    ],
)
def test_the_verdict_names_the_most_pressing_thing(
    alerts: list[AlertLine], late: list[AlertLine], rows: int, new_data: bool, tone: str, more: int
) -> None:
    vendors = [card(*[row("denial_rate", 4.0, 5.0, better="lower")] * rows)]

    verdict = headline(alerts, late, vendors, new_data)

    assert (verdict.tone, verdict.more) == (tone, more)


def test_talking_points_take_the_worst_alert_the_biggest_gap_and_a_late_feed_in_that_order() -> None:
    late = alert("warning", "feed", vendor="Remindly", rule="freshness")
    gaps = dollar_lines(practice(), [card(row("net_collection_rate", 94.0, 97.0))])

    points = talking_points([alert("critical"), alert("warning", "clean_claim_rate")], [late], [], gaps,
                            [card(row("net_collection_rate", 94.0, 97.0))], None)

    assert [(p.kind, p.alert.kpi if p.alert else None) for p in points] == [
        ("alert", "denial_rate"), ("dollar", None), ("late", "feed")]


def test_talking_points_are_never_filler_a_quiet_week_with_nothing_improved_has_none() -> None:
    assert talking_points([], [], [], [], [card(row("denial_rate", 4.0, 5.0, better="lower"))], None) == ()


def test_a_quiet_week_offers_good_news_from_the_data() -> None:
    improved = row("days_in_ar", 38.0, 40.0, better="lower", baseline=52.0)

    [point] = talking_points([], [], [], [], [card(improved)], None)

    assert (point.kind, point.row) == ("improved", improved)


def test_the_gap_point_skips_the_kpi_the_first_alert_already_raises() -> None:
    gaps = dollar_lines(practice(), [card(row("net_collection_rate", 94.0, 97.0))])
    first = alert("warning", "net_collection_rate")

    points = talking_points([first], [], [], gaps, [], None)

    assert [p.kind for p in points] == ["alert"]


def score(key: str, value: float, baseline: float | None = None) -> PulseScore:
    return PulseScore(key, key, value, baseline)


@pytest.mark.parametrize(
    ("pulse_score", "signal"),
    [
        (score("pulse_workload", 3.0, 3.6), True),  # down 0.6 from baseline: past SPEC's 0.5
        (score("pulse_workload", 3.2, 3.6), False),
        (score("pulse_burnout_pct", 45.0, 30.0), True),  # up 15 points: past 10
        (score("enps", -5.0, 10.0), False),  # down 15: inside 20
        (score("pulse_participation_rate", 50.0), True),  # under 60%
        (score("readiness_score", 17.0), True),
        (score("pulse_trust_leadership", 2.0), False),  # no baseline: no drop to judge
    ],
)
def test_a_staff_signal_follows_specs_default_pulse_rules(pulse_score: PulseScore, signal: bool) -> None:
    assert (pulse_severity(pulse_score) >= 1) is signal


def test_a_staff_signal_comes_only_from_a_pulse_that_may_be_shown() -> None:
    hidden = PulseReport(dt.date(2026, 10, 30), 3, 14, False, [], note="Too few responses")
    shown = PulseReport(dt.date(2026, 10, 30), 11, 14, True, [score("pulse_burnout_pct", 45.0, 30.0)])

    assert staff_signal(hidden) is None
    signal = staff_signal(shown)
    assert signal is not None and signal.kind == "staff" and signal.score == shown.scores[0]
    assert staff_signal(PulseReport(dt.date(2026, 10, 30), 11, 14, True, [], readiness_verdict="pause")) == \
        type(signal)("readiness", readiness="pause")


def test_trend_bars_start_at_zero_and_colour_the_latest_by_status() -> None:
    trend = [TrendPoint(f"2026-{m:02d}", value, m < 3) for m, value in enumerate([52.0, 41.6, 26.0, 0.0], 1)]

    drawn = bars(trend, "critical")

    # In proportion to the value: 41.6 is four fifths of 52's bar, not the floor (issue 14, item 4).
    assert [bar.height for bar in drawn] == [32, 26, 16, 1]
    assert [bar.colour for bar in drawn] == ["#d0d5dd", "#d0d5dd", "#98a2b3", "#b42318"]
    assert spark(trend) == "█▇▅▁"
    assert range_note(trend, "days") == ""
    assert [bar.height for bar in bars([TrendPoint("", 5.0, False)] * 3, "ok")] == [32, 32, 32]


def test_a_trend_with_a_negative_value_is_drawn_over_its_range_and_says_so() -> None:
    trend = [TrendPoint("", value, False) for value in (-20.0, 0.0, 10.0)]

    assert [bar.height for bar in bars(trend, "tracked")] == [1, 21, 32]
    assert range_note(trend, "", "enps") == "range -20 to +10"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Days in A/R", "days in A/R"), ("A/R over 60 days", "A/R over 60 days"), ("eNPS", "eNPS")],
)
def test_kpi_labels_read_mid_sentence_without_breaking_acronyms(text: str, expected: str) -> None:
    assert lower_first(text) == expected


def test_periods_read_as_month_names_and_dates() -> None:
    assert [format_period(p) for p in ("2026-10", "2026-W44", "2026-10-15")] == ["Oct 2026", "2026-W44",
                                                                                 "Oct 15, 2026"]


def test_dollar_lines_are_plain_data_the_templates_word() -> None:
    line = DollarLine("collection_gap", "Acme", "net_collection_rate", "Net collection rate", 94.0, 97.0, 3.0,
                      500_000, 15_000)
    assert line.amount == line.gap / 100 * line.annual


def say(macro: str, *args: object) -> str:
    """One of the templates' sentences, as every part of the digest words it."""
    from digest.render import environment

    return str(getattr(environment().get_template("_sentences.txt").module, macro)(*args))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (alert("critical"),
         "Ask Acme RCM about the denial_rate: 9.6% in Oct 2026, over the 9.0% limit. Ask for the cause and a "
         "written fix with a date."),
        (dataclasses.replace(alert("warning", "pulse_burnout_pct", vendor="Staff pulse"), kpi_label="Reporting burnout",
                             value=45.0, threshold=40.0, about_staff=True),
         "Staff pulse: reporting burnout is 45.0%, over the 40.0% limit. Ask the team what has changed; concerns "
         "are information, not resistance."),
        (dataclasses.replace(alert("warning", "pulse", vendor="Staff pulse", rule="pulse_overdue"), value=9.0,
                             period="2026-11-06", about_staff=True),
         "The staff pulse due Nov 6, 2026 is 9 days overdue: send the survey this week; staff check-ins matter "
         "most in the first weeks of a change."),
    ],
)
def test_an_alert_is_raised_with_whoever_can_act_on_it(line: AlertLine, expected: str) -> None:
    assert say("point", TalkingPoint("alert", alert=line)) == expected


def test_the_verdict_on_an_overdue_pulse_names_the_pulse_not_a_vendor() -> None:
    line = dataclasses.replace(alert("warning", "pulse", vendor="Staff pulse", rule="pulse_overdue"), value=9.0,
                               period="2026-11-06", about_staff=True)

    assert say("verdict", headline([line], [], [card(row("denial_rate", 4.0, 5.0))], True)) == (
        "Watch: the staff pulse due Nov 6, 2026 is 9 days overdue")


def test_an_alert_and_a_dollar_gap_on_the_same_kpi_are_raised_once() -> None:
    gaps = dollar_lines(practice(), [card(row("net_collection_rate", 94.0, 97.0))])

    points = talking_points([alert("critical"), alert("warning", "net_collection_rate")], [], [], gaps, [], None)

    assert [(p.kind, (p.alert or p.dollar).kpi) for p in points] == [  # type: ignore[union-attr]
        ("alert", "denial_rate"), ("dollar", "net_collection_rate")]


DENIALS = Kpi(label="Initial denial rate", unit="%", better="lower", rule="threshold", warn=8, crit=10, target=5,
              formula="claims denied on first pass / claims submitted x 100", source="catalog")


@pytest.mark.parametrize(
    ("value", "alert_severity", "expected"),
    [
        (4.0, None, ("ok", None, None)),  # better than the 5% target
        (5.0, None, ("ok", None, None)),  # on target
        (7.2, None, ("off_target", None, None)),  # inside the limits, short of the target: not "OK"
        (8.5, None, ("warning", 8.0, None)),
        (10.4, None, ("critical", 10.0, None)),
        (7.2, "critical", ("critical", None, None)),  # an open trend alert outranks the value's own verdict
    ],
)
def test_a_kpi_is_ok_only_on_target_and_off_target_inside_its_limits(
    value: float, alert_severity: str | None, expected: tuple[str, float | None, float | None]
) -> None:
    thresholds = Thresholds(better="lower", warn=8, crit=10, for_periods=1)
    verdicts = judge_latest([point(value)], thresholds, None, dt.date(2026, 3, 1), False, False)

    assert row_status(verdicts, alert_severity, value, DENIALS.better, target=5) == expected


def test_a_row_states_the_limit_its_rule_judges_by_not_the_catalogs_kind() -> None:
    """No-show rate is a baseline KPI in the catalog; a practice's warn/crit override makes evaluation judge it by
    threshold too, and the scorecard must state the limit the alert states (issue 14, item 2)."""
    thresholds = Thresholds(better="lower", warn=12.0, crit=15.0, for_periods=1,
                            tolerance=Tolerance(warn_pct=10, crit_pct=20))
    verdicts = judge_latest([point(16.0)], thresholds, 9.9, dt.date(2026, 3, 1), False, False)

    assert verdicts["threshold"].threshold == 15.0 and verdicts["baseline"].threshold == pytest.approx(11.88)
    assert row_status(verdicts, None, 16.0, "lower") == ("critical", 15.0, None)
