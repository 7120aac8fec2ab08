"""The portfolio view, part five: the quarterly review pack (issue 17 item 5). Built from feeds that went through
the real ingest and evaluation on PostgreSQL, written by `vendorwatch review`, opened in headless Chromium at
1024 px (screenshot, nothing sticking out) and as the PDF Chromium printed (pdftotext finds the title on page one,
pdftoppm's pixels find the chart's line colour)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.review import CHART_HEIGHT, build_review, chart_of, parse_quarter, render_review
from storage.db import session_scope
from tests.test_digest_browser import chromium, measure, screenshot
from tests.test_escaping import HOSTILE, html_problems, template_elements, text_problems
from tests.test_portfolio import seed_group

__all__ = ["chromium"]  # the fixture, imported for pytest
REVIEW_ELEMENTS = template_elements(Path(__file__).parents[1] / "digest" / "templates" / "review")
CHART_BLUE = (0x1F, 0x6F, 0xEB)


def run_review(config_dir: Path, out: Path, *extra: str) -> dict[str, object]:
    from worker.cli import cli

    result = CliRunner().invoke(cli, ["--config", str(config_dir), "--json", "review", "--vendor", "claimright",
                                      "--quarter", "2026-Q3", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_quarters_and_chart_scaling_by_hand() -> None:
    assert parse_quarter("2026-Q4") == (parse_quarter("2026-Q4")[0], parse_quarter("2026-Q4")[1])
    assert [d.isoformat() for d in parse_quarter("2026-Q4")] == ["2026-10-01", "2026-12-31"]
    assert [d.isoformat() for d in parse_quarter("2024-Q1")] == ["2024-01-01", "2024-03-31"]
    with pytest.raises(ValueError, match="YYYY-Qn"):
        parse_quarter("2026-Q5")
    # 3 months 4, 6, 8 and a target of 5: range 4..8 in a 96 px box padded 6: 84 px for 4 units, 21 px each.
    chart = chart_of((("2026-07", 4.0), ("2026-08", 6.0), ("2026-09", 8.0)), 5.0)
    assert chart is not None
    assert [round(p.y, 1) for p in chart.points] == [90.0, 48.0, 6.0]
    assert chart.target_y == pytest.approx(69.0) and CHART_HEIGHT == 96
    assert chart_of((("2026-07", 4.0),), 5.0) is None


def test_the_pack_has_the_quarter_against_targets_the_record_alerts_and_every_figure_in_csv(
        tmp_path: Path, vw_env: dict[str, str]) -> None:
    config = seed_group(tmp_path)
    written = run_review(tmp_path / "config", tmp_path / "pack")
    files = [Path(name) for name in written["files"]]  # type: ignore[attr-defined]
    assert [path.suffix for path in files] == [".html", ".pdf", ".csv"]

    with session_scope() as session:
        review = build_review(session, config, "claimright", "2026-Q3")
    pine = next(p for p in review.practices if p.practice_id == "pine-family")
    denial = next(r for r in pine.rows if r.kpi == "denial_rate")
    # Pine's denial rate is 4.5% every month of 2026-Q3 against a 5.0% target: mean 4.5, 3 of 3 within.
    assert (denial.quarter, denial.quarter_mean, denial.quarter_within, denial.target) == (
        (("2026-07", 4.5), ("2026-08", 4.5), ("2026-09", 4.5)), 4.5, 3, 5.0)
    assert len(denial.trend) == 11  # 2025-11 .. 2026-09 (its feed starts in 2025-11)
    with files[2].open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {"practice": "pine-family", "section": "quarter", "kpi": "denial_rate", "period": "2026-Q3",
            "figure": "mean", "value": "4.5"}.items() <= next(
        r for r in rows if r["practice"] == "pine-family" and r["figure"] == "mean" and r["kpi"] == "denial_rate"
    ).items()
    assert {r["section"] for r in rows} >= {"contract", "quarter", "trend", "record", "dollars"}
    assert all(not p.alerts for p in review.practices)  # every alert of the seed opened in October

    with session_scope() as session:
        fourth = build_review(session, config, "claimright", "2026-Q4", "maple-clinic", today=dt.date(2026, 11, 23))
    [maple] = fourth.practices
    # The charge lag breach opened 2026-10-15 and resolved 2026-11-20: 16 + 20 = 36 days. The denial rate's
    # critical opened 2026-11-20 and is open on 2026-11-23: 3 days so far.
    opened = {(a.kpi_label, a.rule): (a.started.isoformat(), a.resolved, a.days_open) for a in maple.alerts}
    assert opened[("Charge lag", "threshold")] == ("2026-10-15", dt.date(2026, 11, 20), 36)
    assert opened[("Initial denial rate", "threshold")] == ("2026-11-20", None, 3)
    html = files[0].read_text(encoding="utf-8")
    assert "<script" not in html and html.count("<svg") == sum(len(p.rows) for p in review.practices)


def test_the_pack_opens_in_chromium_at_1024_px_and_as_pdf(chromium: str, tmp_path: Path,
                                                          vw_env: dict[str, str]) -> None:
    seed_group(tmp_path)
    written = run_review(tmp_path / "config", tmp_path / "pack", "--practice", "maple-clinic")
    page, pdf, _ = (Path(name) for name in written["files"])  # type: ignore[attr-defined]

    seen = measure(chromium, page, 1024, tmp_path)
    assert seen["scroll"] <= seen["client"], seen["wide"]
    assert "Quarterly review: ClaimRight Billing, 2026-Q3" in seen["text"]
    assert "Maple Street Clinic" in seen["text"] and "Pine" not in seen["text"]
    assert screenshot(chromium, page, 1024, tmp_path).stat().st_size > 10_000

    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Quarterly review: ClaimRight Billing, 2026-Q3" in text
    subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-r", "60", str(pdf), str(tmp_path / "page")], check=True)
    [ppm] = tmp_path.glob("page*.ppm")
    assert chart_pixels(ppm) > 200  # the trend lines, drawn in their blue


def chart_pixels(ppm: Path) -> int:
    """Pixels of the chart line's colour (within a small tolerance) in a binary PPM (P6), read by hand."""
    data = ppm.read_bytes()
    fields: list[bytes] = []
    offset = 0
    while len(fields) < 4:  # magic, width, height, maxval, separated by whitespace (no comments from pdftoppm)
        while data[offset:offset + 1].isspace():
            offset += 1
        end = offset
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[offset:end])
        offset = end
    assert fields[0] == b"P6" and fields[3] == b"255"
    pixels = data[offset + 1:]
    return sum(1 for i in range(0, len(pixels) - 2, 3)
               if all(abs(pixels[i + k] - CHART_BLUE[k]) < 40 for k in range(3)))


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_names_in_the_pack_are_escaped(hostile: str, tmp_path: Path, vw_env: dict[str, str]) -> None:
    pine = f"Pine {hostile}"
    config = seed_group(tmp_path, pine_name=pine)
    with session_scope() as session:
        html = render_review(build_review(session, config, "claimright", "2026-Q3"))
    problems = html_problems(html, hostile, [pine], REVIEW_ELEMENTS)
    assert not problems, problems
    assert not text_problems(html, hostile, [])
