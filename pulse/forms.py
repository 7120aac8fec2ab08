"""Survey exports (Google Forms, Microsoft Forms, SurveyMonkey, Qualtrics) to anonymous answers.

Only three kinds of cell are ever read: the completion time, the answers to the questions of surveys.yaml, and the
optional grouping question. Identity columns (email, name, IP address, respondent, collector or recipient ids,
external reference, location) and free-text answers are never read, so they can reach neither the database nor a
log line; what leaves this module is a list of per-respondent scores with no name attached.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from config.schema import SurveyQuestion, SurveyScale, SurveysFile
from pulse.cells import AnswerError, column_letter, parse_answer, read_dates
from pulse.detect import EXPECTED, LAYOUTS, Layout, SurveyTool, detect_tool, has_import_ids, import_id, normalise
from storage.observations import Problem
from storage.uploads import decode, sniff_delimiter

MAX_PROBLEMS = 100
# Headers that name a person or their device, whatever the tool: never read, never listed.
IDENTITY_HEADERS = frozenset({
    "email", "email address", "e-mail", "e-mail address", "name", "full name", "your name", "first name",
    "last name", "username", "user name", "user id", "id", "employee id", "ip address", "ipaddress",
    "respondent id", "collector id", "response id", "responseid", "recipient email", "recipientemail",
    "recipient first name", "recipientfirstname", "recipient last name", "recipientlastname", "external reference",
    "externalreference", "external data reference", "externaldatareference", "location latitude",
    "locationlatitude", "location longitude", "locationlongitude",
})  # fmt: skip
CUSTOM_DATA = re.compile(r"^custom data( \d+)?$")
MICROSOFT_META = frozenset({"last modified time", "total points", "quiz feedback", "grade posted to learners"})
SURVEYMONKEY_META = frozenset({"respondent id", "collector id", "start date", "end date", "ip address",
                               "email address", "first name", "last name"})
SURVEYMONKEY_SINGLE = frozenset({"", "response"})
QUALTRICS_META = frozenset({
    "startdate", "enddate", "status", "ipaddress", "progress", "duration", "finished", "recordeddate", "_recordid",
    "recipientlastname", "recipientfirstname", "recipientemail", "externaldatareference", "locationlatitude",
    "locationlongitude", "distributionchannel", "userlanguage",
})  # fmt: skip
# Qualtrics Status values that are not a staff member answering: previews, tests, spam (codes and labels).
QUALTRICS_NOT_RESPONSES = frozenset({"1", "2", "8", "9", "12", "survey preview", "survey test", "spam",
                                     "preview spam", "imported spam"})
# A multiple-choice question with an 'Other (text)' choice: Qualtrics heads the choice column '<question> - Selected
# Choice' (labels and numeric-values exports alike) and the typed text '<question> - <choice> - Text' (a _TEXT id).
QUALTRICS_SELECTED_CHOICE = re.compile(r"\s+-\s+selected choice\s*$", re.IGNORECASE)


class SurveyRejected(ValueError):
    """The export cannot be read; every problem with its row and column (row 1 is the first header row)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems[:MAX_PROBLEMS]
        super().__init__("\n".join(str(problem) for problem in self.problems[:10]))


@dataclass(frozen=True)
class Respondent:
    """One response: scores per dimension (already reverse-scored) and its group. Nothing that names anyone."""

    answers: dict[str, list[float]]
    group: str | None = None


@dataclass(frozen=True)
class Responses:
    """One export, read: its tool, its first and last response days, and every respondent's anonymous scores."""

    tool: str
    opened_on: dt.date  # the first response's day: a later export of the same survey starts on the same day
    closed_on: dt.date  # the last response's day
    respondents: list[Respondent]
    unmapped_questions: list[str] = field(default_factory=list)
    missing_questions: list[SurveyQuestion] = field(default_factory=list)  # of surveys.yaml, not in this export

    @property
    def count(self) -> int:
        return len(self.respondents)

    @property
    def answers(self) -> dict[str, list[float]]:
        """Every answer per dimension, pooled over respondents."""
        pooled: dict[str, list[float]] = {}
        for respondent in self.respondents:
            for dimension, values in respondent.answers.items():
                pooled.setdefault(dimension, []).extend(values)
        return pooled


@dataclass(frozen=True)
class Column:
    """A column that may hold answers: the normalised texts and ids it answers to."""

    index: int
    keys: frozenset[str]
    label: str


@dataclass(frozen=True)
class Binding:
    """A question of surveys.yaml and the column(s) holding its answer (several: one per choice, 'expanded')."""

    question: SurveyQuestion
    scale: SurveyScale
    columns: tuple[int, ...]


def parse_export(data: bytes, surveys: SurveysFile, tool: SurveyTool | str | None = None) -> Responses:
    """Read an export whose tool is detected from its header (or named by `tool`); SurveyRejected if it cannot."""
    if tool and tool not in set(SurveyTool):
        raise SurveyRejected([Problem(1, None, str(tool), f"unknown survey tool; one of {', '.join(SurveyTool)}")])
    records = read_records(data)
    layout = choose_layout(records, SurveyTool(tool) if tool else None)
    head, body = records[: layout.header_rows], records[layout.header_rows :]
    columns = COLUMN_READERS[layout.tool](head)
    bindings = bind_questions(surveys, columns)
    if not any(binding.question.dimension != "group" for binding in bindings):
        listed = "; ".join(column.label for column in columns[:6]) or "none"
        raise SurveyRejected([Problem(1, None, None, "no column matches a question of surveys.yaml (by text or id); "
                                                     f"the export's questions: {listed}")])
    taken = {index for binding in bindings for index in binding.columns}
    unmapped = list(dict.fromkeys(column.label for column in columns if column.index not in taken))
    bound = {id(binding.question) for binding in bindings}
    missing = [question for question in surveys.questions if id(question) not in bound]
    return replace(read_responses(layout, head, body, bindings, unmapped), missing_questions=missing)


def parse_google_forms(data: bytes, surveys: SurveysFile) -> Responses:
    return parse_export(data, surveys, SurveyTool.google)


def read_records(data: bytes) -> list[list[str]]:
    text = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    try:
        return list(reader)
    except csv.Error as exc:
        raise SurveyRejected([Problem(reader.line_num, None, None, f"not a readable CSV file: {exc}")]) from exc


def choose_layout(records: list[list[str]], tool: SurveyTool | None) -> Layout:
    if not records or not any(cell.strip() for cell in records[0]):
        raise SurveyRejected([Problem(1, None, None, "empty file")])
    detected = detect_tool(records[:3])
    if tool is not None and detected is not None and detected is not tool:
        raise SurveyRejected([Problem(1, "A", records[0][0][:40], f"this header is a {detected.value} export's, "
                                                                    f"not {tool.value}'s as named")])
    chosen = tool or detected
    if chosen is None:
        if records[0] and normalise(records[0][0]) == "startdate":
            raise SurveyRejected([Problem(3, None, None, 'a Qualtrics export has three header rows, the third '
                                                         'holding import ids such as {"ImportId":"QID1"}')])
        raise SurveyRejected([Problem(1, "A", records[0][0][:40], f"not a survey export: {EXPECTED}")])
    layout = LAYOUTS[chosen]
    if len(records) < layout.header_rows or (chosen is SurveyTool.qualtrics and not has_import_ids(records)):
        raise SurveyRejected([Problem(len(records) + 1, None, None,
                                      f"a {chosen.value} export has {layout.header_rows} header rows")])
    return layout


def is_identity(header: str) -> bool:
    name = normalise(header)
    return name in IDENTITY_HEADERS or bool(CUSTOM_DATA.match(name))


def text_keys(header: str) -> set[str]:
    """A column answers to its header and, for a grid row ('Question [Row]'), to the row alone."""
    keys = {normalise(header)}
    if match := re.search(r"\[([^\]]+)\]\s*$", header):
        keys.add(normalise(match.group(1)))
    return keys


def cell(record: list[str], index: int) -> str:
    return record[index] if index < len(record) else ""


def google_columns(head: list[list[str]]) -> list[Column]:
    header = head[0]
    return [Column(i, frozenset(text_keys(name)), name.strip()) for i, name in enumerate(header)
            if i > 0 and not is_identity(name) and normalise(name) != "score"]


def microsoft_columns(head: list[list[str]]) -> list[Column]:
    # ID, Start time, Completion time, Email, Name come first by the layout, whatever their language.
    header = head[0]
    return [Column(i, frozenset(text_keys(name)), name.strip()) for i, name in enumerate(header)
            if i >= 5 and not is_identity(name) and not is_microsoft_meta(name)]


def is_microsoft_meta(header: str) -> bool:
    name = normalise(header)
    return name in MICROSOFT_META or name.startswith(("points - ", "feedback - "))


def surveymonkey_columns(head: list[list[str]]) -> list[Column]:
    """Row 1 names each question once (blank over its further columns); row 2 says 'Response', names a matrix
    row, or names a choice (expanded export). Free-text columns ('Open-Ended Response', 'Other') are skipped."""
    first, second = head[0], head[1]
    columns, question = [], ""
    for i in range(surveymonkey_meta_end(first, second), len(first)):
        question = first[i].strip() or question
        sub = cell(second, i).strip()
        if is_identity(question) or is_identity(sub) or normalise(sub) in ("open-ended response",
                                                                            "other (please specify)"):
            continue
        keys = {normalise(question)}
        if normalise(sub) not in SURVEYMONKEY_SINGLE:
            keys |= {normalise(sub), normalise(sub.split(" - ", 1)[0])}
        label = question if normalise(sub) in SURVEYMONKEY_SINGLE else f"{question} [{sub}]"
        columns.append(Column(i, frozenset(keys), label))
    return columns


def surveymonkey_meta_end(first: list[str], second: list[str]) -> int:
    """The first question column: respondent metadata has a blank second header row (or, if the whole second
    row is blank, SurveyMonkey's own column names)."""
    if any(cell.strip() for cell in second):
        return next((i for i, sub in enumerate(second) if sub.strip()), len(first))
    return next((i for i, name in enumerate(first) if normalise(name) not in SURVEYMONKEY_META
                 and not CUSTOM_DATA.match(normalise(name))), len(first))


def qualtrics_columns(head: list[list[str]]) -> list[Column]:
    """Rows: column names (Q1, Q2_3), question texts ('Question - Statement' for a matrix row), import ids
    (QID1, QID2_3). Metadata and embedded identity fields are skipped, and so is every _TEXT (free text) column."""
    names, texts, ids = head[0], head[1], head[2]
    columns = []
    for i, name in enumerate(names):
        qid = import_id(cell(ids, i)) or ""
        if is_qualtrics_meta(name, qid) or qid.upper().endswith("_TEXT") or name.upper().endswith("_TEXT"):
            continue
        text = QUALTRICS_SELECTED_CHOICE.sub("", cell(texts, i).strip())
        keys = {normalise(name), normalise(qid), normalise(text)}
        if " - " in text:
            keys.add(normalise(text.rsplit(" - ", 1)[1]))
        columns.append(Column(i, frozenset(keys - {""}), text or name))
    return columns


def is_qualtrics_meta(name: str, qid: str) -> bool:
    key = normalise(qid or name)
    return key in QUALTRICS_META or key.startswith("q_") or is_identity(name) or is_identity(qid)


COLUMN_READERS: dict[SurveyTool, Callable[[list[list[str]]], list[Column]]] = {
    SurveyTool.google: google_columns,
    SurveyTool.microsoft: microsoft_columns,
    SurveyTool.surveymonkey: surveymonkey_columns,
    SurveyTool.qualtrics: qualtrics_columns,
}


def bind_questions(surveys: SurveysFile, columns: list[Column]) -> list[Binding]:
    """Each question of surveys.yaml with the columns that answer to its text or id (a column serves one)."""
    bindings, taken = [], set[int]()
    for question in surveys.questions:
        wanted = {normalise(name) for name in (question.text, question.id) if name}
        hits = tuple(c.index for c in columns if c.keys & wanted and c.index not in taken)
        if hits:
            bindings.append(Binding(question, surveys.scale_of(question), hits))
            taken.update(hits)
    return bindings


def completed_column(layout: Layout, head: list[list[str]]) -> int:
    names = [normalise(name) for name in head[0]]
    return names.index(layout.completed_header) if layout.completed_header in names else layout.completed_column


def read_responses(layout: Layout, head: list[list[str]], body: list[list[str]], bindings: list[Binding],
                   unmapped: list[str]) -> Responses:
    completed = completed_column(layout, head)
    status = status_column(layout, head)
    respondents, stamps, problems = [], [], list[Problem]()
    for offset, record in enumerate(body):
        row = layout.header_rows + offset + 1  # a record, not a physical line: comments may span lines
        if not any(text.strip() for text in record) or is_not_a_response(record, status):
            continue
        stamps.append((row, cell(record, completed)))
        respondents.append(read_respondent(record, row, bindings, problems))
    dates, date_problems = read_dates(stamps, completed)
    problems += date_problems
    if not respondents:
        problems.append(Problem(layout.header_rows + 1, None, None, "the export has no responses"))
    if problems:
        raise SurveyRejected(sorted(problems, key=lambda problem: problem.row))
    return Responses(layout.stored_name, min(dates), max(dates), respondents, unmapped)


def status_column(layout: Layout, head: list[list[str]]) -> int | None:
    if layout.tool is not SurveyTool.qualtrics:
        return None
    names = [normalise(name) for name in head[0]]
    return names.index("status") if "status" in names else None


def is_not_a_response(record: list[str], status: int | None) -> bool:
    return status is not None and normalise(cell(record, status)) in QUALTRICS_NOT_RESPONSES


def read_respondent(record: list[str], row: int, bindings: list[Binding], problems: list[Problem]) -> Respondent:
    answers: dict[str, list[float]] = {}
    group = None
    for binding in bindings:
        text, column = answer_cell(record, row, binding, problems)
        if binding.question.dimension == "group":
            group = re.sub(r"\s+", " ", text).strip() or None
            continue
        try:
            value = parse_answer(text, binding.scale, binding.question.reverse)
        except AnswerError as exc:
            problems.append(Problem(row, column_letter(column), exc.shown, exc.message))
            continue
        if value is not None:
            answers.setdefault(binding.question.dimension, []).append(value)
    return Respondent(answers, group)


def answer_cell(record: list[str], row: int, binding: Binding, problems: list[Problem]) -> tuple[str, int]:
    """The answer text and its column; an expanded export has one column per choice, at most one filled."""
    filled = [index for index in binding.columns if cell(record, index).strip()]
    if len(filled) > 1:
        problems.append(Problem(row, column_letter(filled[1]), None, "more than one answer to one question"))
    index = filled[0] if filled else binding.columns[0]
    return cell(record, index), index
