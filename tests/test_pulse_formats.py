"""Pulse exports of the four survey tools: detected from their header rows, read to the same anonymous answers,
and anything else refused with its row and column. Pure: no database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from config import BUNDLED_DIR, Config, load_config
from config.schema import SurveysFile
from intake.ingest import is_pulse_export
from pulse.cells import parse_answer
from pulse.detect import SurveyTool, detect_tool
from pulse.forms import SurveyRejected, parse_export
from pulse.scores import readiness_verdict, score
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.worker_process import vendorwatch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pulse"
EXPORTS = {
    "google-forms.csv": SurveyTool.google,
    "microsoft-forms.csv": SurveyTool.microsoft,
    "surveymonkey-condensed.csv": SurveyTool.surveymonkey,
    "surveymonkey-expanded.csv": SurveyTool.surveymonkey,
    "qualtrics.csv": SurveyTool.qualtrics,
}
# The six respondents every fixture holds (one skipped the vendor question; one left the role blank).
EXPECTED_SCORES = {
    "pulse_participation_rate": 42.9,  # 6 of 14
    "pulse_workload": 3.5,
    "pulse_role_clarity": 3.67,
    "pulse_trust_leadership": 3.5,
    "pulse_vendor_confidence": 2.8,  # 14 / 5
    "pulse_burnout_pct": 66.7,  # 3, 4, 5, 3 of 1, 3, 4, 5, 2, 3
    "enps": 0.0,  # promoters 10, 9; detractors 6, 3
    "readiness_emotional": 3.17,
    "readiness_leadership": 3.33,
    "readiness_decisions": 2.83,
    "readiness_process": 3.0,
    "readiness_adjustment": 3.33,
    "readiness_trust": 3.83,
    "readiness_score": 19.5,
}
# What the fixtures carry that must never come out of parsing: identity columns and free text.
PRIVATE = [
    "dana.whitfield@oakridge.example", "Whitfield", "Marcus", "Oyelaran", "Kandasamy", "Lorcan", "Brennagh",
    "Vautrin", "Tomasz", "Ekwueme", "203.0.113.47", "198.51.100.23", "R_3kT9xQp2LmN8v", "EMP-8821", "41.8781",
    "-87.6298", "114211893400", "431987654", "staff-list-oct", "Billing calls me at home", "portal logs me out",
    "before December", "not fine, honestly", "short-staffed", "Prefer not to say, sorry", "R_1previewOnlyRow",
]  # fmt: skip


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


@pytest.fixture(scope="module")
def surveys(config: Config) -> SurveysFile:
    """The bundled template, plus the Qualtrics question id of an eNPS item worded differently there."""
    questions = [q.model_copy(update={"id": "QID3"}) if q.dimension == "enps" else q for q in config.surveys.questions]
    return config.surveys.model_copy(update={"questions": questions})


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def head_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))[:3]


@pytest.mark.parametrize("name", EXPORTS)
def test_each_fixture_is_a_realistic_export_with_identity_and_tricky_free_text(name: str) -> None:
    text = read(name).decode("utf-8-sig")
    cells = "\n".join(cell for record in csv.reader(io.StringIO(text, newline="")) for cell in record)
    assert "Billing calls me at home, twice a week, about the same claims." in cells
    assert 'The "new" portal logs me out, every hour.\nPlease ask them' in cells
    assert "oakridge.example" in cells


@pytest.mark.parametrize(("name", "tool"), EXPORTS.items())
def test_the_tool_is_detected_from_the_header_rows(name: str, tool: SurveyTool) -> None:
    data = read(name)

    assert detect_tool(head_rows(data)) is tool
    assert is_pulse_export(data[:4096])


@pytest.mark.parametrize("name", EXPORTS)
def test_every_tool_gives_the_same_scores_for_the_same_answers(name: str, surveys: SurveysFile) -> None:
    responses = parse_export(read(name), surveys)

    assert responses.count == 6
    assert (str(responses.opened_on), str(responses.closed_on)) == ("2026-10-26", "2026-10-30")
    assert score(responses, staff_count=14) == pytest.approx(EXPECTED_SCORES)
    assert [r.group for r in responses.respondents] == [
        "Front desk / scheduling", "Front desk / scheduling", "Clinical", "Clinical", "Billing", None,
    ]
    assert readiness_verdict(score(responses, 14)["readiness_score"]) == "prepare"


@pytest.mark.parametrize("name", EXPORTS)
def test_identity_columns_and_free_text_never_leave_the_parser(name: str, surveys: SurveysFile) -> None:
    parsed = repr(parse_export(read(name), surveys))

    assert [text for text in PRIVATE if text in parsed] == []


def test_a_qualtrics_question_is_matched_by_its_import_id(config: Config, surveys: SurveysFile) -> None:
    by_text_only = parse_export(read("qualtrics.csv"), config.surveys)
    by_id = parse_export(read("qualtrics.csv"), surveys)

    assert "enps" not in by_text_only.answers  # worded differently in Qualtrics than in surveys.yaml
    assert by_text_only.unmapped_questions == [
        "On a scale from 0 to 10, how likely is it that you would recommend this practice as a place to work?"
    ]
    assert by_id.answers["enps"] == [10, 9, 8, 7, 6, 3]


def test_qualtrics_previews_are_not_counted_as_staff(surveys: SurveysFile) -> None:
    assert "Survey Preview" in read("qualtrics.csv").decode("utf-8-sig")
    assert parse_export(read("qualtrics.csv"), surveys).count == 6


def localised_google_export() -> bytes:
    """A Google Forms export from a Spanish-language account: the Timestamp column is 'Marca temporal'."""
    text = read("google-forms.csv").decode("utf-8")
    return text.replace('"Timestamp"', '"Marca temporal"', 1).encode("utf-8")


def test_an_undetectable_export_is_read_when_the_operator_names_the_tool(surveys: SurveysFile) -> None:
    data = localised_google_export()

    with pytest.raises(SurveyRejected, match=r"row 1, column A \('Marca temporal'\): not a survey export"):
        parse_export(data, surveys)
    assert parse_export(data, surveys, tool="google").count == 6


def test_naming_the_wrong_tool_is_refused(surveys: SurveysFile) -> None:
    with pytest.raises(SurveyRejected, match="this header is a surveymonkey export's, not google's"):
        parse_export(read("surveymonkey-condensed.csv"), surveys, tool="google")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("practice,vendor,kpi,period,value\noakridge-fm,acme,denial_rate,2026-10,9.1\n",
         r"row 1, column A \('practice'\): not a survey export: expected a Google Forms export"),
        ("", r"row 1: empty file"),
        ("StartDate,EndDate,Status,Q1\nStart Date,End Date,Response Type,How is it?\n2026-10-01,2026-10-01,0,4\n",
         r"row 3: a Qualtrics export has three header rows"),
        ("Respondent ID,Collector ID,Start Date,End Date\n", r"row 2: a surveymonkey export has 2 header rows"),
    ],
)  # fmt: skip
def test_anything_else_is_rejected_with_its_row_and_column(text: str, message: str, surveys: SurveysFile) -> None:
    with pytest.raises(SurveyRejected, match=message):
        parse_export(text.encode("utf-8"), surveys)


def test_a_feed_csv_is_not_taken_for_a_survey() -> None:
    assert not is_pulse_export(b"practice,vendor,kpi,period,value\r\n")
    assert not is_pulse_export(b"Month,Days in AR,Denial rate\n2026-10,41,9.1\n")
    assert not is_pulse_export(b"StartDate,EndDate,Denials\n2026-10-01,2026-10-31,9.1\n")


def test_an_export_without_any_question_of_surveys_yaml_is_rejected(surveys: SurveysFile) -> None:
    data = b"Timestamp,Email Address,Favourite colour?\n2026/10/26 9:14:03 AM CDT,a@b.example,Blue\n"

    with pytest.raises(SurveyRejected, match=r"no column matches a question of surveys\.yaml.*Favourite colour"):
        parse_export(data, surveys)


def test_two_choices_filled_in_an_expanded_export_are_rejected(surveys: SurveysFile) -> None:
    records = list(csv.reader(io.StringIO(read("surveymonkey-expanded.csv").decode("utf-8"), newline="")))
    burnout = records[1].index("Not at all")
    records[3][burnout + 1] = "A little"  # row 4 already chose "Most days"
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(records)

    with pytest.raises(SurveyRejected, match=r"row 4, column .*: more than one answer to one question"):
        parse_export(buffer.getvalue().encode("utf-8"), surveys)


def test_every_bad_answer_is_listed_and_words_are_never_echoed(surveys: SurveysFile) -> None:
    text = read("google-forms.csv").decode("utf-8")
    text = text.replace(',"4","4","3","3","1","10",', ',"9","4","3","3","1","10",')
    text = text.replace('"Strongly agree","Front desk', '"Dana Whitfield","Front desk', 1)

    with pytest.raises(SurveyRejected) as rejected:
        parse_export(text.encode("utf-8"), surveys)

    messages = [str(problem) for problem in rejected.value.problems]
    assert messages == [
        "row 2, column C ('9'): outside 1-5",
        "row 2, column N: not a number on the 1-5 scale nor one of its labels (answer not shown)",
    ]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("Strongly agree", 5), ("  strongly   AGREE ", 5), ("Neutral", 3), ("4", 4), ("4 - Agree", 4), ("", None),
     ("2", 4.0)],
)  # fmt: skip
def test_answers_may_be_numbers_or_the_scale_labels(answer: str, expected: float | None, config: Config) -> None:
    scale = config.surveys.scales["agree"]
    reverse = answer == "2"  # a reverse-scored item: 1 + 5 - 2

    assert parse_answer(answer, scale, reverse) == expected


def test_day_first_dates_are_recognised_from_the_whole_file(surveys: SurveysFile) -> None:
    text = read("microsoft-forms.csv").decode("utf-8-sig")
    for day in range(26, 31):
        text = text.replace(f"10/{day}/2026", f"{day}/10/2026")

    responses = parse_export(text.encode("utf-8"), surveys)

    assert (str(responses.opened_on), str(responses.closed_on)) == ("2026-10-26", "2026-10-30")


def test_the_ingest_command_takes_the_survey_tool_override(tmp_path: Path) -> None:
    """Through the real command line, on the embedded SQLite: an export no header rule recognises, tool named."""
    path = tmp_path / "Encuesta de personal (respuestas).csv"
    path.write_bytes(localised_google_export())
    env = subprocess_env({
        "VENDORWATCH_CONFIG": str(TEST_CONFIG), "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "TEST_TEAMS_URL": "json://127.0.0.1:9/teams", "TEST_ALERT_EMAIL_URL": "json://127.0.0.1:9/email",
        "TEST_DIGEST_EMAIL_URL": "json://127.0.0.1:9/digest",
    })  # fmt: skip
    command = ("--json", "ingest", str(path), "--practice", "maple-clinic", "--no-evaluate")

    named = vendorwatch(*command, "--survey-tool", "google", env=env, check=False)

    assert named.returncode == 0, named.stdout + named.stderr
    [accepted] = json.loads(named.stdout)["files"]
    assert (accepted["status"], accepted["kind"], accepted["rows"]) == ("accepted", "pulse", 6)
