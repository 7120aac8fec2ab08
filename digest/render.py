"""Render a digest with Jinja2: a subject, an email-safe HTML part (inline CSS, tables, CSS bars for charts, no
scripts, no external assets, no images) and a plain-text part written from its own template.

The subject and the text part are rendered in the plain-text environment and the HTML part in the HTML one (see
alerts/formats.py), so the shared sentences in _sentences.txt escape every name for the part they are printed in."""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from alerts.formats import HTML, TEXT, escape_text, format_period, format_value, template_environment
from digest.model import Digest, RegionDigest, SpcReading, TrendPoint

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEXT_WIDTH = 78
BAR_HEIGHT = 32  # px, the tallest bar of a trend chart
SPARKS = "▁▂▃▄▅▆▇█"
BEFORE_GO_LIVE, AFTER_GO_LIVE = "#d0d5dd", "#98a2b3"
# status: (label, colour, background)
STATUSES = {
    "critical": ("Critical", "#b42318", "#fef3f2"),
    "warning": ("Warning", "#b54708", "#fffaeb"),
    "off_target": ("Off target", "#854a0e", "#fefbe8"),
    "ok": ("OK", "#067647", "#ecfdf3"),
    "tracked": ("Tracked", "#475467", "#f2f4f7"),
}
# verdict tone: (colour, background)
TONES = {
    "critical": ("#b42318", "#fef3f2"),
    "warning": ("#dc6803", "#fffaeb"),
    "late": ("#dc6803", "#fffaeb"),
    "quiet": ("#667085", "#f2f4f7"),
    "ok": ("#079455", "#ecfdf3"),
    "empty": ("#667085", "#f2f4f7"),
}
SERVICES = {
    "billing": "Billing and revenue cycle",
    "reminders": "Appointment reminders",
    "follow_up": "Post-visit follow-up calls",
    "surveys": "Patient satisfaction surveys",
    "intake": "New-patient intake",
    "eligibility": "Eligibility checks",
    "referrals": "Referral coordination",
    "transcription": "Transcription",
    "billing_follow_up": "Billing follow-up",
    "prior_auth": "Prior authorizations",
    "bundled": "Bundled admin support",
}
PULSE_PERCENT = {"pulse_participation_rate", "pulse_burnout_pct"}


@dataclass(frozen=True)
class RenderedDigest:
    name: str  # file stem: digest-<practice>-<week> or region-<region>-<week>
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class Bar:
    height: int
    colour: str


# NHS Making Data Count's colours: special cause of improvement, of concern; common cause.
SPC_COLOURS = {"improving": "#00B0F0", "deteriorating": "#E46C0A", "": "#98a2b3"}
SPC_WIDTH, SPC_HEIGHT, SPC_STEP = 96, 28, 8  # px; one period every SPC_STEP, under the bars


@dataclass(frozen=True)
class SpcChart:
    """An XmR chart's geometry for inline SVG: the values' line, dots where a special cause marks a period (and
    on the newest), the centre line and both limits. Numbers only: nothing in it needs escaping."""

    line: str  # polyline points
    dots: tuple[tuple[int, int, str], ...]  # (x, y, colour)
    mean: int
    lower: int
    upper: int


def spc_chart(trend: Sequence[TrendPoint], reading: SpcReading) -> SpcChart:
    values = [point.value for point in trend]
    low = min([*values, reading.lower])
    high = max([*values, reading.upper])
    span = (high - low) or 1.0

    def y(value: float) -> int:
        return round(2 + (high - value) / span * (SPC_HEIGHT - 4))

    xs = [SPC_WIDTH - 4 - SPC_STEP * (len(values) - 1 - i) for i in range(len(values))]
    # A dot only where a special cause marks the period, and on the newest: a digest has hundreds of charts and
    # Gmail clips a message past 102 KB.
    dots = tuple((x, y(value), SPC_COLOURS.get(mark, SPC_COLOURS[""]))
                 for index, (x, value, mark) in enumerate(zip(xs, values, reading.marks, strict=True))
                 if mark or index == len(values) - 1)
    return SpcChart(" ".join(f"{x},{y(value)}" for x, value in zip(xs, values, strict=True)), dots,
                    y(reading.mean), y(reading.lower), y(reading.upper))


def render_digest(digest: Digest) -> RenderedDigest:
    return render_parts(f"digest-{digest.practice_id}-{digest.week}", "digest", d=digest)


def render_region(region: RegionDigest) -> RenderedDigest:
    return render_parts(f"region-{file_safe(region.key)}-{region.week}", "region", r=region)


def render_parts(name: str, kind: str, **context: Any) -> RenderedDigest:
    text_env = environment(TEXT)
    subject = " ".join(text_env.get_template(f"{kind}-subject.txt").render(context).split())
    html = environment(HTML).get_template(f"{kind}-body.html").render(context, subject=subject)
    text = text_env.get_template(f"{kind}-body.txt").render(context)
    return RenderedDigest(name, subject, html, tidy_text(text))


def tidy_text(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row: template conditionals leave both behind."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)


@cache
def environment(output_format: str = TEXT) -> Environment:
    """The digest's templates in the shared setup (alerts.formats), with the digest's own layout filters."""
    filters: dict[str, Callable[..., Any]] = dict(
        unsigned=lambda text: str(text).lstrip("+-"),
        money=format_money,
        number=format_number,
        day=format_day,
        long_day=format_long_day,
        service=lambda service: SERVICES.get(service, service.replace("_", " ")),
        lower_first=lower_first,
        sentence=sentence,
        bars=bars,
        spark=spark,
        range_note=range_note,
        trend_label=trend_label,
        pulse=format_pulse,
        pulse_trend=pulse_trend,
        status_label=status_label,
        spc_chart=spc_chart,
    )
    if output_format == TEXT:
        filters["wrap"] = wrap  # plain-text layout only: its line breaks are meant
    return template_environment(TEMPLATES, output_format, filters=filters, globals=dict(
        status_label=status_label,
        status_colour=lambda status: STATUSES.get(status, STATUSES["tracked"])[1],
        status_background=lambda status: STATUSES.get(status, STATUSES["tracked"])[2],
        tone_colour=lambda tone: TONES[tone][0],
        tone_background=lambda tone: TONES[tone][1],
        bar_height=BAR_HEIGHT,
        spc_colours=SPC_COLOURS,
        spc_width=SPC_WIDTH,
        spc_height=SPC_HEIGHT,
    ))


def status_label(status: str) -> str:
    return STATUSES.get(status, STATUSES["tracked"])[0]


def format_money(amount: float) -> str:
    return f"${amount:,.0f}"


def format_number(value: float) -> str:
    """Percentage points and fees, always to one decimal ('1.0 points', '6.0%'), as the KPIs are shown."""
    return f"{value:.1f}"


def format_day(day: dt.date, year: bool = False) -> str:
    return f"{day:%b} {day.day}, {day.year}" if year else f"{day:%a %b} {day.day}"


def format_long_day(day: dt.date) -> str:
    return f"{day:%A, %B} {day.day}, {day.year}"


def lower_first(text: str) -> str:
    """'Days in A/R' -> 'days in A/R' mid-sentence; an acronym ('A/R over 60 days', 'eNPS') stays as it is."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def sentence(text: str) -> str:
    """Capitalised, keeping an escaped macro's output marked as escaped (slicing Markup keeps it Markup)."""
    return text[:1].upper() + text[1:]


def wrap(text: str, indent: str = "") -> Markup:
    """Plain-text paragraphs wrapped for mail readers; continuation lines indented under their bullet.

    Its input may join raw values to escaped sentences, so it is escaped (one line, which escaping twice leaves
    as it is) before the line breaks that are meant are added; the result is marked as escaped."""
    return Markup(textwrap.fill(escape_text(text), width=TEXT_WIDTH, subsequent_indent=indent,
                                break_long_words=False, break_on_hyphens=False))


def chart_range(values: Sequence[float]) -> tuple[float, float]:
    """The values a chart's bottom and top stand for. From zero whenever no value is negative, so a bar's height
    is in proportion to its value (41.6 days next to 52 reads as four fifths, not as nearly nothing); a series
    with a negative value (eNPS) is drawn over its own range, and the chart says so (range_note)."""
    low, high = min(values), max(values)
    return (0.0, high) if low >= 0 else (low, high)


def from_zero(trend: Sequence[TrendPoint]) -> bool:
    return not trend or chart_range([point.value for point in trend])[0] == 0


def bars(trend: Sequence[TrendPoint], status: str) -> list[Bar]:
    """Heights in proportion to the value (from zero, see chart_range); at least a pixel, so a period that was
    reported always shows."""
    values = [point.value for point in trend]
    if not values:
        return []
    low, high = chart_range(values)
    span = high - low
    colours = [BEFORE_GO_LIVE if point.before_go_live else AFTER_GO_LIVE for point in trend]
    colours[-1] = STATUSES.get(status, STATUSES["tracked"])[1]
    heights = [
        BAR_HEIGHT // 2 if span == 0 and low != 0 else max(1, round((value - low) / (span or 1) * BAR_HEIGHT))
        for value in values
    ]
    return [Bar(height, colour) for height, colour in zip(heights, colours, strict=True)]


def spark(trend: Sequence[TrendPoint]) -> str:
    """The plain-text chart, on the same scale as the bars."""
    values = [point.value for point in trend]
    if not values:
        return ""
    low, high = chart_range(values)
    if high == low:
        return SPARKS[0 if low == 0 else 3] * len(values)
    return "".join(SPARKS[round((value - low) / (high - low) * (len(SPARKS) - 1))] for value in values)


def range_note(trend: Sequence[TrendPoint], unit: str, key: str = "") -> str:
    """What a chart not drawn from zero spans, said beside it: 'range -20 to +10'; '' for a chart from zero."""
    if from_zero(trend):
        return ""
    low, high = chart_range([point.value for point in trend])
    shown = (lambda value: format_pulse(value, key)) if key else (lambda value: format_value(value, unit))
    return f"range {shown(low)} to {shown(high)}"


def trend_label(trend: Sequence[TrendPoint], unit: str) -> str:
    """What a screen reader says for a chart: every period's value, oldest first."""
    points = ", ".join(
        f"{format_period(point.period)} {format_value(point.value, unit)}" if point.period
        else format_value(point.value, unit)
        for point in trend
    )
    return f"Last {len(trend)} periods, oldest first: {points}"


def format_pulse(value: float, key: str) -> str:
    if key == "enps":
        return f"{value:+.0f}"
    if key in PULSE_PERCENT:
        return f"{value:.0f}%"
    return f"{value:.1f}"


def pulse_trend(values: Sequence[float]) -> tuple[TrendPoint, ...]:
    return tuple(TrendPoint("", value, False) for value in values)
