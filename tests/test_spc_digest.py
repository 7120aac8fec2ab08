"""The digest's control charts: each charted KPI says common cause or its signal, with centre line and limits, and
each vendor has NHS Making Data Count's two icons (variation and assurance); hostile names stay inert in them."""

from __future__ import annotations

import csv
import datetime as dt
import html
from pathlib import Path
from statistics import fmean

import pytest

from alerts.rules import Point, Thresholds
from config.schema import SpcRule, Vendor
from digest.build import build_digest, spc_reading
from digest.model import KpiRow, SpcReading, TrendPoint, VendorCard
from digest.render import render_digest
from feeds.freshness import FeedDue
from storage.db import session_scope
from tests.support.demo import DemoRun
from tests.test_demo import digest_path
from tests.test_digest_seed import AFTER_SEND, WEEK
from tests.test_escaping import hostile_env, names_with, read_html, seed_hostile_world  # noqa: F401 - fixture

DEMO_DATA = Path(__file__).resolve().parents[1] / "worker" / "demo" / "data"
VENDOR = Vendor(id="scribe", name="Scribe", service="transcription", go_live=dt.date(2025, 3, 1))


def points(values: list[float], first: dt.date = dt.date(2025, 5, 1)) -> list[Point]:
    found = []
    for index, value in enumerate(values):
        year, month = first.year + (first.month - 1 + index) // 12, (first.month - 1 + index) % 12 + 1
        start = dt.date(year, month, 1)
        end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        found.append(Point(f"{year}-{month:02d}", start, end, value))
    return found


def test_a_reading_states_the_current_signal_and_marks_its_periods() -> None:
    window = [14.0, 13.6, 14.3, 13.9, 14.1, 13.8, 14.2, 13.7, 14.0, 14.1, 14.2, 13.9]
    thresholds = Thresholds("lower", 24, 48, 1, spc=SpcRule())
    shifted = [*window, 14.6, 14.7, 14.5, 14.8, 14.6, 14.7, 14.9, 14.6, 14.7]
    reading = spc_reading(points(shifted), thresholds, 12.0, VENDOR, 60)
    assert reading is not None
    assert (reading.signal, reading.side, reading.direction, reading.per) == ("shift", "up", "deteriorating", "month")
    assert reading.mean == round(fmean(window), 2)
    assert reading.assurance == "fail"  # the lower limit is above the 12-hour target: it will not meet it
    # The last 12 periods: three of the window, then the nine shifted ones (a run of nine, longer than 7).
    assert reading.marks == ("",) * 3 + ("deteriorating",) * 9
    assert spc_reading(points(window[:11]), thresholds, 12.0, VENDOR, 60) is None  # window not full yet
    common = spc_reading(points([*window, 14.0]), thresholds, None, VENDOR, 60)
    assert common is not None and (common.signal, common.variation, common.assurance) == (None, "common", None)


def reading(direction: str | None, assurance: str | None, side: str = "up") -> SpcReading:
    return SpcReading(10, 8, 12, 12, "month", "shift" if direction else None, side if direction else None,
                      8 if direction else None, direction, assurance, ())


def card(*readings: SpcReading | None) -> VendorCard:
    rows = tuple(KpiRow(f"k{i}", f"KPI {i}", "%", "lower", 10, "2026-10", None, None, None, None, "ok",
                        (TrendPoint("2026-10", 10, False),), False, spc=r) for i, r in enumerate(readings))
    due = FeedDue("2026-11", dt.date(2026, 12, 7), dt.date(2026, 12, 9), False, 0, 0)
    return VendorCard("v", "V", "billing", dt.date(2025, 1, 1), None, rows, None, False, due, None)


@pytest.mark.parametrize(("readings", "variation", "assurance"), [
    ((reading(None, None), None), None, None),
    ((reading("improving", "pass"), reading("deteriorating", "pass")), "k1", "pass"),
    ((reading("improving", "pass"), reading(None, "hit and miss")), "k0", "hit and miss"),
    ((reading(None, "pass"), reading(None, "fail")), None, "fail"),
])
def test_a_vendors_two_icons(readings: tuple[SpcReading | None, ...], variation: str | None,
                             assurance: str | None) -> None:
    vendor = card(*readings)
    assert (vendor.variation.key if vendor.variation else None, vendor.assurance) == (variation, assurance)


def scribeline_window() -> list[float]:
    files = sorted((DEMO_DATA / "lakeside-peds" / "scribeline").glob("*.csv"))
    return [float(list(csv.reader(path.open()))[1][2]) for path in files][:12]


def test_the_demo_digest_shows_the_shift_no_threshold_saw(demo: DemoRun) -> None:
    assert demo.result.returncode == 0, demo.result.stderr
    text = " ".join(digest_path(demo, "lakeside-peds", "txt").read_text(encoding="utf-8").split())
    centre = f"{fmean(scribeline_window()):.1f} hours"
    assert "Variation: special cause of concern (transcription turnaround: shift up for 8 months)." in text
    assert f"control chart: shift up for 8 months, a concern: centre line {centre}, limits" in text
    # 15.1 hours is inside the upper limit: a shift, never worded as past the limit.
    assert ("Warning: ScribeLine Transcription, transcription turnaround 15.1 hours in Oct 2026, a special cause "
            "of concern on its control chart: a sustained change, though inside its control limit of") in text
    page = digest_path(demo, "lakeside-peds", "html").read_text(encoding="utf-8")
    shown, elements = read_html(page)
    assert f"Control chart: shift up for 8 months, a concern: centre line {centre}" in shown
    assert "svg" in elements and "polyline" in elements and "script" not in elements
    assert "Variation: common cause" not in shown  # ScribeLine is the only vendor with a full window


def test_spc_lines_escape_a_hostile_kpi_label(hostile_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    hostile = "<script>alert(1)</script>"
    names = names_with(hostile)
    config = seed_hostile_world(tmp_path, names)
    practice = config.practice("maple-clinic")
    assert practice is not None
    with session_scope() as session:
        digest = build_digest(session, config, practice, WEEK, AFTER_SEND)
    rendered = render_digest(digest)
    label = names.kpi[0].lower() + names.kpi[1:]
    assert f"Variation: special cause of concern ({label}: " in " ".join(rendered.text.split())
    assert hostile not in rendered.html
    assert f"({html.escape(label, quote=False)}: " in rendered.html or f"({html.escape(label)}: " in rendered.html
    shown, elements = read_html(rendered.html)
    assert f"Variation: special cause of concern ({label}: " in shown and "script" not in elements


@pytest.mark.parametrize(("better", "value", "says"), [
    ("lower", 17.0, "outside its control limit of 15.6 hours: a special cause of concern, not noise"),
    ("lower", 15.1, "a sustained change, though inside its control limit of 15.6 hours"),
    ("higher", 14.0, "outside its control limit of 15.6 hours: a special cause of concern, not noise"),
    ("higher", 16.0, "a sustained change, though inside its control limit of 15.6 hours"),
])
def test_an_spc_alert_line_says_whether_the_value_is_past_its_control_limit(better: str, value: float,
                                                                             says: str) -> None:
    from alerts.formats import TEXT
    from digest.render import environment

    line = environment(TEXT).from_string('{% import "_sentences.txt" as say %}{{ say.limit_fact(a) }}')
    alert = {"rule": "spc", "better": better, "value": value, "threshold": 15.6, "unit": "hours", "recover": None}
    assert says in line.render(a=alert)
