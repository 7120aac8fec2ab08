"""One Jinja2 environment per output format, each escaping every value it prints for that format.

Names and labels come from configuration and feeds (a vendor may be called `Acme <!here> [x](https://...)`), and
the same sentence macros are printed into HTML, Markdown, Slack and plain text. So escaping belongs to the output
format, never to a template line: every `{{ value }}`, in a template or in a macro it imports, passes through the
format's escape function, and what a macro or `{% set %}` block returns is marked as already escaped (Jinja's
Markup), so it is not escaped twice.

- html: Jinja's own autoescape, for every template, including the `.txt` macro files an HTML template imports.
- markdown (Teams Adaptive Cards, sent as is): CommonMark backslash escapes, mention tags broken.
- slack (Markdown that Apprise turns into Slack mrkdwn): `<`, `>` escaped for Apprise to write as entities,
  formatting marks replaced by look-alikes (Slack's mrkdwn has no escape for them).
- text: plain text, one line per value.

In every format a value is one line: a line break in a name must not forge a line, a list item or a heading.
Not in markdown, slack or text templates: `~` or `join` mixing a macro's output with a raw value. Jinja would
HTML-escape the raw part instead of escaping it for the format; write a `{% set %}` block instead.

`template_environment` is the one setup every message uses (alert cards, operator messages, the digest): the
escaping above, StrictUndefined, and the filters that say a value (`value`, `period`, `when`, ...) the same way
everywhere; a caller adds only its own layout filters.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

HTML, MARKDOWN, SLACK, TEXT = "html", "markdown", "slack", "text"
# Line and paragraph separators, and every other control character: each would start a new line somewhere.
LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# CommonMark's inline and block markers; Adaptive Cards parse a subset, escaping the rest costs nothing. An
# underscore inside a word (claims_denied) emphasises nothing and is left alone, as mobile Teams shows backslashes.
MARKDOWN_MARKERS = re.compile(r"([\\`*\[\]()#~|<>!&])")
LIST_START = re.compile(r"^(\s*)([-+]|\d+[.)])(?=\s)")
WORD_JOINER = "\u2060"  # invisible; splits a token a chat client would act on without changing what a reader sees
# Slack's mrkdwn has no escape for its formatting marks, so they are shown as look-alikes that format nothing.
SLACK_LOOKALIKES = {"*": "\u2217", "_": "\uff3f", "~": "\u223c", "`": "\u02cb", "\\": "\u2216"}
# Marks Slack (or Apprise's Markdown step before it) may act on anywhere; _ and ~ only at a word's edge.
SLACK_ANYWHERE = str.maketrans({mark: SLACK_LOOKALIKES[mark] for mark in "*`\\"})


def at_word_edge(marks: str) -> re.Pattern[str]:
    """A mark with something other than a letter or digit on one side, where it can open or close emphasis."""
    marks = re.escape(marks)
    return re.compile(rf"(?<![^\W_])[{marks}]|[{marks}](?![^\W_])")


MARKDOWN_EDGE_MARKS = at_word_edge("_")
SLACK_EDGE_MARKS = at_word_edge("_~")


def escape_text(value: object) -> str:
    """Plain text: any line break or control character becomes one space."""
    return LINE_BREAKS.sub(" ", str(value))


def defang_links(text: str) -> str:
    """Chat clients turn a bare URL into a link; a word joiner after the scheme keeps it text."""
    return text.replace("://", ":" + WORD_JOINER + "//")


def escape_markdown(value: object) -> str:
    """Teams: backslash-escape Markdown's markers, so `[x](y)` is no link, `*x*` no emphasis and `&amp;` no
    entity; a list marker at the start of a title is escaped too. `<at>` would become a mention (Apprise adds its
    entity), so it is split."""
    text = MARKDOWN_MARKERS.sub(r"\\\1", escape_text(value))
    text = MARKDOWN_EDGE_MARKS.sub(lambda match: "\\" + match[0], text)
    text = LIST_START.sub(lambda match: f"{match[1]}\\{match[2]}", text)
    return defang_links(text.replace("<", "<" + WORD_JOINER))


def escape_slack(value: object) -> str:
    """Slack: `\\<` and `\\>` become `&lt;` and `&gt;` in Apprise's Markdown-to-mrkdwn step (no mention, no link);
    `[` and `]` are escaped so Apprise writes no `<url|label>` link; Apprise escapes `&` itself, so it is left.
    Formatting marks become look-alikes, `_` and `~` only where they could format (claims_denied stays)."""
    text = escape_text(value).translate(SLACK_ANYWHERE)
    text = SLACK_EDGE_MARKS.sub(lambda match: SLACK_LOOKALIKES[match[0]], text)
    text = re.sub(r"([<>\[\]])", r"\\\1", text)
    return defang_links(text)


def escape_chat_title(value: object) -> str:
    """A chat message's plain-text title (Slack's attachment title): one line, no bare link; the plugin escapes the
    rest."""
    return defang_links(escape_text(value))


ESCAPES: dict[str, Callable[[object], str]] = {MARKDOWN: escape_markdown, SLACK: escape_slack, TEXT: escape_text}


def finalizer(output_format: str) -> Callable[[Any], Any]:
    """Jinja's finalize, run on whatever a template prints, before autoescape. What is marked as Markup (the output
    of a macro, a `{% set %}` block or a layout filter) was escaped already and passes. Anything else is made one
    line and, for HTML, left to autoescape; for the other formats escaped and marked as Markup, which autoescape
    then leaves alone."""
    escape = ESCAPES.get(output_format)

    def finalize(value: Any) -> Any:
        if isinstance(value, Markup):
            return value
        return escape_text(value) if escape is None else Markup(escape(value))

    return finalize


# How a value is said, the same in every message (alerts, operator messages, the digest) and in every format.
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


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# The filters every message template may use, whichever folder it is in.
SHARED_FILTERS: dict[str, Callable[..., str]] = {
    "value": format_value,
    "change": format_change,
    "period": format_period,
    "for_segment": for_segment,
    "when": format_when,
    "plural": plural,
}


def template_environment(directory: Path, output_format: str, *,
                         filters: Mapping[str, Callable[..., Any]] | None = None,
                         globals: Mapping[str, Any] | None = None) -> Environment:
    """The one Jinja setup of every message (alerts, operator messages, the digest): a template of `directory`,
    whatever its file name, escapes every value it prints for `output_format`; an undefined name is an error
    (StrictUndefined), never an empty string; the shared value filters, plus the caller's own.

    autoescape is on in all of them: for HTML it does the escaping; for the others it only makes Jinja mark what
    macros and blocks return as Markup, and the finalizer escapes."""
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=True,
        finalize=finalizer(output_format),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(SHARED_FILTERS)
    env.filters.update(filters or {})
    env.globals.update(globals or {})
    return env
