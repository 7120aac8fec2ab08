"""What leadership reads: the verdict, the scorecards, the dollars with their arithmetic, the week's alerts, late
feeds, the staff pulse and the huddle's talking points, built from data that went through the real path."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from pathlib import Path

import pytest

from digest.build import build_digest
from digest.model import Digest
from digest.pulse_report import pulse_report
from digest.region import build_region_digest
from digest.render import RenderedDigest, render_digest, render_region
from storage.db import session_scope
from tests.test_digest_seed import AFTER_SEND, WEEK, World, seed_world, world

__all__ = ["world"]  # the fixture, imported for pytest
GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides everything past this behind "[Message clipped]"


def digest_of(world: World, practice_id: str = "maple-clinic", week: str = WEEK,
              now: dt.datetime = AFTER_SEND) -> tuple[Digest, RenderedDigest]:
    practice = world.config.practice(practice_id)
    assert practice is not None
    with session_scope() as session:
        digest = build_digest(session, world.config, practice, week, now)
    return digest, render_digest(digest)


def visible_text(html: str) -> str:
    """The HTML's words, tags dropped and entities for the few characters the templates use undone."""
    text = re.sub(r"<[^>]+>", " ", html)
    for entity, character in (("&middot;", "·"), ("&#39;", "'"), ("&amp;", "&"), ("&ldquo;", '"'),
                              ("&rdquo;", '"')):
        text = text.replace(entity, character)
    return " ".join(text.split())


def words(text: str) -> str:
    return " ".join(text.split())


def test_the_subject_and_the_top_line_give_the_verdict_on_the_worst_open_alert(world: World) -> None:
    _, rendered = digest_of(world)

    verdict = "Action needed: ClaimRight Billing initial denial rate is 10.4%, over the 10.0% limit (+2 more)"
    assert rendered.subject == f"{verdict} - Maple Street Clinic, week {WEEK}"
    assert words(rendered.text).startswith(f"Maple Street Clinic: weekly vendor digest, Monday, November 23, 2026 "
                                           f"({WEEK}) {verdict}")
    assert visible_text(rendered.html).index(verdict) < visible_text(rendered.html).index("For the next huddle")


def test_alerts_are_split_into_opened_still_open_and_resolved_this_week_with_late_feeds_apart(world: World) -> None:
    digest, rendered = digest_of(world)

    assert [(a.kpi, a.severity) for a in digest.opened] == [("denial_rate", "critical")]
    assert [(a.kpi, a.since) for a in digest.still_open] == [("net_collection_rate", dt.date(2026, 10, 15))]
    assert [(a.kpi, a.resolved_on) for a in digest.resolved] == [("charge_lag_days", dt.date(2026, 11, 20))]
    assert [(a.vendor, a.period) for a in digest.late_feeds] == [("Remindly", "2026-10")]
    text = words(rendered.text)
    assert ("New: - Critical: ClaimRight Billing, initial denial rate 10.4% in Oct 2026, over the 10.0% limit "
            "Still open: - Warning: ClaimRight Billing, net collection rate 94.1% in Oct 2026, under the 96.0% "
            "minimum; open since Thu Oct 15") in text
    assert "Late feeds: - Remindly has not sent its Oct 2026 feed (10 days past due)." in text
    assert "Resolved: - ClaimRight Billing, charge lag back to 1.1 days in Oct 2026 (Fri Nov 20)" in text


def test_the_collection_gap_is_priced_with_its_arithmetic_shown(world: World) -> None:
    digest, rendered = digest_of(world)

    gap = "a 2.9-point gap x $600,000 net collectible = $17,400 a year"
    assert gap in words(rendered.text) and gap in visible_text(rendered.html)
    assert "1.0 points x $600,000 net collectible = $6,000 a year" in words(rendered.text)  # cost to collect
    assert digest.gap_dollars == pytest.approx(23_400)


def test_the_vendor_fee_is_set_against_what_an_in_house_billing_office_costs(world: World) -> None:
    _, rendered = digest_of(world)

    assert ("ClaimRight Billing's fee: 6.0% x $600,000 net collectible = $36,000 a year. An in-house billing "
            "office typically costs 9-10%: $54,000-$60,000.") in words(rendered.text)


def test_three_talking_points_come_from_the_data_worst_alert_biggest_gap_and_a_staff_signal(world: World) -> None:
    digest, rendered = digest_of(world)

    assert [point.kind for point in digest.points] == ["alert", "dollar", "readiness"]
    text = words(rendered.text)
    assert ("FOR THE NEXT HUDDLE 1. Ask ClaimRight Billing about the initial denial rate: 10.4% in Oct 2026, over "
            "the 10.0% limit. Ask for the cause and a written fix with a date. 2. The collection gap at "
            "ClaimRight Billing costs about $17,400 a year (2.9 points on $600,000).") in text
    assert "3. Staff readiness says prepare" in text


def test_each_kpi_shows_value_target_baseline_change_status_and_its_last_12_periods(world: World) -> None:
    digest, rendered = digest_of(world)

    claimright = digest.vendors[0]
    denial = next(row for row in claimright.rows if row.key == "denial_rate")
    assert (denial.value, denial.target, denial.limit, denial.status) == (10.4, 5.0, 10.0, "critical")
    assert denial.baseline == pytest.approx(7.25) and denial.improved is False
    assert [point.period for point in denial.trend] == [f"2025-{m:02d}" for m in range(11, 13)] + [
        f"2026-{m:02d}" for m in range(1, 11)]
    assert ("Initial denial rate: 10.4% (Oct 2026) CRITICAL limit 10.0%, target 5.0%, before go-live 7.2% "
            "(3.1 pts worse)") in words(rendered.text)
    assert rendered.html.count('aria-label="Last 12 periods, oldest first: Nov 2025') == len(claimright.rows)


def test_a_vendor_that_never_sent_data_says_so_instead_of_an_empty_table(world: World) -> None:
    digest, rendered = digest_of(world)

    remindly = digest.vendors[1]
    assert remindly.rows == () and remindly.learning_until == dt.date(2026, 11, 30)
    assert "No data from Remindly yet; its Oct 2026 feed is due Tue Nov 10." in words(rendered.text)


def test_a_practice_with_no_data_at_all_gets_a_clear_no_new_data_digest(world: World) -> None:
    digest, rendered = digest_of(world, "pine-family")

    assert digest.headline.tone == "empty" and not digest.has_data
    assert rendered.subject.startswith("No vendor data yet: ClaimRight Billing's first feed (Jun 2026) is")
    assert "NO NEW DATA: no vendor has sent a feed for Pine Family Practice yet" in words(rendered.text)
    assert "No new data." in visible_text(rendered.html)
    assert "<table role=\"img\"" not in rendered.html  # no chart, no scorecard table


def test_a_week_without_new_feeds_says_so_above_the_last_known_figures(world: World) -> None:
    digest, rendered = digest_of(world, week="2026-W49", now=AFTER_SEND + dt.timedelta(days=7))

    assert not digest.new_data and digest.has_data
    assert ("NO NEW DATA THIS WEEK: no vendor has sent a feed since Mon Nov 23 (the latest arrived Tue Nov 17); "
            "the figures below are from the latest feeds.") in words(rendered.text)
    assert "Initial denial rate: 10.4% (Oct 2026)" in rendered.text  # the scorecard stays
    assert digest.resolved == ()  # the charge lag resolved the week before


def test_the_staff_pulse_shows_what_pulse_report_allows_and_nothing_else(world: World) -> None:
    digest, rendered = digest_of(world)
    report = digest.pulse
    assert report is not None and report.shown

    for score in report.scores:
        assert score.label in rendered.text and score.label in visible_text(rendered.html)
    for group in report.groups:
        assert group.name in rendered.text


def test_a_pulse_too_small_to_show_shows_its_note_and_no_score(tmp_path: Path, vw_env: dict[str, str]) -> None:
    small = seed_world(tmp_path, pulse_responses=3)
    digest, rendered = digest_of(small)
    practice = small.config.practice("maple-clinic")
    assert practice is not None
    with session_scope() as session:
        report = pulse_report(session, small.config, practice, digest.as_of)

    assert report is not None and not report.shown and report.scores == []
    assert digest.pulse == report
    assert "STAFF PULSE" in rendered.text
    if report.note:
        assert words(report.note) in words(rendered.text)
    assert "Workload" not in rendered.text and "Workload" not in rendered.html


def test_the_html_is_email_safe_inline_css_tables_no_scripts_no_external_assets_and_unclipped(
    world: World,
) -> None:
    _, rendered = digest_of(world)
    html = rendered.html.lower()

    assert "<table" in html and "<script" not in html and "<style" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert not re.search(r"url\(", html)
    assert "<img" not in html  # the charts are CSS bars: nothing for a client to block
    assert len(rendered.html.encode()) < GMAIL_CLIP_BYTES


def test_the_text_part_reads_on_its_own(world: World) -> None:
    _, rendered = digest_of(world)

    assert "<" not in rendered.text and "&amp;" not in rendered.text and "&#" not in rendered.text
    assert [line for line in rendered.text.splitlines() if len(line) > 80] == []
    for heading in ("FOR THE NEXT HUDDLE", "WHAT IT COSTS", "ALERTS SINCE MON NOV 16", "CLAIMRIGHT BILLING",
                    "REMINDLY", "STAFF PULSE"):
        assert f"\n{heading}\n" in rendered.text
    assert "\n\n\n" not in rendered.text


def test_a_roll_up_of_800_practices_names_every_one_and_fits_before_gmail_clips_it(world: World) -> None:
    """The seeded region's two digests (one critical, one without vendor data yet) stand for 800 practices, with
    names as long as a practice's tend to be. Beyond the 30 shown in full, each is named with its alerts counted
    (its own digest has the sentence): named with its verdict, this list took the HTML past the clip (106 KB for
    500 practices in bench.digest)."""
    with session_scope() as session:
        region = build_region_digest(session, world.config, "mountain", WEEK, AFTER_SEND)
    digests = [replace(region.practices[index % 2], practice_id=f"practice-{index:03d}",
                       practice_name=f"Northside Family Medicine & Pediatrics {index:03d}") for index in range(800)]
    rendered = render_region(replace(region, practices=tuple(digests)))

    assert len(rendered.html.encode()) < GMAIL_CLIP_BYTES
    text = words(rendered.text)
    named = text.casefold()  # the 30 shown in full head their part in capitals
    assert all(f"northside family medicine & pediatrics {index:03d}" in named for index in range(800))
    beyond_the_detailed = text.split("Northside Family Medicine & Pediatrics 798: ", 1)[1]
    assert not beyond_the_detailed.startswith(("Action needed", "Watch"))  # counted, not the verdict's sentence


def test_the_regional_roll_up_puts_the_practices_needing_attention_first(world: World) -> None:
    with session_scope() as session:
        region = build_region_digest(session, world.config, "mountain", WEEK, AFTER_SEND)
    rendered = render_region(region)

    assert [d.practice_id for d in region.practices] == ["maple-clinic", "pine-family"]
    assert rendered.subject == (f"Mountain region: 2 of 2 practices need attention; gaps cost about $23,400 a year "
                                f"- week {WEEK}")
    text = words(rendered.text)
    assert text.index("MAPLE STREET CLINIC") < text.index("PINE FAMILY PRACTICE")
    assert "Raise: Ask ClaimRight Billing about the initial denial rate" in text
    assert rendered.name == f"region-mountain-{WEEK}"
