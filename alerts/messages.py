"""Render outbox payloads for each kind of channel with Jinja2 templates.

Every name and value is escaped for the channel by the template environment of its output format (see
alerts/formats.py): HTML for email, Markdown for Teams, Slack's mrkdwn for Slack, one-line plain text elsewhere. The
title is escaped for the place it is shown (Teams' card heading is Markdown; an email subject is one line).
Templates never see a URL or a secret.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import apprise
from jinja2 import Environment

from alerts.formats import (
    HTML,
    MARKDOWN,
    SLACK,
    TEXT,
    escape_chat_title,
    escape_markdown,
    escape_text,
    template_environment,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
# family: (alert template, output format of its body, Apprise body format, how its title is escaped). Teams shows
# the title as a Markdown heading; Slack's attachment title is plain text (Apprise escapes & < >); an email's is
# its Subject header, one line.
FAMILIES: dict[str, tuple[str, str, str, Callable[[object], str]]] = {
    "teams": ("alert.md", MARKDOWN, apprise.NotifyFormat.MARKDOWN, escape_markdown),
    "slack": ("alert.slack", SLACK, apprise.NotifyFormat.MARKDOWN, escape_chat_title),
    "email": ("alert.html", HTML, apprise.NotifyFormat.HTML, escape_text),
    "text": ("alert.txt", TEXT, apprise.NotifyFormat.TEXT, escape_text),
}


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    body_format: str


def channel_family(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("workflows", "msteams", "teams"):
        return "teams"
    if scheme == "slack":
        return "slack"
    if scheme in ("mailto", "mailtos"):
        return "email"
    return "text"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "USD":
        return f"${value:,.0f}"
    if unit in ("days", "hours"):
        return f"{value:.1f} {unit}"
    return f"{value:g}"


def format_period(period: str) -> str:
    """How a manager says it: 2026-10 -> Oct 2026, 2026-11-06 -> Nov 6, 2026; ISO weeks stay as they are."""
    if re.fullmatch(r"\d{4}-\d{2}", period):
        return dt.date(int(period[:4]), int(period[5:]), 1).strftime("%b %Y")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", period):
        day = dt.date.fromisoformat(period)
        return f"{day:%b} {day.day}, {day.year}"
    return period


def segment_label(segment: str) -> str:
    """How a reader names a segment: payer:Aetna -> Aetna (payer); '' for the whole practice ('all')."""
    if segment == "all":
        return ""
    kind, colon, name = segment.partition(":")
    return f"{name} ({kind})" if colon and name else segment


def for_segment(segment: str) -> str:
    """The words that follow a KPI's name when its figure is one segment's: ' for Aetna (payer)', else ''."""
    label = segment_label(segment)
    return f" for {label}" if label else ""


def format_when(period: str | dt.date) -> str:
    """A period with the preposition English gives it, the same in every channel and the digest: on Oct 28, 2026
    (a day), in Oct 2026 (a month), in week 2026-W44, from Oct 1, 2026 to Oct 15, 2026 (a range)."""
    label = period.isoformat() if isinstance(period, dt.date) else period
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", label):
        return f"on {format_period(label)}"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}", label):
        start, end = label.split("..")
        return f"from {format_period(start)} to {format_period(end)}"
    if re.fullmatch(r"\d{4}-W\d{2}", label):
        return f"in week {label}"
    return f"in {format_period(label)}"


def format_change(value: float | None, unit: str) -> str:
    """A difference with its unit: percent KPIs change by points, not percent."""
    if value is None:
        return ""
    sign = "+" if value > 0 else ("-" if value < 0 else "")
    magnitude = abs(value)
    if unit == "%":
        return f"{sign}{magnitude:.1f} pts"
    if unit == "USD":
        return f"{sign}${magnitude:,.0f}"
    if unit in ("days", "hours"):
        return f"{sign}{magnitude:.1f} {unit}"
    return f"{sign}{magnitude:.1f}"


@cache
def environment(output_format: str) -> Environment:
    env = template_environment(TEMPLATES, output_format, keep_trailing_newline=False)
    env.filters["value"] = format_value
    env.filters["change"] = format_change
    env.filters["period"] = format_period
    env.filters["for_segment"] = for_segment
    env.filters["when"] = format_when
    return env


def render_alert(payload: dict[str, Any], title: str, family: str) -> Rendered:
    template, output_format, body_format, escape_title = FAMILIES.get(family, FAMILIES["text"])
    body = environment(output_format).get_template(template).render(title=title, **payload).strip()
    return Rendered(title=escape_title(title), body=body, body_format=body_format)


def render_operator(payload: dict[str, Any], title: str, family: str) -> Rendered:
    """Operator alerts quote file names and errors: in chat they are escaped for its Markdown like any value."""
    _, output_format, body_format, escape_title = FAMILIES.get(family, FAMILIES["text"])
    template = "operator.html" if output_format == HTML else "operator.txt"
    body = environment(output_format).get_template(template).render(title=title, **payload).strip()
    return Rendered(title=escape_title(title), body=body, body_format=body_format)
