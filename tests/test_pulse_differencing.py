"""Differencing across time: a later export of the same survey replaces the earlier one, so the two sets of figures
subtract to the answers of whoever came in between. No two figures vendorwatch shows (alerts, digests) may differ by
fewer than min_group_size people of the same group: a later export is held back, and the published figures stay,
until every part of the practice gains nobody or at least that many. Read from the rendered digest and the alerts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts.evaluate import evaluate_practices
from config import Config
from digest.build import build_digest
from digest.render import render_digest
from intake.ingest import ingest_path
from pulse.anonymity import replacement_held_back
from storage.db import session_scope
from storage.models import Alert, Notification
from storage.uploads import IngestResult
from tests.test_pulse_support import config_with, google_export, pine_clinic, staff, write_export

OPENED, LATER = dt.date(2026, 10, 26), dt.date(2026, 10, 27)
WEEK, SENT = "2026-W45", dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC)
READY = ("readiness_emotional", "readiness_leadership", "readiness_decisions", "readiness_process",
         "readiness_adjustment", "readiness_trust")


def answers(*readiness: int, group: str = "") -> dict[str, object]:
    return {"pulse_workload": 3, "enps": 8, "pulse_burnout": 2, "group": group, **dict(zip(READY, readiness,
                                                                                          strict=True))}


WORRIED, CONFIDENT = answers(3, 3, 3, 3, 3, 2), answers(5, 5, 5, 5, 5, 5)


def ingest(config: Config, url: str, tmp_path: Path, people: list[dict[str, object]], name: str) -> IngestResult:
    path = write_export(tmp_path, google_export(config, people), name)
    result = ingest_path(path, config, practice="pine-clinic", database_url=url, today=dt.date(2026, 11, 1))
    assert result.status == "accepted", result.problems
    return result


def readiness_alert(config: Config, url: str, day: dt.date) -> tuple[str, str, int]:
    """Evaluate as of `day`: the readiness alert's state and severity, and how many notifications it has caused."""
    evaluate_practices(config, as_of=day, now=dt.datetime.combine(day, dt.time(12), dt.UTC), database_url=url)
    with session_scope(url) as session:
        alert = session.scalars(select(Alert).where(Alert.kpi == "readiness_score")).one()
        sent = session.scalars(select(Notification).where(Notification.practice_id == "pine-clinic")).all()
        return alert.state, alert.severity, len(sent)


def digest_text(config: Config, url: str) -> str:
    practice = config.practice("pine-clinic")
    assert practice is not None
    with session_scope(url) as session:
        digest = build_digest(session, config, practice, WEEK, SENT)
    rendered = render_digest(digest)
    return " ".join(rendered.text.split())


def test_a_thirteenth_response_is_held_back_from_the_alerts_and_the_digest(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic(staff_count=20))
    twelve = staff(12, OPENED, **WORRIED)  # readiness 17: critical
    ingest(config, postgres_url, tmp_path, twelve, "twelve.csv")
    assert readiness_alert(config, postgres_url, dt.date(2026, 10, 27))[:2] == ("firing", "critical")
    before = readiness_alert(config, postgres_url, dt.date(2026, 10, 28))

    thirteen = ingest(config, postgres_url, tmp_path, twelve + staff(1, LATER, **CONFIDENT), "thirteen.csv")

    # Shown, the 13th person's answers would lift readiness to 18.0 and resolve the alert: they would be known.
    assert readiness_alert(config, postgres_url, dt.date(2026, 10, 28)) == before
    [note] = thirteen.notes
    assert "not shown yet: it adds 1 response(s) to the 12 already shown" in note
    assert "stay shown until an export of this survey adds at least 5 (min_group_size)" in note
    text = digest_text(config, postgres_url)
    assert "12 of 20 staff answered" in text and "13 of 20" not in text

    ingest(config, postgres_url, tmp_path, twelve + staff(5, LATER, **CONFIDENT), "seventeen.csv")

    assert readiness_alert(config, postgres_url, dt.date(2026, 10, 28))[0] == "resolved"
    assert "17 of 20 staff answered" in digest_text(config, postgres_url)


def test_a_group_gaining_one_person_holds_the_export_back_whatever_the_total(postgres_url: str,
                                                                             tmp_path: Path) -> None:
    config = config_with(pine_clinic(staff_count=30))
    desk, billing = answers(4, 4, 4, 4, 4, 4, group="Front desk"), answers(4, 4, 4, 4, 4, 4, group="Billing")
    first = staff(6, OPENED, **desk) + staff(6, OPENED, **billing)
    ingest(config, postgres_url, tmp_path, first, "first.csv")
    assert "Front desk (6 answered)" in digest_text(config, postgres_url)

    low = answers(1, 1, 1, 1, 1, 1, group="Front desk")
    held = ingest(config, postgres_url, tmp_path, first + staff(1, LATER, **low) + staff(4, LATER, **billing),
                  "plus-five.csv")

    assert "the figures of a shown group would change by the answers of fewer than 5 people" in held.notes[0]
    text = digest_text(config, postgres_url)
    assert "Front desk (6 answered)" in text and "Billing (6 answered)" in text and "12 of 30" in text

    ingest(config, postgres_url, tmp_path, first + staff(5, LATER, **low) + staff(5, LATER, **billing), "plus-ten.csv")

    text = digest_text(config, postgres_url)
    assert "Front desk (11 answered)" in text and "Billing (11 answered)" in text and "22 of 30" in text


def test_a_pulse_too_small_to_show_is_replaced_at_once(postgres_url: str, tmp_path: Path) -> None:
    """Four responses showed no answer, only their number: six may follow without waiting for a ninth."""
    config = config_with(pine_clinic(staff_count=20))
    four = staff(4, OPENED, **CONFIDENT)
    ingest(config, postgres_url, tmp_path, four, "four.csv")
    assert "Too few responses (4)" in digest_text(config, postgres_url)

    six = ingest(config, postgres_url, tmp_path, four + staff(2, LATER, **CONFIDENT), "six.csv")

    assert six.notes == [] and "6 of 20 staff answered" in digest_text(config, postgres_url)


def tally(responses: int, **answered: int) -> dict[str, int]:
    return {"responses": responses, **answered}


@pytest.mark.parametrize(("published", "candidate", "held"), [
    ((tally(12, w=12), {}), (tally(16, w=16), {}), "it adds 4 response(s)"),
    ((tally(12, w=12), {}), (tally(17, w=17), {}), None),
    ((tally(12, w=12), {}), (tally(17, w=13), {}), "answers of fewer than 5 people"),  # 1 newcomer answered w
    ((tally(12, w=12), {}), (tally(17, w=12), {}), None),  # no newcomer answered w: its figure is unchanged
    ((tally(12), {"a": tally(6)}), (tally(17), {"a": tally(7)}), "a shown group"),
    ((tally(12), {"a": tally(6)}), (tally(18), {"a": tally(11)}), "no shown group"),  # the rest gains 1
    ((tally(12), {"a": tally(6)}), (tally(22), {"a": tally(11)}), None),
    ((tally(12), {"a": tally(6)}), (tally(17), {"a": tally(6)}), None),
])  # fmt: skip
def test_every_part_of_the_practice_gains_nobody_or_at_least_the_minimum(
    published: tuple[dict[str, int], dict[str, dict[str, int]]],
    candidate: tuple[dict[str, int], dict[str, dict[str, int]]], held: str | None,
) -> None:
    why = replacement_held_back(published, candidate, min_size=5)

    assert (why is None) == (held is None) and (held is None or (why is not None and held in why)), why
