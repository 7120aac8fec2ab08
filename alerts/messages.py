"""Render outbox payloads for each kind of channel with Jinja2 templates.

Feed-sourced text (segment names) is escaped for the channel: HTML for email, mrkdwn for Slack, Markdown for
Teams. Templates never see a URL or a secret.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import apprise
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORMATS = {
    "teams": apprise.NotifyFormat.MARKDOWN,
    "slack": apprise.NotifyFormat.MARKDOWN,
    "email": apprise.NotifyFormat.HTML,
    "text": apprise.NotifyFormat.TEXT,
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


def escape_slack(text: object) -> str:
    """Slack bodies are written as Markdown; Apprise converts them to Slack mrkdwn and escapes & < > itself,
    so escaping those here would show '&amp;amp;'. Only Markdown's own markers are neutralised."""
    escaped = str(text)
    for character in "\\`*_[]<>":
        escaped = escaped.replace(character, "\\" + character)
    return escaped


def escape_markdown(text: object) -> str:
    escaped = str(text)
    # Teams' Adaptive Card Markdown knows only emphasis, lists and links: escape just what could start one.
    for character in "\\`*_[]":
        escaped = escaped.replace(character, "\\" + character)
    return escaped


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["value"] = format_value
    env.filters["change"] = format_change
    env.filters["period"] = format_period
    env.filters["slack"] = escape_slack
    env.filters["md"] = escape_markdown
    return env


def render_alert(payload: dict[str, Any], title: str, family: str) -> Rendered:
    template = {"teams": "alert.md", "slack": "alert.slack", "email": "alert.html"}.get(family, "alert.txt")
    body = environment().get_template(template).render(title=title, **payload).strip()
    return Rendered(title=title, body=body, body_format=FORMATS[family])


def render_operator(payload: dict[str, Any], title: str, family: str) -> Rendered:
    template = "operator.html" if family == "email" else "operator.txt"
    body = environment().get_template(template).render(title=title, **payload).strip()
    return Rendered(title=title, body=body, body_format=FORMATS["email" if family == "email" else "text"])
