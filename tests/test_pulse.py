"""Staff pulse surveys: a Google Forms export in, aggregate scores out, and no respondent identity kept anywhere."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config import BUNDLED_DIR, Config, load_config
from config.schema import SurveysFile
from intake.ingest import ingest_path
from pulse.forms import Respondent, Responses, parse_google_forms
from pulse.scores import score
from storage.db import engine_for, session_scope
from storage.models import Base, PulseSurvey

PRACTICE = "oakridge-fm"  # staff_count 14 in the bundled config/practices.yaml
COMMENT_QUESTION = "Anything else you want leadership to know?"

# One respondent per row. Answers per dimension, in the column order of config/surveys.yaml; "" = skipped.
RESPONDENTS: list[dict[str, str]] = [
    {
        "timestamp": "2026/10/26 9:14:03 AM CDT",
        "email": "dana.whitfield@oakridge.example",
        "name": "Dana Whitfield",
        "workload": "4", "role_clarity": "4", "trust": "3", "vendor": "3", "burnout": "1", "enps": "10",
        "comment": "Billing calls me at home, twice a week, about the same claims.",
    },
    {
        "timestamp": "2026/10/26 11:02:47 AM CDT",
        "email": "marcus.oyelaran@oakridge.example",
        "name": "Marcus Oyelaran",
        "workload": "3", "role_clarity": "2", "trust": "4", "vendor": "2", "burnout": "3", "enps": "9",
        "comment": 'The "new" portal logs me out, every hour.\nPlease ask Acme to fix it before December.',
    },
    {
        "timestamp": "2026/10/27 2:31:15 PM CDT",
        "email": "priya.kandasamy@oakridge.example",
        "name": "Priya Kandasamy",
        "workload": "5", "role_clarity": "4", "trust": "4", "vendor": "", "burnout": "4", "enps": "8",
        "comment": "",
    },
    {
        "timestamp": "2026/10/28 9:14:03 AM CDT",
        "email": "lou.brennagh@oakridge.example",
        "name": "Lou Brennagh",
        "workload": "2", "role_clarity": "3", "trust": "2", "vendor": "2", "burnout": "5", "enps": "7",
        "comment": 'I said "fine" last time; it is not fine, honestly.',
    },
    {
        "timestamp": "2026/10/29 4:45:59 PM CDT",
        "email": "ines.vautrin@oakridge.example",
        "name": "Ines Vautrin",
        "workload": "4", "role_clarity": "5", "trust": "3", "vendor": "4", "burnout": "2", "enps": "6",
        "comment": "Front desk, mornings: short-staffed since the switch.",
    },
    {
        "timestamp": "2026/10/30 8:03:21 AM CDT",
        "email": "tomasz.ekwueme@oakridge.example",
        "name": "Tomasz Ekwueme",
        "workload": "3", "role_clarity": "4", "trust": "5", "vendor": "3", "burnout": "3", "enps": "3",
        "comment": "",
    },
    {
        "timestamp": "2026/10/30 12:20:40 PM CDT",
        "email": "rosalind.achterberg@oakridge.example",
        "name": "Rosalind Achterberg",
        "workload": "4", "role_clarity": "3", "trust": "4", "vendor": "4", "burnout": "2", "enps": "9",
        "comment": "Thanks for asking, really.",
    },
]  # fmt: skip
ANSWER_KEYS = ("workload", "role_clarity", "trust", "vendor", "burnout", "enps")
DIMENSIONS = (
    "pulse_workload",
    "pulse_role_clarity",
    "pulse_trust_leadership",
    "pulse_vendor_confidence",
    "pulse_burnout",
    "enps",
)
IDENTITY_STRINGS = [
    text
    for respondent in RESPONDENTS
    for text in (
        respondent["email"],
        respondent["email"].split("@")[0],
        respondent["name"],
        *respondent["name"].split(),
        *(line for line in respondent["comment"].split("\n") if line),
    )
]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


def question_texts(surveys: SurveysFile) -> list[str]:
    by_dimension: dict[str, str] = {str(question.dimension): question.text or "" for question in surveys.questions}
    return [by_dimension[dimension] for dimension in DIMENSIONS]


def google_forms_export(surveys: SurveysFile, respondents: list[dict[str, str]] = RESPONDENTS) -> bytes:
    """What Google Forms' 'Download responses (.csv)' gives: every field quoted, CRLF rows, Timestamp first."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(["Timestamp", "Email Address", "Name", *question_texts(surveys), COMMENT_QUESTION])
    for respondent in respondents:
        writer.writerow(
            [
                respondent["timestamp"],
                respondent["email"],
                respondent["name"],
                *(respondent[key] for key in ANSWER_KEYS),
                respondent["comment"],
            ]
        )
    return buffer.getvalue().encode("utf-8")


def answers(key: str) -> list[float]:
    return [float(respondent[key]) for respondent in RESPONDENTS if respondent[key]]


def write_export(directory: Path, data: bytes, name: str = "Oakridge staff pulse (Responses).csv") -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def dump_database(url: str) -> str:
    """Every value of every row of every table, as text."""
    values: list[str] = []
    with engine_for(url).connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                values.extend(str(value) for value in row)
    return "\n".join(values)


def test_export_fixture_is_a_realistic_google_forms_export(config: Config) -> None:
    """Guards the premise of the privacy tests: identity and tricky free text really are in the bytes."""
    text = google_forms_export(config.surveys).decode("utf-8")
    assert text.startswith('"Timestamp","Email Address","Name",')
    assert '"2026/10/28 9:14:03 AM CDT"' in text
    assert '""new""' in text and "every hour.\nPlease" in text
    cells = "\n".join(cell for record in csv.reader(io.StringIO(text, newline="")) for cell in record)
    assert [identity for identity in IDENTITY_STRINGS if identity not in cells] == []


def test_parse_keeps_answers_per_dimension_and_nothing_else(config: Config) -> None:
    responses = parse_google_forms(google_forms_export(config.surveys), config.surveys)

    assert responses.tool == "google_forms"
    assert responses.count == len(RESPONDENTS)
    assert responses.closed_on == dt.date(2026, 10, 30)
    assert responses.answers == {
        dimension: answers(key) for dimension, key in zip(DIMENSIONS, ANSWER_KEYS, strict=True)
    }
    assert responses.unmapped_questions == [COMMENT_QUESTION]
    assert not any(identity in repr(responses) for identity in IDENTITY_STRINGS)


def test_participation_is_responses_over_staff_count_in_percent(config: Config) -> None:
    responses = parse_google_forms(google_forms_export(config.surveys), config.surveys)

    assert score(responses, staff_count=14)["pulse_participation_rate"] == pytest.approx(50.0)
    assert score(responses, staff_count=10)["pulse_participation_rate"] == pytest.approx(70.0)
    assert "pulse_participation_rate" not in score(responses, staff_count=None)


def test_dimension_scores_are_means_of_the_answers_given(config: Config) -> None:
    scores = score(parse_google_forms(google_forms_export(config.surveys), config.surveys), 14)

    assert scores["pulse_workload"] == pytest.approx(3.57)  # 25 / 7
    assert scores["pulse_role_clarity"] == pytest.approx(3.57)  # 25 / 7
    assert scores["pulse_trust_leadership"] == pytest.approx(3.57)  # 25 / 7
    assert scores["pulse_vendor_confidence"] == pytest.approx(3.0)  # 18 / 6: one respondent skipped it


def test_burnout_percentage_counts_answers_of_three_or_more(config: Config) -> None:
    scores = score(parse_google_forms(google_forms_export(config.surveys), config.surveys), 14)

    # Answers 1, 3, 4, 5, 2, 3, 2: four of seven are 3 or more.
    assert scores["pulse_burnout_pct"] == pytest.approx(57.1)


def test_enps_is_percent_promoters_minus_percent_detractors(config: Config) -> None:
    scores = score(parse_google_forms(google_forms_export(config.surveys), config.surveys), 14)

    # Answers 10, 9, 8, 7, 6, 3, 9: promoters (9-10) 3, passives (7-8) 2, detractors (0-6) 2 -> (3 - 2) / 7.
    assert scores["enps"] == 14


def test_enps_of_only_detractors_is_minus_one_hundred(config: Config) -> None:
    respondents = [{**respondent, "enps": answer} for respondent, answer in zip(RESPONDENTS, "0123456", strict=True)]

    scores = score(parse_google_forms(google_forms_export(config.surveys, respondents), config.surveys), 14)

    assert scores["enps"] == -100


def test_reverse_scored_items_are_flipped_on_their_scale(config: Config) -> None:
    reversed_workload = config.surveys.model_copy(
        update={
            "questions": [
                question.model_copy(update={"reverse": True}) if question.dimension == "pulse_workload" else question
                for question in config.surveys.questions
            ]
        }
    )

    responses = parse_google_forms(google_forms_export(config.surveys), reversed_workload)

    assert responses.answers["pulse_workload"] == [6 - answer for answer in answers("workload")]
    assert responses.answers["pulse_role_clarity"] == answers("role_clarity")
    assert score(responses, 14)["pulse_workload"] == pytest.approx(2.43)  # 6 - 25 / 7


def test_an_answer_outside_the_scale_is_rejected_naming_row_and_column(config: Config) -> None:
    respondents = [dict(respondent) for respondent in RESPONDENTS]
    # The third respondent sits on spreadsheet row 4, even though row 3's comment spans two lines.
    respondents[2]["workload"] = "7"

    with pytest.raises(ValueError, match=r"row 4, column D \('7'\): outside 1-5"):
        parse_google_forms(google_forms_export(config.surveys, respondents), config.surveys)


def test_ingesting_a_bad_export_rejects_it_whole_and_stores_nothing(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    respondents = [dict(respondent) for respondent in RESPONDENTS]
    respondents[2]["workload"] = "7"
    path = write_export(tmp_path, google_forms_export(config.surveys, respondents))

    result = ingest_path(path, config, practice=PRACTICE, database_url=postgres_url)

    assert result.status == "rejected"
    assert result.kind == "pulse"
    assert any(str(problem).startswith("row 4, column D") for problem in result.problems)
    with session_scope(postgres_url) as session:
        assert session.scalar(select(func.count()).select_from(PulseSurvey)) == 0


def test_ingesting_an_export_stores_aggregate_scores_for_the_practice(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    path = write_export(tmp_path, google_forms_export(config.surveys))

    result = ingest_path(path, config, practice=PRACTICE, database_url=postgres_url)

    assert result.status == "accepted"
    assert result.rows == len(RESPONDENTS)
    with session_scope(postgres_url) as session:
        survey = session.scalars(select(PulseSurvey)).one()
    assert survey.practice_id == PRACTICE
    assert survey.closed_on == dt.date(2026, 10, 30)
    assert survey.responses == 7
    assert survey.staff_count == 14
    assert survey.scores["pulse_participation_rate"] == pytest.approx(50.0)
    assert survey.scores["pulse_burnout_pct"] == pytest.approx(57.1)
    assert survey.scores["enps"] == 14


def test_no_email_name_or_comment_reaches_the_database_or_the_logs(
    config: Config, postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_export(tmp_path, google_forms_export(config.surveys))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # every statement and its parameters too

    result = ingest_path(path, config, practice=PRACTICE, database_url=postgres_url)

    assert result.status == "accepted"
    database = dump_database(postgres_url)
    assert "oakridge-fm" in database  # the dump really holds the stored survey
    leaked = [identity for identity in IDENTITY_STRINGS if identity in database]
    assert leaked == [], f"identity stored in the database: {leaked}"
    assert caplog.records, "the SQL echo should have produced log records to check"
    log_text = "\n".join([record.getMessage() for record in caplog.records] + [caplog.text])
    leaked = [identity for identity in IDENTITY_STRINGS if identity in log_text]
    assert leaked == [], f"identity written to a log record: {leaked}"


def test_the_same_export_twice_is_a_duplicate(config: Config, postgres_url: str, tmp_path: Path) -> None:
    data = google_forms_export(config.surveys)
    first = write_export(tmp_path, data)
    again = write_export(tmp_path, data, name="Oakridge staff pulse (Responses) (1).csv")

    results = [ingest_path(path, config, practice=PRACTICE, database_url=postgres_url) for path in (first, again)]

    assert [result.status for result in results] == ["accepted", "duplicate"]
    with session_scope(postgres_url) as session:
        assert session.scalar(select(func.count()).select_from(PulseSurvey)) == 1


def test_responses_carry_no_identity_fields() -> None:
    """The parsed form of an export has no field where an email, a name or a comment could ride along."""
    assert set(Responses.__dataclass_fields__) == {"tool", "opened_on", "closed_on", "respondents",
                                                   "unmapped_questions", "missing_questions"}
    assert set(Respondent.__dataclass_fields__) == {"answers", "group"}
