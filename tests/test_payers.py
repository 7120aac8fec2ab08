"""The portfolio view, part three: the digest's worst payers for days in A/R and denials, where feeds carry payer
segments (issue 17 item 3), worked out by hand, through the real ingest on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest

from digest.build import build_digest
from digest.model import Digest
from digest.render import render_digest
from storage.db import session_scope
from tests.test_digest_seed import AFTER_SEND, WEEK, World, ingest_at, seed_world
from tests.test_escaping import DIGEST_ELEMENTS, HOSTILE, html_problems, read_html, text_problems

# (payer, Sep 2026, Oct 2026); None: not reported that month.
AR_DAYS = [("Aetna", 58.0, 62.0), ("Cigna", 56.3, 55.1), ("Medicare", 41.0, 41.0), ("UHC", None, 48.0),
           ("BCBS", 31.0, 30.0)]
DENIALS = [("Aetna", 7.0, 6.5), ("Cigna", 12.0, 14.25)]


def payer_feed(path: Path, rows: Sequence[tuple[str, str, float | None, float | None]]) -> Path:
    lines = ["practice,vendor,kpi,period,value,segment"]
    for kpi, payer, september, october in rows:
        for period, value in (("2026-09", september), ("2026-10", october)):
            if value is not None:
                quoted = '"' + f"payer:{payer}".replace('"', '""') + '"'
                lines.append(f"maple-clinic,claimright,{kpi},{period},{value},{quoted}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_payers(tmp: Path, rows: Sequence[tuple[str, str, float | None, float | None]]) -> World:
    world = seed_world(tmp)
    ingest_at(dt.datetime(2026, 11, 18, 15, tzinfo=dt.UTC), payer_feed(tmp / "payers.csv", rows), world.config)
    return world


def digest_of(world: World) -> Digest:
    practice = world.config.practice("maple-clinic")
    assert practice is not None
    with session_scope() as session:
        return build_digest(session, world.config, practice, WEEK, AFTER_SEND)


def test_the_worst_three_payers_for_ar_and_denials_with_their_change(tmp_path: Path,
                                                                     vw_env: dict[str, str]) -> None:
    rows = [("days_in_ar", *row) for row in AR_DAYS] + [("denial_rate", *row) for row in DENIALS]
    digest = digest_of(with_payers(tmp_path, rows))

    ar, denials = sorted(digest.payers, key=lambda p: p.kpi)
    # Days in A/R, lower is better, Oct 2026: Aetna 62.0 (62 - 58 = +4.0), Cigna 55.1 (55.1 - 56.3 = -1.2),
    # UHC 48.0 (no September); Medicare 41 and BCBS 30 are better. 5 payers reported.
    assert (ar.kpi, ar.period, ar.payers) == ("days_in_ar", "2026-10", 5)
    assert [(f.payer, f.value, f.change) for f in ar.worst] == [("Aetna", 62.0, 4.0), ("Cigna", 55.1, -1.2),
                                                                 ("UHC", 48.0, None)]
    assert [(f.payer, f.value, f.change) for f in denials.worst] == [("Cigna", 14.25, 2.25), ("Aetna", 6.5, -0.5)]
    text = " ".join(render_digest(digest).text.split())
    assert ("Worst payers for days in A/R at ClaimRight Billing in Oct 2026: Aetna 62.0 days (+4.0 days); Cigna "
            "55.1 days (-1.2 days); UHC 48.0 days (of 5 payers).") in text
    assert ("Worst payers for initial denial rate at ClaimRight Billing in Oct 2026: Cigna 14.2% (+2.2 pts); "
            "Aetna 6.5% (-0.5 pts).") in text


def test_no_payer_segments_no_payer_section(tmp_path: Path, vw_env: dict[str, str]) -> None:
    digest = digest_of(seed_world(tmp_path))
    assert digest.payers == ()
    assert "BY PAYER" not in render_digest(digest).text


@pytest.mark.parametrize("hostile", [h for h in HOSTILE.values() if "\n" not in h])  # feeds refuse line breaks
def test_a_hostile_payer_name_is_escaped(hostile: str, tmp_path: Path, vw_env: dict[str, str]) -> None:
    payer = f"Acme {hostile} Health"
    rendered = render_digest(digest_of(with_payers(tmp_path, [("denial_rate", payer, 7.0, 8.0)])))
    problems = html_problems(rendered.html, hostile, [payer], DIGEST_ELEMENTS)
    problems += text_problems(rendered.text, hostile, [payer])
    assert f"initial denial rate at ClaimRight Billing in Oct 2026: {payer} 8.0%" in read_html(rendered.html)[0]
    assert not problems, problems
