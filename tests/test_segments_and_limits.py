"""Issue 14, items 1, 2 and 4, read where leadership reads them: the rendered digest (HTML and text) and each
channel's alert message (Teams, Slack, email, plain text), built through the real path (feed files ingested and
rules evaluated at frozen times on the test's own PostgreSQL database).

Cedar Health (America/Denver) has ClaimRight Billing and Remindly, both live since 2025-07-01:
- days in A/R: 40 before go-live, 52 in 2026-09 (critical), 44 in 2026-10: inside the 45-day warning line but
  not past the 43-day recovery line, so the alert stays open as a warning (item 2: say 45, never 43 as the limit);
- initial denial rate: 7.8% practice-wide in 2026-10 but 13.0% for payer Aetna (item 1: name the payer, and the
  practice-wide row is not critical);
- no-show rate, a baseline KPI in the catalog, which the practice overrides with warn 12 and crit 15: 16.0% in
  2026-10 (item 2: the scorecard states the 15.0% the alert states, not the baseline's 11.9%).
Birch Care's vendor sends only payer segments, no practice-wide row (item 1: that is data, not "no data yet").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from alerts.evaluate import evaluate_practices
from alerts.messages import FAMILIES, render_alert
from config import Config, load_config
from digest.build import build_digest
from digest.render import RenderedDigest, render_digest
from storage.db import session_scope
from storage.models import Notification
from tests.test_digest_content import visible_text, words
from tests.test_digest_seed import AFTER_SEND, WEEK, at, ingest_at, months, write_config
from tests.test_escaping import read_markdown, read_slack

GO_LIVE = dt.date(2025, 7, 1)
HISTORY = months("2024-07", "2026-09")
PRACTICES: list[dict[str, object]] = [
    {
        "id": "cedar-health",
        "name": "Cedar Health",
        "timezone": "America/Denver",
        "annual_net_collectible": 600000,
        "digest_to": ["owner@cedar.example"],
        # The denial rate's 7.8% is inside its limits but far outside a zig-zag of 0.2: its control chart (SPC)
        # would call it a special cause and open a warning; these tests are about limits, so SPC is off for it.
        "overrides": {"no_show_rate": {"warn": 12, "crit": 15}, "denial_rate": {"spc": {"enabled": False}}},
        "vendors": [
            {"id": "claimright", "name": "ClaimRight Billing", "service": "billing", "go_live": GO_LIVE,
             "cadence": "monthly", "due_day": 10, "grace_days": 3},
            {"id": "remindly", "name": "Remindly", "service": "reminders", "go_live": GO_LIVE,
             "cadence": "monthly", "due_day": 10, "grace_days": 3},
        ],
    },
    {
        "id": "birch-care",
        "name": "Birch Care",
        "timezone": "America/Denver",
        "digest_to": ["owner@birch.example"],
        "vendors": [
            {"id": "claimright", "name": "ClaimRight Billing", "service": "billing", "go_live": GO_LIVE,
             "cadence": "monthly", "due_day": 10, "grace_days": 3},
        ],
    },
]
# Both severities reach the chat and email channels, so the critical-to-warning change is a message too.
WARNING_ROUTE = {"when": {"severity": "warning"}, "tags": ["teams", "email"]}


def cedar_value(kpi: str, period: str, index: int) -> float:
    """Flat series with a small zig-zag (so no trend rule fires) and the story's months."""
    story = {("days_in_ar", "2026-09"): 52.0, ("days_in_ar", "2026-10"): 44.0,
             ("denial_rate", "2026-10"): 7.8, ("no_show_rate", "2026-10"): 16.0}
    if (kpi, period) in story:
        return story[(kpi, period)]
    levels = {"days_in_ar": 40.0, "denial_rate": 5.5, "no_show_rate": 9.9}
    return levels[kpi] + 0.2 * (index % 2)


def cedar_feed(path: Path, periods: list[str], offset: int = 0) -> Path:
    lines = ["practice,vendor,kpi,period,value,segment"]
    for index, period in enumerate(periods, start=offset):
        for kpi in ("days_in_ar", "denial_rate"):
            lines.append(f"cedar-health,claimright,{kpi},{period},{cedar_value(kpi, period, index)},all")
        lines.append(f"cedar-health,claimright,denial_rate,{period},"
                     f"{13.0 if period == '2026-10' else 5.0 + 0.2 * (index % 2)},payer:Aetna")
        lines.append(f"cedar-health,remindly,no_show_rate,{period},{cedar_value('no_show_rate', period, index)},all")
    path.write_text("\n".join(lines) + "\n")
    return path


def birch_feed(path: Path, periods: list[str]) -> Path:
    """Only payer segments: 12.5% denials for Cigna in 2026-10 (critical), Aetna fine."""
    lines = ["practice,vendor,kpi,period,value,segment"]
    for period in periods:
        lines.append(f"birch-care,claimright,denial_rate,{period},{12.5 if period == '2026-10' else 6.0},payer:Cigna")
        lines.append(f"birch-care,claimright,denial_rate,{period},5.0,payer:Aetna")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Story:
    config: Config
    notification_id: int  # the message the 2026-11-20 evaluation queued for Cedar Health


def evaluate_at(moment: dt.datetime, config: Config) -> dict[str, int | None]:
    with at(moment):
        return {r.practice: r.notification_id for r in evaluate_practices(config, as_of=moment.date(), now=moment)}


def seed_story(tmp: Path) -> Story:
    config_dir = tmp / "config"
    write_config(config_dir, PRACTICES, {})
    channels = yaml.safe_load((config_dir / "channels.yaml").read_text())
    channels["routes"].append(WARNING_ROUTE)
    (config_dir / "channels.yaml").write_text(yaml.safe_dump(channels, sort_keys=False))
    config = load_config(config_dir)
    ingest_at(dt.datetime(2026, 10, 12, 15, tzinfo=dt.UTC), cedar_feed(tmp / "cedar-history.csv", HISTORY), config)
    ingest_at(dt.datetime(2026, 10, 12, 15, tzinfo=dt.UTC),
              birch_feed(tmp / "birch-history.csv", HISTORY), config)
    evaluate_at(dt.datetime(2026, 10, 15, 12, tzinfo=dt.UTC), config)
    ingest_at(dt.datetime(2026, 11, 17, 15, tzinfo=dt.UTC),
              cedar_feed(tmp / "cedar-2026-10.csv", ["2026-10"], offset=len(HISTORY)), config)
    ingest_at(dt.datetime(2026, 11, 17, 15, tzinfo=dt.UTC), birch_feed(tmp / "birch-2026-10.csv", ["2026-10"]),
              config)
    queued = evaluate_at(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC), config)
    notification_id = queued["cedar-health"]
    assert notification_id is not None
    return Story(config, notification_id)


@pytest.fixture
def story(tmp_path: Path, vw_env: dict[str, str]) -> Iterator[Story]:
    yield seed_story(tmp_path)


def digest_of(story: Story, practice_id: str) -> RenderedDigest:
    practice = story.config.practice(practice_id)
    assert practice is not None
    with session_scope() as session:
        return render_digest(build_digest(session, story.config, practice, WEEK, AFTER_SEND))


def alert_messages(story: Story) -> dict[str, tuple[str, str]]:
    """(title, body) of the Cedar Health message in each channel family, as a reader sees it: Markdown escapes
    undone for Teams, Slack's entities and look-alikes read back, HTML tags dropped for email."""
    with session_scope() as session:
        notification = session.scalars(select(Notification).where(Notification.id == story.notification_id)).one()
        payload, title = notification.payload, notification.title
    readers: dict[str, Callable[[str], str]] = {"teams": read_markdown, "slack": read_slack,
                                                "email": visible_text, "text": str}
    messages = {}
    for family in FAMILIES:
        rendered = render_alert(payload, title, family)
        read = readers[family]
        messages[family] = (words(read(rendered.title)), words(read(rendered.body)).replace("**", ""))
    return messages


def says(body: str, vendor_line: str, figures: str) -> bool:
    """Whether an alert body has the change's heading (ending with the vendor) and then its figures: Slack puts
    them on one line after a colon, the other channels on the next line."""
    return re.search(re.escape(vendor_line) + ":? " + re.escape(figures), body) is not None


def scorecard_line(text: str, label: str) -> str:
    """The plain-text scorecard row that starts with `label`, with its detail line."""
    match = re.search(rf"^- {re.escape(label)}: .*\n.*$", text, re.MULTILINE)
    assert match, f"no scorecard row {label!r} in:\n{text}"
    return words(match[0])


# Item 1: segments ---------------------------------------------------------------------------------------------


def test_every_channel_names_the_payer_of_a_payer_alert(story: Story) -> None:
    for family, (title, body) in alert_messages(story).items():
        assert says(body, "Critical: Initial denial rate for Aetna (payer), ClaimRight Billing",
                    "13.0% for Oct 2026, above the 10.0% threshold"), (family, body)
        assert "payer:Aetna" not in body, (family, body)
        # The worst change leads the title, and it is the payer's.
        assert title.startswith("CRITICAL Cedar Health: ClaimRight Billing Initial denial rate for Aetna (payer) "
                                "(+"), (family, title)


def test_the_digest_names_the_payer_in_its_alert_lines_verdict_and_huddle_points(story: Story) -> None:
    rendered = digest_of(story, "cedar-health")
    text, html = words(rendered.text), visible_text(rendered.html)

    line = "ClaimRight Billing, initial denial rate for Aetna (payer) 13.0% in Oct 2026, over the 10.0% limit"
    huddle = "Ask ClaimRight Billing about the initial denial rate for Aetna (payer): 13.0% in Oct 2026"
    for part in (text, html):
        assert line in part
        assert huddle in part
    assert "initial denial rate 13.0%" not in text + html  # never the payer's figure as the practice's


def test_a_scorecard_row_has_its_own_status_and_a_payer_row_is_named(story: Story) -> None:
    rendered = digest_of(story, "cedar-health")

    practice_wide = scorecard_line(rendered.text, "Initial denial rate")
    assert practice_wide.startswith("- Initial denial rate: 7.8% (Oct 2026) OFF TARGET"), practice_wide
    aetna = scorecard_line(rendered.text, "Initial denial rate for Aetna (payer)")
    assert aetna.startswith("- Initial denial rate for Aetna (payer): 13.0% (Oct 2026) CRITICAL limit 10.0%"), aetna
    html = visible_text(rendered.html)
    assert "Initial denial rate Off target 7.8% Oct 2026" in html
    assert "Initial denial rate for Aetna (payer) Critical 13.0% Oct 2026 limit 10.0%" in html


def test_a_practice_whose_feed_has_only_payer_rows_has_data(story: Story) -> None:
    rendered = digest_of(story, "birch-care")
    text, html = words(rendered.text), visible_text(rendered.html)

    verdict = ("Action needed: ClaimRight Billing initial denial rate for Cigna (payer) is 12.5%, over the 10.0% "
               "limit")
    assert rendered.subject.startswith(verdict)
    for part in (text, html):
        assert verdict in part
        assert "No vendor data yet" not in part and "has sent no data" not in part and "NO NEW DATA" not in part
        assert "No data from ClaimRight Billing yet" not in part
    assert scorecard_line(rendered.text, "Initial denial rate for Cigna (payer)").startswith(
        "- Initial denial rate for Cigna (payer): 12.5% (Oct 2026) CRITICAL")
    assert scorecard_line(rendered.text, "Initial denial rate for Aetna (payer)").startswith(
        "- Initial denial rate for Aetna (payer): 5.0% (Oct 2026) OK")


# Item 2: one limit, one number --------------------------------------------------------------------------------


def test_the_scorecard_states_the_limit_the_alert_states(story: Story) -> None:
    rendered = digest_of(story, "cedar-health")

    row = scorecard_line(rendered.text, "No-show rate")
    assert row.startswith("- No-show rate: 16.0% (Oct 2026) CRITICAL limit 15.0%,"), row
    assert "No-show rate Critical 16.0% Oct 2026 limit 15.0%" in visible_text(rendered.html)
    assert "Remindly, no-show rate 16.0% in Oct 2026, over the 15.0% limit" in words(rendered.text)
    for family, (_, body) in alert_messages(story).items():
        assert says(body, "Critical: No-show rate, Remindly", "16.0% for Oct 2026, above the 15.0% threshold"), (
            family, body)


def test_an_alert_held_open_by_its_recovery_line_states_the_threshold_not_the_recovery_line(story: Story) -> None:
    for family, (_, body) in alert_messages(story).items():
        assert says(body, "Now warning (was critical): Days in A/R, ClaimRight Billing",
                    "44.0 days for Oct 2026, inside the 45.0 days threshold, but it clears only once better than "
                    "43.0 days"), (family, body)
        assert "43.0 days threshold" not in body, (family, body)

    rendered = digest_of(story, "cedar-health")
    text, html = words(rendered.text), visible_text(rendered.html)
    line = ("ClaimRight Billing, days in A/R 44.0 days in Oct 2026, back inside the 45.0 days limit, open until "
            "better than 43.0 days")
    assert line in text and line in html
    assert "43.0 days limit" not in text + html
    row = scorecard_line(rendered.text, "Days in A/R")
    assert row.startswith("- Days in A/R: 44.0 days (Oct 2026) WARNING limit 45.0 days (open until better than "
                          "43.0 days),"), row


# Item 4: charts from zero -------------------------------------------------------------------------------------


def bar_heights(html: str, label: str) -> list[int]:
    """The CSS bar heights of the scorecard row whose bold label is `label`, oldest first."""
    start = html.index(f'<span style="font-size:14px;font-weight:bold;">{label}</span>')
    chart = html[start:].split('role="img"', 1)[1].split("</table>", 1)[0]
    return [int(height) for height in re.findall(r"width:6px;height:(\d+)px", chart)]


def test_scorecard_bars_are_in_proportion_to_the_values_from_zero(story: Story) -> None:
    rendered = digest_of(story, "cedar-health")

    heights = bar_heights(rendered.html, "Days in A/R")
    assert len(heights) == 12
    # The last two periods: 52 days, then 44; a bar from the series' minimum drew 44 at a third of 52's height.
    assert heights[-2:] == [32, round(44 / 52 * 32)]
    assert min(heights) == round(40 / 52 * 32)
    text_chart = re.search(r"^- Days in A/R: [\s\S]*?last 12: (\S+)", rendered.text, re.MULTILINE)
    assert text_chart and text_chart[1][-2:] == "█▇", rendered.text
