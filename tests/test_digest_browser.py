"""The digest as a phone and a laptop show it: headless Chromium (Debian's package) renders the preview at 375 and
1024 pixels wide; nothing may stick out sideways on the phone, and the words that matter must be visible.

Headless Chromium will not make its window narrower than 500 px, so the page is laid out in an iframe of the exact
width (srcdoc, so that the measuring script may write its findings into the outer page that --dump-dom prints).
Chromium is required, never skipped: without it this test fails."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from digest.send import preview, preview_region
from storage.db import session_scope
from tests.test_digest_seed import AFTER_SEND, WEEK, World, world

__all__ = ["world"]  # the fixture, imported for pytest
WIDTHS = (375, 1024)
# Injected into a copy of the preview (the email itself has no script): what overflows the viewport, and the
# text a reader sees (innerText skips what is hidden and applies CSS text-transform).
MEASURE = """<script>
(function () {
  var limit = document.documentElement.clientWidth, wide = [];
  document.querySelectorAll("body *").forEach(function (el) {
    var box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > limit + 0.5) wide.push(el.tagName + " right=" + Math.round(box.right));
  });
  parent.document.getElementById("vw-measure").textContent = JSON.stringify({viewport: window.innerWidth,
    client: limit, scroll: document.documentElement.scrollWidth, wide: wide.slice(0, 10),
    text: document.body.innerText});
})();
</script>"""
FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe style="width:{width}px;height:3000px;border:0" srcdoc="{page}"></iframe><pre id="vw-measure"></pre>
</body></html>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium package is required for this test (apt-get install chromium)"
    return path


def chromium_args(chromium: str, profile: Path, width: int) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr", f"--user-data-dir={profile}", f"--window-size={width},2000"]


def measure(chromium: str, page: Path, width: int, tmp: Path) -> dict[str, Any]:
    measured = page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>")
    frame = tmp / f"measure-{width}-{page.name}"
    frame.write_text(FRAME.format(width=width, page=html.escape(measured, quote=True)), encoding="utf-8")
    result = subprocess.run([*chromium_args(chromium, tmp / f"profile-{width}", max(width, 500) + 40),
                             "--virtual-time-budget=2000", "--dump-dom", frame.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CONSOLE" not in result.stderr and "Uncaught" not in result.stderr, result.stderr[-2000:]
    found = re.search(r'<pre id="vw-measure">(.*?)</pre>', result.stdout, re.S)
    assert found and found.group(1), result.stdout[-2000:]
    return dict(json.loads(html.unescape(found.group(1))))


def screenshot(chromium: str, page: Path, width: int, tmp: Path) -> Path:
    shot = tmp / f"{page.stem}-{width}.png"
    result = subprocess.run([*chromium_args(chromium, tmp / f"profile-shot-{width}", width),
                             f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return shot


@pytest.fixture
def previews(world: World, tmp_path: Path) -> dict[str, Path]:
    practice = world.config.practice("maple-clinic")
    assert practice is not None
    with session_scope() as session:
        files = preview(session, world.config, practice, WEEK, tmp_path / "preview", now=AFTER_SEND)
        files += preview_region(session, world.config, "mountain", WEEK, tmp_path / "preview", now=AFTER_SEND)
    return {path.stem: path for path in files if path.suffix == ".html"}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_practice_digest_fits_the_screen_and_shows_what_matters(
    chromium: str, previews: dict[str, Path], tmp_path: Path, width: int
) -> None:
    page = previews[f"digest-maple-clinic-{WEEK}"]

    seen = measure(chromium, page, width, tmp_path)

    assert seen["viewport"] == width
    assert seen["scroll"] <= seen["client"], f"wider than the screen: {seen['wide']}"
    assert seen["wide"] == []
    text = " ".join(seen["text"].split())
    for expected in (
        "Maple Street Clinic",
        "Action needed: ClaimRight Billing initial denial rate is 10.4%, over the 10.0% limit",
        "FOR THE NEXT HUDDLE",
        "Ask ClaimRight Billing about the initial denial rate",
        "$17,400",
        "a 2.9-point gap x $600,000 net collectible = $17,400 a year",
        "Remindly has not sent its Oct 2026 feed (10 days past due).",
        "Initial denial rate",
        "10.4%",
        "limit 10.0% · target 5.0% · before go-live 7.2% 3.1 pts worse",
        "STAFF PULSE",
    ):
        assert expected in text, f"{expected!r} is not visible at {width} px"
    assert text.index("Action needed") < text.index("FOR THE NEXT HUDDLE") < text.index("WHAT IT COSTS")
    assert screenshot(chromium, page, width, tmp_path).stat().st_size > 10_000


@pytest.mark.parametrize("width", WIDTHS)
def test_the_regional_roll_up_fits_the_screen(
    chromium: str, previews: dict[str, Path], tmp_path: Path, width: int
) -> None:
    seen = measure(chromium, previews[f"region-mountain-{WEEK}"], width, tmp_path)

    assert seen["scroll"] <= seen["client"] and seen["wide"] == [], seen["wide"]
    text = " ".join(seen["text"].split())
    assert "Mountain region" in text and "2 of 2 practices need attention" in text
    assert text.index("Maple Street Clinic") < text.index("Pine Family Practice")
