"""`vendorwatch history` as tables: one line per entry, nested facts (problems, attempts) indented under it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.table import Table

from storage.observations import Problem


def when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else ""


def text(value: Any) -> str:
    return "" if value is None else str(value)


def problem_line(problem: Any) -> str:
    """A stored problem as the ingest command printed it: row, column, the cell, the reason."""
    if not isinstance(problem, dict):
        return str(problem)
    return str(Problem(row=problem.get("row", 0), column=problem.get("column"), value=problem.get("value"),
                       message=str(problem.get("message", ""))))


def feeds_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("received", "status", "file", "practice", "vendor", "rows / problems")
    for row in rows:
        detail = f"{row['rows']} rows" if row["status"] == "accepted" else "\n".join(
            problem_line(problem) for problem in row["problems"])
        table.add_row(when(row["at"]), row["status"], row["file"], text(row["practice"]), text(row["vendor"]),
                      detail)
    return table


def revisions_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("revised", "practice", "vendor", "KPI", "segment", "period", "old", "new", "old file", "new file")
    for row in rows:
        table.add_row(when(row["at"]), row["practice"], row["vendor"], row["kpi"], row["segment"],
                      f"{row['period_start']}..{row['period_end']}", text(row["old_value"]), text(row["new_value"]),
                      row["old_file"], row["new_file"])
    return table


def deliveries_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("id", "created", "kind", "practice", "status", "title", "attempts (target: outcome, error)")
    for row in rows:
        attempts = "\n".join(f"{when(a['at'])} {a['target']}: {a['outcome']}" + (f" ({a['error']})" if a["error"]
                             else "") for a in row["attempts"]) or "none yet"
        table.add_row(str(row["id"]), when(row["at"]), row["kind"], text(row["practice"]), row["status"],
                      row["title"], attempts)
    return table


def reruns_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("requested", "by", "task", "arguments", "task id")
    for row in rows:
        table.add_row(when(row["at"]), row["requested_by"], row["task"], json.dumps(row["arguments"]),
                      text(row["task_id"]))
    return table


def pulls_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("attempted", "practice", "vendor", "status", "HTTP", "file", "error")
    for row in rows:
        table.add_row(when(row["at"]), row["practice"], row["vendor"], row["status"], text(row["http_status"]),
                      text(row["file"]), text(row["error"]))
    return table


def digests_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("claimed", "practice", "week", "status", "sent", "subject / error")
    for row in rows:
        table.add_row(when(row["at"]), row["practice"], row["week"], row["status"], when(row["sent_at"]),
                      text(row["subject"] or row["error"]))
    return table


TABLES = {"feeds": feeds_table, "revisions": revisions_table, "deliveries": deliveries_table,
          "reruns": reruns_table, "pulls": pulls_table, "digests": digests_table}


def history_table(kind: str, rows: list[dict[str, Any]]) -> Table:
    return TABLES[kind](rows)
