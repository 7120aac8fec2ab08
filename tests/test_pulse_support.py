"""Builders the pulse tests share: practices with a pulse schedule, and Google Forms exports of chosen answers.
(No tests here.)"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from pathlib import Path

from sqlalchemy import select

from config import BUNDLED_DIR, Config, Practice, Vendor, load_config
from config.schema import PulseSchedule
from storage.db import engine_for
from storage.models import Base

COMMENT_QUESTION = "Anything else you want leadership to know?"
GO_LIVE = dt.date(2026, 3, 1)


def pine_clinic(staff_count: int = 10, cadence_days: int | None = 30,
                pulse_start: dt.date | None = None) -> Practice:
    """A practice with one vendor live since 2026-03-01 (learning period to 2026-04-29) and a monthly pulse
    (counted from `pulse_start`, else from the first evaluation that sees it)."""
    vendor = Vendor(id="acme-billing", name="Acme RCM", service="billing", go_live=GO_LIVE)
    return Practice(id="pine-clinic", name="Pine Clinic", staff_count=staff_count, vendors=[vendor],
                    pulse=PulseSchedule(cadence_days=cadence_days, start=pulse_start))


def config_with(*practices: Practice) -> Config:
    return dataclasses.replace(load_config(BUNDLED_DIR), practices=list(practices))


def person(day: dt.date, **answers: object) -> dict[str, object]:
    """One respondent: answers by dimension (pulse_workload=4, group='Clinical', ...)."""
    return {"day": day, **answers}


def staff(count: int, day: dt.date, **answers: object) -> list[dict[str, object]]:
    return [person(day, **answers) for _ in range(count)]


def google_export(config: Config, people: list[dict[str, object]]) -> bytes:
    """The CSV Google Forms downloads for these respondents: every field quoted, CRLF, Timestamp first."""
    questions = [q for q in config.surveys.questions if q.text]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(["Timestamp", "Email Address", *(q.text for q in questions), COMMENT_QUESTION])
    for number, answers in enumerate(people):
        day = answers["day"]
        assert isinstance(day, dt.date)
        writer.writerow([f"{day:%Y/%m/%d} {8 + number % 9}:{number % 60:02d}:07 AM CDT",
                         answers.get("email", f"person{number}@pine.example"),
                         *(str(answers.get(q.dimension, "")) for q in questions),
                         answers.get("comment", "")])
    return buffer.getvalue().encode("utf-8")


def write_export(directory: Path, data: bytes, name: str) -> Path:
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
