"""One cell of a survey export: an answer on a scale, or a completion time. Pure functions.

An answer's text is repeated in an error only when it is a number: anything else might be a person's words
typed into the wrong column, and error lists end up in logs, quarantine files and operator messages.
"""

from __future__ import annotations

import datetime as dt
import re

from config.schema import SurveyScale
from storage.observations import Problem

LEADING_NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?")
YEAR_FIRST = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
YEAR_LAST = re.compile(r"^\s*(\d{1,2})[-/.](\d{1,2})[-/.](\d{2,4})(?!\d)")


class AnswerError(Exception):
    def __init__(self, message: str, shown: str | None = None):
        super().__init__(message)
        self.message = message
        self.shown = shown  # the part of the answer safe to repeat (a number), if any


def normalise_label(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def parse_answer(text: str, scale: SurveyScale, reverse: bool = False) -> float | None:
    """The answer's value on its scale (flipped when reverse-scored); None for a skipped question."""
    text = text.strip()
    if not text:
        return None
    low, high = scale.points
    labels = {normalise_label(label): value for label, value in scale.labels.items()}
    value = labels.get(normalise_label(text))
    if value is None:
        # "4", "4 - Agree", "10 (Extremely likely)": the number leads.
        match = LEADING_NUMBER.match(text)
        if match is None:
            raise AnswerError(f"not a number on the {low}-{high} scale nor one of its labels (answer not shown)")
        value = float(match.group(0))
        if not low <= value <= high:
            raise AnswerError(f"outside {low}-{high}", match.group(0))
    return (low + high) - value if reverse else value


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: how a spreadsheet names the column."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def read_dates(cells: list[tuple[int, str]], column: int) -> tuple[list[dt.date], list[Problem]]:
    """The dates of (row, text) completion times, in order. Month and day are told apart for the whole file at
    once: a first number above 12 anywhere means day-first (26/10/2026), else month-first as the US tools write."""
    day_first = any((match := YEAR_LAST.match(text)) and int(match.group(1)) > 12 for _, text in cells)
    dates, problems = [], []
    for row, text in cells:
        day = parse_date(text, day_first)
        if day is None:
            # The text is not repeated: with a misnamed layout this column could hold anything.
            problems.append(Problem(row, column_letter(column), None,
                                    "unreadable completion time (expected e.g. 2026-10-30 or 10/30/2026 9:14)"))
        else:
            dates.append(day)
    return dates, problems


def parse_date(text: str, day_first: bool) -> dt.date | None:
    if match := YEAR_FIRST.match(text):
        year, month, day = (int(part) for part in match.groups())
    elif match := YEAR_LAST.match(text):
        first, second, year = (int(part) for part in match.groups())
        month, day = (second, first) if day_first else (first, second)
        year += 2000 if year < 100 else 0
    else:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None
