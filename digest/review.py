"""The quarterly review pack: what a practice takes into its vendor's quarterly business review.

For one vendor (and one practice, or every practice it serves): the quarter's scorecard against the contract
targets, 12 months of trend drawn as inline SVG (no script: it shows the same in a browser, an email and the PDF),
the record over time (alerts.record), the alerts of the quarter and how fast they were resolved, the dollars (the
digest's own dollar lines, digest.assess) and the staff pulse (as anonymity lets digest.pulse_report show it).
`write_pack` writes the HTML, its PDF (headless Chromium prints the same HTML) and a CSV of every figure.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.record import RECORD_MONTHS, Record, improving, record_of
from alerts.rules import Point, limit_for, thresholds_for, worse_than
from config import Config, Practice, Vendor
from digest.assess import target_for
from digest.build import build_digest
from digest.model import DollarLine
from digest.pulse_report import PulseReport
from digest.render import environment
from digest.schedule import iso_week
from storage.models import Alert, Observation
from storage.periods import MONTH, month_period

QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 320, 96, 6
PDF_SECONDS = 120
CSV_COLUMNS = ("vendor", "quarter", "practice", "section", "kpi", "period", "figure", "value", "unit")


@dataclass(frozen=True)
class ChartPoint:
    period: str
    value: float
    x: float
    y: float


@dataclass(frozen=True)
class Chart:
    """Coordinates for an inline SVG line chart: the values, and the target as a dashed line."""

    points: tuple[ChartPoint, ...]
    target_y: float | None
    low: float
    high: float

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class ReviewRow:
    kpi: str
    label: str
    unit: str
    better: str
    target: float | None
    limit: float | None
    quarter: tuple[tuple[str, float], ...]  # the quarter's months and values
    quarter_mean: float | None
    quarter_within: int  # of the quarter's months, how many within target (or limits, without a target)
    record: Record
    getting_better: bool | None
    trend: tuple[tuple[str, float], ...]  # up to 12 months to the quarter's end
    chart: Chart | None


@dataclass(frozen=True)
class ReviewAlert:
    kpi_label: str
    rule: str
    severity: str
    segment: str
    started: dt.date
    resolved: dt.date | None
    days_open: int  # to resolution, or to the quarter's end (or today) while open


@dataclass(frozen=True)
class PracticeReview:
    practice_id: str
    practice_name: str
    rows: tuple[ReviewRow, ...]
    alerts: tuple[ReviewAlert, ...]
    dollars: tuple[DollarLine, ...]
    pulse: PulseReport | None


@dataclass(frozen=True)
class Review:
    vendor_id: str
    vendor_name: str
    quarter: str
    start: dt.date
    end: dt.date
    practices: tuple[PracticeReview, ...]

    @property
    def title(self) -> str:
        return f"Quarterly review: {self.vendor_name}, {self.quarter}"


def parse_quarter(text: str) -> tuple[dt.date, dt.date]:
    match = QUARTER.match(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a quarter: use YYYY-Qn, e.g. 2026-Q4")
    year, number = int(match[1]), int(match[2])
    return dt.date(year, 3 * number - 2, 1), month_period(year, 3 * number).end


def build_review(session: Session, config: Config, vendor_id: str, quarter: str, practice_id: str | None = None,
                 today: dt.date | None = None) -> Review:
    start, end = parse_quarter(quarter)
    served = [p for p in config.practices if p.vendor(vendor_id) is not None
              and practice_id in (None, p.id)]
    if not served:
        raise ValueError(f"no practice in practices.yaml is served by vendor '{vendor_id}'"
                         + (f" as '{practice_id}'" if practice_id else ""))
    vendor = served[0].vendor(vendor_id)
    assert vendor is not None
    as_of = min(end, today or dt.date.today())
    reviews = tuple(practice_review(session, config, practice, vendor_id, start, end, as_of) for practice in served)
    return Review(vendor_id, vendor.name, quarter, start, end, reviews)


def practice_review(session: Session, config: Config, practice: Practice, vendor_id: str, start: dt.date,
                    end: dt.date, as_of: dt.date) -> PracticeReview:
    vendor = practice.vendor(vendor_id)
    assert vendor is not None
    series = monthly_series(session, practice.id, vendor_id, end)
    rows = tuple(row for key, kpi in config.catalog.kpis.items() if key in series
                 if (row := review_row(config, practice, vendor, key, series[key], start, end)) is not None)
    moment = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
    digest = build_digest(session, config, practice, iso_week(as_of), moment)
    return PracticeReview(practice.id, practice.name, rows, quarter_alerts(session, config, practice.id, vendor_id,
                                                                           start, end, as_of),
                          tuple(line for line in digest.dollars if line.vendor == vendor.name), digest.pulse)


def monthly_series(session: Session, practice_id: str, vendor_id: str, end: dt.date) -> dict[str, list[Point]]:
    query = (select(Observation.kpi, Observation.period, Observation.period_start, Observation.period_end,
                    Observation.value)
             .where(Observation.practice_id == practice_id, Observation.vendor_id == vendor_id,
                    Observation.segment == "all", Observation.period_start <= end)
             .order_by(Observation.kpi, Observation.period_start))
    found: dict[str, list[Point]] = {}
    for kpi, period, period_start, period_end, value in session.execute(query):
        if MONTH.match(period):
            found.setdefault(kpi, []).append(Point(period, period_start, period_end, value))
    return found


def review_row(config: Config, practice: Practice, vendor: Vendor, key: str, points: list[Point], start: dt.date,
               end: dt.date) -> ReviewRow | None:
    kpi = config.kpi(key)
    if kpi is None:
        return None
    thresholds = thresholds_for(kpi, practice, vendor, key, config.catalog.defaults)
    target = target_for(kpi, practice, vendor, key)
    limit = limit_for(thresholds, None)
    record = record_of(points[-RECORD_MONTHS:], thresholds, target, vendor.go_live)
    quarter = tuple((p.period, p.value) for p in points if start <= p.period_start <= end)
    bound = target if target is not None else limit
    within = sum(not worse_than(value, bound, kpi.better) for _, value in quarter)
    trend = tuple((p.period, p.value) for p in points[-RECORD_MONTHS:])
    mean = round(sum(v for _, v in quarter) / len(quarter), 2) if quarter else None
    return ReviewRow(key, kpi.label, kpi.unit, kpi.better, target, limit, quarter, mean, within, record,
                     improving(record, kpi.better), trend, chart_of(trend, target))


def chart_of(trend: tuple[tuple[str, float], ...], target: float | None) -> Chart | None:
    """Scaled into the SVG box, the target inside the range drawn; None for fewer than two months."""
    if len(trend) < 2:
        return None
    values = [value for _, value in trend] + ([target] if target is not None else [])
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD

    def y_of(value: float) -> float:
        return CHART_PAD + inner_h * (high - value) / span

    step = inner_w / (len(trend) - 1)
    points = tuple(ChartPoint(period, value, CHART_PAD + index * step, y_of(value))
                   for index, (period, value) in enumerate(trend))
    return Chart(points, None if target is None else y_of(target), low, high)


def quarter_alerts(session: Session, config: Config, practice_id: str, vendor_id: str, start: dt.date,
                   end: dt.date, as_of: dt.date) -> tuple[ReviewAlert, ...]:
    """Alerts open at some time in the quarter (a pending one that never fired told nobody: left out)."""
    first = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    last = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    query = (select(Alert).where(Alert.practice_id == practice_id, Alert.vendor_id == vendor_id,
                                 Alert.state != "pending", Alert.started_at < last,
                                 (Alert.resolved_at.is_(None)) | (Alert.resolved_at >= first))
             .order_by(Alert.started_at, Alert.id))
    found = []
    for alert in session.scalars(query):
        kpi = config.kpi(alert.kpi)
        started = alert.started_at.date()
        resolved = alert.resolved_at.date() if alert.resolved_at is not None else None
        found.append(ReviewAlert(kpi.label if kpi else "Feed", alert.rule, alert.severity, alert.segment, started,
                                 resolved, ((resolved or as_of) - started).days))
    return tuple(found)


# -- the pack ------------------------------------------------------------------------------------------------


def render_review(review: Review) -> str:
    from alerts.formats import HTML

    # In a folder of its own: its SVG and <style> are not elements a digest email may hold (tests/test_escaping).
    return str(environment(HTML).get_template("review/pack.html").render(
        v=review, chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT))


def figures(review: Review) -> list[dict[str, object]]:
    """Every figure of the pack, one row each, for the CSV."""
    rows: list[dict[str, object]] = []
    for pr in review.practices:
        def add(section: str, kpi: str, period: str, figure: str, value: object, unit: str = "",
                pr: PracticeReview = pr) -> None:
            rows.append({"vendor": review.vendor_id, "quarter": review.quarter, "practice": pr.practice_id,
                         "section": section, "kpi": kpi, "period": period, "figure": figure, "value": value,
                         "unit": unit})
        for row in pr.rows:
            add("contract", row.kpi, "", "target", "" if row.target is None else row.target, row.unit)
            for period, value in row.quarter:
                add("quarter", row.kpi, period, "value", value, row.unit)
            add("quarter", row.kpi, review.quarter, "mean", "" if row.quarter_mean is None else row.quarter_mean,
                row.unit)
            add("quarter", row.kpi, review.quarter, "months_within_target", row.quarter_within, "months")
            for period, value in row.trend:
                add("trend", row.kpi, period, "value", value, row.unit)
            add("record", row.kpi, "", "months_within_target_of_last", len(row.record.months), "months")
            add("record", row.kpi, "", "months_within_target", row.record.within_target, "months")
            add("record", row.kpi, "", "months_in_breach_in_a_row", row.record.breach_run, "months")
            add("record", row.kpi, "", "longest_breach", row.record.longest_run, "months")
            add("record", row.kpi, "", "getting_better",
                "" if row.getting_better is None else str(row.getting_better).lower())
        for alert in pr.alerts:
            add("alerts", alert.kpi_label, alert.started.isoformat(), f"{alert.rule}:{alert.severity}:days_open",
                alert.days_open, "days")
        for line in pr.dollars:
            add("dollars", line.kpi or "fee", "", line.kind, round(line.amount, 2), "USD")
        if pr.pulse is not None:
            for score in pr.pulse.scores:
                add("staff_pulse", score.key, pr.pulse.closed_on.isoformat(), "score", score.value)
    return rows


def write_pack(review: Review, out: Path, chromium: str | None = None) -> list[Path]:
    """The HTML, the CSV and the PDF (Chromium prints the HTML), written whole or not at all: each to a temporary
    name first, renamed once complete."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"review-{review.vendor_id}-{review.quarter}"
    html_path, csv_path, pdf_path = (out / f"{stem}.{ext}" for ext in ("html", "csv", "pdf"))
    write_atomic(html_path, render_review(review))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    writer.writerows(figures(review))
    write_atomic(csv_path, table.getvalue())
    print_pdf(html_path, pdf_path, chromium)
    return [html_path, pdf_path, csv_path]


def write_atomic(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8", newline="")
    part.replace(path)


def print_pdf(page: Path, pdf: Path, chromium: str | None = None) -> None:
    """Headless Chromium's print to PDF of the very HTML written (Debian's chromium package)."""
    browser = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise RuntimeError("the PDF needs headless Chromium (Debian: apt-get install chromium)")
    part = pdf.with_name(pdf.name + ".part")
    with tempfile.TemporaryDirectory(prefix="vw-chromium-") as profile:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
             "--no-pdf-header-footer", f"--print-to-pdf={part}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=PDF_SECONDS)
    if result.returncode != 0 or not part.is_file() or part.stat().st_size == 0:
        part.unlink(missing_ok=True)
        raise RuntimeError(f"Chromium could not print {page.name} to PDF (exit {result.returncode})")
    part.replace(pdf)
