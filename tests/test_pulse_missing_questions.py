"""A Qualtrics multiple-choice question with an 'Other (text)' choice is headed '<question> - Selected Choice' (in the
labels and the numeric-values export alike): the role question is still found, the typed 'Other' text still never
read. A question of surveys.yaml that an export lacks is said in the ingest result and on the command line, not
dropped without a word."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from config import BUNDLED_DIR, Config, load_config
from intake.ingest import ingest_path
from pulse.forms import parse_export
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.worker_process import vendorwatch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pulse"
ROLE = "Which best describes your role?"
OTHER_TEXT = "Courier runs, Tue and Thu"
ROLE_CODES = {"Front desk / scheduling": "1", "Clinical": "2", "Billing": "3", "Other (please specify)": "4"}


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(BUNDLED_DIR)


def qualtrics_rows() -> list[list[str]]:
    return list(csv.reader(io.StringIO((FIXTURES / "qualtrics.csv").read_text("utf-8-sig"), newline="")))


def as_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def with_other_choice(numeric: bool = False) -> bytes:
    """The fixture as Qualtrics exports it once the role question has an 'Other (please specify)' choice: the choice
    column headed '... - Selected Choice', the typed text in a Q5_4_TEXT column; the last respondent chose Other."""
    rows = qualtrics_rows()
    role = rows[1].index(ROLE)
    rows[1][role] = f"{ROLE} - Selected Choice"
    header_cells = ["Q5_4_TEXT", f"{ROLE} - Other (please specify) - Text", '{"ImportId":"QID5_4_TEXT"}']
    for number, row in enumerate(rows):
        if number >= 3:
            other = number == len(rows) - 1
            row[role] = "Other (please specify)" if other else row[role]
            if numeric and row[role]:
                row[role] = ROLE_CODES[row[role]]
        row.insert(role + 1, header_cells[number] if number < 3 else (OTHER_TEXT if number == len(rows) - 1 else ""))
    return as_csv(rows)


def test_the_role_question_is_found_behind_selected_choice_and_other_text_is_never_read(config: Config) -> None:
    responses = parse_export(with_other_choice(), config.surveys)

    assert [r.group for r in responses.respondents] == ["Front desk / scheduling", "Front desk / scheduling",
                                                        "Clinical", "Clinical", "Billing", "Other (please specify)"]
    assert responses.missing_questions == [q for q in config.surveys.questions if q.dimension == "enps"]
    assert OTHER_TEXT not in repr(responses)


def test_the_numeric_values_export_finds_the_role_question_too(config: Config) -> None:
    responses = parse_export(with_other_choice(numeric=True), config.surveys)

    assert [r.group for r in responses.respondents] == ["1", "1", "2", "2", "3", "4"]


def without_role_question() -> bytes:
    rows = qualtrics_rows()
    rows[1][rows[1].index(ROLE)] = "Your team"
    return as_csv(rows)


def test_a_mapped_question_missing_from_the_export_is_said_in_the_result(
    config: Config, postgres_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "qualtrics.csv"
    path.write_bytes(without_role_question())

    result = ingest_path(path, config, practice="oakridge-fm", database_url=postgres_url)

    assert result.status == "accepted", result.problems
    [enps, role] = result.notes  # in surveys.yaml's order; the bundled eNPS wording differs from this export's
    assert f"the question '{ROLE}' of surveys.yaml (group) is not in this export" in role
    assert "results by group are not shown" in role
    assert "(enps) is not in this export, so it is not scored" in enps
    assert result.as_dict()["notes"] == result.notes


def test_the_ingest_command_prints_the_missing_question(tmp_path: Path) -> None:
    path = tmp_path / "qualtrics.csv"
    path.write_bytes(without_role_question())
    command = ("ingest", str(path), "--practice", "maple-clinic", "--no-evaluate")

    shown = vendorwatch(*command, env=cli_env(tmp_path / "text"), check=False)
    as_json = vendorwatch("--json", *command, env=cli_env(tmp_path / "json"), check=False)

    said = f"the question '{ROLE}' of surveys.yaml (group) is not in this export"
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert said in " ".join(shown.stdout.split())
    [accepted] = json.loads(as_json.stdout)["files"]
    assert accepted["status"] == "accepted" and [note for note in accepted["notes"] if said in note]


def cli_env(data_dir: Path) -> dict[str, str]:
    """The test configuration on its own embedded SQLite database."""
    return subprocess_env({
        "VENDORWATCH_CONFIG": str(TEST_CONFIG), "VENDORWATCH_DATA_DIR": str(data_dir),
        "TEST_TEAMS_URL": "json://127.0.0.1:9/teams", "TEST_ALERT_EMAIL_URL": "json://127.0.0.1:9/email",
        "TEST_DIGEST_EMAIL_URL": "json://127.0.0.1:9/digest",
    })  # fmt: skip
