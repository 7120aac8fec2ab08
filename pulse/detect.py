"""Which survey tool wrote an export, told by the shape of its header rows.

Each tool's CSV has a fixed head: Google Forms one header row starting with Timestamp; Microsoft Forms one row
starting ID, Start time, Completion time (then Email, Name); SurveyMonkey two rows starting Respondent ID,
Collector ID; Qualtrics three rows (column names starting StartDate, EndDate; question texts; import ids such as
{"ImportId":"QID1"}). An operator may name the tool instead (a localised export renames these columns); the layout
is then trusted by position.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from enum import StrEnum

from storage.uploads import sniff_delimiter


class SurveyTool(StrEnum):
    google = "google"
    microsoft = "microsoft"
    surveymonkey = "surveymonkey"
    qualtrics = "qualtrics"


@dataclass(frozen=True)
class Layout:
    tool: SurveyTool
    stored_name: str  # pulse_survey.tool
    header_rows: int
    completed_column: int  # when each response was submitted, by position (its usual header below)
    completed_header: str


LAYOUTS = {
    SurveyTool.google: Layout(SurveyTool.google, "google_forms", 1, 0, "timestamp"),
    SurveyTool.microsoft: Layout(SurveyTool.microsoft, "microsoft_forms", 1, 2, "completion time"),
    SurveyTool.surveymonkey: Layout(SurveyTool.surveymonkey, "surveymonkey", 2, 3, "end date"),
    SurveyTool.qualtrics: Layout(SurveyTool.qualtrics, "qualtrics", 3, 1, "enddate"),
}
IMPORT_ID = re.compile(r'^\s*\{\s*"ImportId"\s*:\s*"([^"]*)"')
EXPECTED = (
    "expected a Google Forms export (one header row, Timestamp first), Microsoft Forms (ID, Start time, "
    "Completion time, Email, Name, then the questions), SurveyMonkey (two header rows: Respondent ID, Collector ID, "
    "...) or Qualtrics (three header rows: StartDate, EndDate, ...; question texts; import ids); or name the tool "
    "with --survey-tool"
)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\ufeff", "")).strip().lower()


def import_id(cell: str) -> str | None:
    """'{"ImportId":"QID4_1"}' -> 'QID4_1' (Qualtrics' third header row)."""
    match = IMPORT_ID.match(cell)
    return match.group(1) if match else None


def tool_of_first_row(first: list[str]) -> SurveyTool | None:
    # Three columns where one could be a wide feed's own header (a vendor may well call a column StartDate).
    cells = [normalise(cell) for cell in first[:3]]
    if cells[:1] == ["timestamp"]:
        return SurveyTool.google
    if cells == ["id", "start time", "completion time"]:
        return SurveyTool.microsoft
    if cells[:2] == ["respondent id", "collector id"]:
        return SurveyTool.surveymonkey
    if cells == ["startdate", "enddate", "status"]:
        return SurveyTool.qualtrics
    return None


def detect_tool(head_rows: list[list[str]]) -> SurveyTool | None:
    """The tool whose header shape these first rows have; None when none fits."""
    tool = tool_of_first_row(head_rows[0]) if head_rows else None
    if tool is SurveyTool.qualtrics and not has_import_ids(head_rows):
        return None  # a legacy or hand-edited Qualtrics file: its question ids are not where we look
    return tool


def has_import_ids(head_rows: list[list[str]]) -> bool:
    return len(head_rows) >= 3 and any(import_id(cell) for cell in head_rows[2])


def looks_like_survey(head: bytes) -> bool:
    """Whether the first bytes of a file are a survey export's header (intake.ingest routes it to pulse/)."""
    text = head.decode("utf-8-sig", errors="replace")
    first = next(csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text)), [])
    return tool_of_first_row(first) is not None
