"""Render outbox payloads for each kind of channel with Jinja2 templates.

Every name and value is escaped for the channel by the template environment of its output format (see
alerts/formats.py): HTML for email, Markdown for Teams, Slack's mrkdwn for Slack, one-line plain text elsewhere. The
title is escaped for the place it is shown (Teams' card heading is Markdown; an email subject is one line).
Templates never see a URL or a secret.
"""

from __future__ import annotations

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


@cache
def environment(output_format: str) -> Environment:
    return template_environment(TEMPLATES, output_format)


def render_alert(payload: dict[str, Any], title: str, family: str) -> Rendered:
    template, output_format, body_format, escape_title = FAMILIES.get(family, FAMILIES["text"])
    body = environment(output_format).get_template(template).render(title=title, **payload).strip()
    return Rendered(title=escape_title(title), body=body, body_format=body_format)


def render_operator(payload: dict[str, Any], title: str, family: str) -> Rendered:
    """An operator message: its wording comes from _operator.txt by the payload's `kind`, filled in with its
    `facts`; the file names and errors it quotes (`details`) are escaped for the channel like any value. A payload
    written before messages had kinds carries its wording in `message`, and is printed as it is."""
    _, output_format, body_format, escape_title = FAMILIES.get(family, FAMILIES["text"])
    template = "operator.html" if output_format == HTML else "operator.txt"
    context = {"kind": payload.get("kind"), "facts": payload.get("facts", {}), "message": payload.get("message"),
               "details": payload.get("details", [])}
    body = environment(output_format).get_template(template).render(title=title, **context).strip()
    return Rendered(title=escape_title(title), body=body, body_format=body_format)


def operator_title(kind: str, facts: dict[str, Any]) -> str:
    """An operator message's title, one line of plain text: stored with the notification (listings, a failed
    delivery's own message name it) and escaped for each channel when it is sent."""
    return environment(TEXT).get_template("operator-title.txt").render(kind=kind, facts=facts).strip()
