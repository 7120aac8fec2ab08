"""Staff pulse privacy: which groups may be shown (a table), what leadership sees for small surveys and groups,
and that no identity or free text reaches any table or log record."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from config import BUNDLED_DIR, Config, load_config
from digest.pulse_report import PulseReport, pulse_report
from intake.ingest import ingest_path
from pulse.anonymity import visible_groups
from storage.db import session_scope
from storage.models import Observation, PulseSurvey
from storage.uploads import IngestResult
from tests.test_pulse_formats import EXPORTS, FIXTURES, PRIVATE
from tests.test_pulse_support import config_with, dump_database, google_export, pine_clinic, staff, write_export

DAY = dt.date(2026, 10, 30)


@pytest.mark.parametrize(
    ("total", "sizes", "shown"),
    [
        (4, {}, []),  # below min_group_size: not even the practice figure
        (5, {"Clinical": 5}, []),  # one group holding everyone is the practice figure again
        (8, {"Front desk": 5, "Clinical": 3}, []),  # a practice of 8: practice minus Front desk = 3 people
        (8, {"Front desk": 4, "Clinical": 4}, []),
        (11, {"Front desk": 10, "Billing": 1}, []),  # practice and Front desk differ by one person
        (11, {"Front desk": 6, "Clinical": 5}, ["Clinical", "Front desk"]),  # disjoint, together everyone
        (12, {"Front desk": 6, "Clinical": 5, "Billing": 1}, ["Front desk"]),  # both would leave Billing's one
        (12, {"Front desk": 6, "Clinical": 5}, ["Front desk"]),  # one blank role: same subtraction
        (15, {"A": 5, "B": 5, "C": 5}, ["A", "B", "C"]),
        (16, {"A": 5, "B": 5, "C": 5}, ["A", "B"]),  # all three would leave one person
        (20, {"A": 10, "B": 9}, ["A"]),
        (20, {"A": 10, "B": 4, "C": 6}, ["A"]),  # A + C leaves B's 4; A alone leaves 10
    ],
)  # fmt: skip
def test_groups_are_shown_only_when_no_subtraction_exposes_fewer_than_five(
    total: int, sizes: dict[str, int], shown: list[str]
) -> None:
    assert visible_groups(total, sizes, 5) == shown


def test_the_minimum_group_size_is_a_setting() -> None:
    assert visible_groups(8, {"Front desk": 5, "Clinical": 3}, 3) == ["Clinical", "Front desk"]


def ingest(config: Config, tmp_path: Path, people: list[dict[str, object]], url: str,
           name: str = "pulse.csv") -> IngestResult:
    path = write_export(tmp_path, google_export(config, people), name)
    return ingest_path(path, config, practice="pine-clinic", database_url=url, today=DAY)


def report(config: Config, url: str) -> PulseReport:
    with session_scope(url) as session:
        shown = pulse_report(session, config, config.practices[0], DAY)
    assert shown is not None, "the pulse was stored"
    return shown


def test_four_responses_show_nothing_and_store_only_participation(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic())

    result = ingest(config, tmp_path, staff(4, DAY, pulse_workload=2, pulse_burnout=5, enps=0), postgres_url)

    assert result.status == "accepted"
    shown = report(config, postgres_url)
    assert shown is not None and not shown.shown and shown.scores == []
    assert shown.note is not None and "Too few responses (4)" in shown.note
    with session_scope(postgres_url) as session:
        assert session.scalars(select(PulseSurvey.scores)).one() == {"pulse_participation_rate": 40.0}
        assert list(session.scalars(select(Observation.kpi))) == ["pulse_participation_rate"]


def test_five_responses_show_the_practice_figures(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic())

    ingest(config, tmp_path, staff(5, DAY, pulse_workload=2, pulse_burnout=5, enps=0), postgres_url)

    shown = report(config, postgres_url)
    assert shown is not None and shown.shown
    assert {score.key: score.value for score in shown.scores} == {
        "pulse_participation_rate": 50.0, "pulse_workload": 2.0, "pulse_burnout_pct": 100.0, "enps": -100.0,
    }


def test_a_question_fewer_than_five_answered_is_not_shown(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic())
    people = staff(4, DAY, pulse_workload=4, pulse_burnout=3) + staff(2, DAY, pulse_workload=2)

    ingest(config, tmp_path, people, postgres_url)

    shown = report(config, postgres_url)
    assert shown is not None
    assert [score.key for score in shown.scores] == ["pulse_participation_rate", "pulse_workload"]


def test_a_practice_of_eight_sees_its_whole_practice_figure_only(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic(staff_count=8))
    people = staff(5, DAY, pulse_workload=4, group="Front desk") + staff(3, DAY, pulse_workload=2, group="Clinical")

    ingest(config, tmp_path, people, postgres_url)

    shown = report(config, postgres_url)
    assert shown is not None and shown.shown and shown.groups == []
    assert shown.note is not None and "Results by group are not shown" in shown.note
    with session_scope(postgres_url) as session:
        assert session.scalars(select(PulseSurvey.groups)).one() == {}  # small groups are never stored


@pytest.mark.parametrize(
    ("front_desk", "clinical", "shown"),
    [(10, 1, []), (6, 5, [("Clinical", 5, 2.0), ("Front desk", 6, 4.0)])],
)
def test_groups_differing_from_the_practice_by_one_person_are_withheld(
    postgres_url: str, tmp_path: Path, front_desk: int, clinical: int, shown: list[tuple[str, int, float]]
) -> None:
    config = config_with(pine_clinic(staff_count=12))
    people = (staff(front_desk, DAY, pulse_workload=4, group="Front desk")
              + staff(clinical, DAY, pulse_workload=2, group="Clinical"))

    ingest(config, tmp_path, people, postgres_url)

    groups = report(config, postgres_url).groups
    assert [(g.name, g.responses, g.scores[0].value) for g in groups] == shown
    assert all(g.scores[0].key == "pulse_workload" for g in groups)


def test_identity_and_free_text_reach_no_table_and_no_log_record(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(BUNDLED_DIR)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # every statement and its parameters too
    bad = (FIXTURES / "google-forms.csv").read_bytes().replace(b'"Strongly agree","Front desk',
                                                                b'"Dana Whitfield","Front desk', 1)

    results = [ingest_path(FIXTURES / name, config, practice="oakridge-fm", database_url=postgres_url,
                           today=DAY) for name in EXPORTS]
    results.append(ingest_path(write_export(tmp_path, bad, "bad.csv"), config, practice="oakridge-fm",
                               database_url=postgres_url, today=DAY))

    assert [r.status for r in results] == ["accepted"] * len(EXPORTS) + ["rejected"]
    assert all(r.kind == "pulse" for r in results)
    database = dump_database(postgres_url)
    assert "oakridge-fm" in database and "staff-pulse" in database and "answer not shown" in database
    assert [text for text in [*PRIVATE, "Dana Whitfield"] if text in database] == []
    assert caplog.records, "the SQL echo should have produced log records to check"
    log_text = "\n".join([record.getMessage() for record in caplog.records] + [caplog.text])
    assert [text for text in [*PRIVATE, "Dana Whitfield"] if text in log_text] == []
