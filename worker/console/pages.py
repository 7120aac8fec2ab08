"""What the console shows and does, as plain functions of the database and the configuration (the views in
worker/console/app.py only route to them). Each action returns the flash message and its category."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from alerts.decide import is_silenced
from alerts.lifecycle import active_silences
from alerts.operations import AlertOperationError, add_silence
from alerts.operations import acknowledge as acknowledge_alert
from config import Config
from storage.db import session_scope
from storage.history import Filters, deliveries, feeds, reruns
from storage.models import Alert, utcnow

RECENT = 20
SILENCES = {"1d": dt.timedelta(days=1), "3d": dt.timedelta(days=3), "1w": dt.timedelta(weeks=1),
            "2w": dt.timedelta(weeks=2)}


def overview(config: Config) -> dict[str, Any]:
    from feeds.status import feed_status

    now = utcnow()
    with session_scope() as session:
        silences = active_silences(session, now)
        open_alerts = [alert_view(alert, is_silenced(alert.practice_id, alert.vendor_id, alert.kpi, silences, now))
                       for alert in session.scalars(select(Alert).where(Alert.state != "resolved").order_by(
                           Alert.practice_id, Alert.vendor_id, Alert.kpi, Alert.rule))]
        status = feed_status(session, config, dt.date.today())
        recent = Filters(limit=RECENT)
        return {
            "practices": practices_view(config, status, silences, now),
            "alerts": open_alerts,
            "files": feeds(session, recent),
            "outbox": deliveries(session, recent),
            "reruns": reruns(session, Filters(limit=10)),
            "silence_choices": list(SILENCES),
            "now": now,
        }


def alert_view(alert: Alert, silenced: bool) -> dict[str, Any]:
    return {"id": alert.id, "rule": alert.rule, "practice": alert.practice_id, "vendor": alert.vendor_id,
            "kpi": alert.kpi, "segment": alert.segment, "state": alert.state, "severity": alert.severity,
            "value": alert.value, "threshold": alert.threshold, "period": alert.period,
            "started_at": alert.started_at, "acknowledged_by": alert.acknowledged_by,
            "can_acknowledge": alert.state == "firing" and alert.acknowledged_at is None, "silenced": silenced}


def practices_view(config: Config, status: list[dict[str, Any]], silences: Any, now: dt.datetime
                   ) -> list[dict[str, Any]]:
    by_vendor = {(row["practice"], row["vendor"]): row for row in status}
    return [{"id": practice.id, "name": practice.name,
             "vendors": [{"id": vendor.id, "name": vendor.name, "feed": by_vendor.get((practice.id, vendor.id)),
                          "silenced": is_silenced(practice.id, vendor.id, "feed", silences, now)}
                         for vendor in practice.vendors]}
            for practice in config.practices]


def acknowledge(alert_id: int, by: str) -> tuple[str, str]:
    try:
        with session_scope() as session:
            acknowledge_alert(session, alert_id, by)
    except AlertOperationError as exc:
        return str(exc), "error"
    return f"Alert {alert_id} acknowledged by {by}: no repeats until its severity changes.", "ok"


def silence(config: Config, form: Mapping[str, str], by: str) -> tuple[str, str]:
    """Silence one vendor of one practice (every KPI and its feed) for a chosen time, with a reason."""
    practice, vendor = config.practice(form.get("practice", "")), form.get("vendor", "")
    if practice is None or vendor not in {v.id for v in practice.vendors}:
        return "Unknown practice or vendor: nothing silenced.", "error"
    duration = SILENCES.get(form.get("duration", ""))
    if duration is None:
        return "Choose how long to silence for.", "error"
    try:
        with session_scope() as session:
            added = add_silence(session, practice=practice.id, vendor=vendor, kpi=None, ends_at=utcnow() + duration,
                                reason=form.get("reason", ""), by=by)
            until = added.ends_at
    except AlertOperationError as exc:
        return str(exc).replace("--reason", "A reason").replace("--until", "The end"), "error"
    return f"{vendor} silenced for {practice.name} until {until:%Y-%m-%d %H:%M} UTC by {by}.", "ok"


def rerun(config: Config, task: str, form: Mapping[str, str], by: str) -> tuple[str, str]:
    """Enqueue the task beat would send, recorded with who asked; evaluate and digest take a practice."""
    from digest.schedule import iso_week
    from worker.reruns import request_rerun

    arguments: dict[str, Any] = {}
    if task in ("alerts.evaluate", "digest.weekly"):
        practice = config.practice(form.get("practice", ""))
        if practice is None:
            return "Choose a practice.", "error"
        arguments["practice_id"] = practice.id
    if task == "alerts.evaluate":
        arguments["as_of"] = None
    if task == "digest.weekly":
        arguments.update(week=iso_week(dt.date.today()), resend=form.get("resend") == "yes")
    try:
        task_id = request_rerun(task, arguments, by)
    except Exception as exc:  # the broker down: say so on the page instead of a 500
        return f"Could not enqueue {task}: {type(exc).__name__}.", "error"
    return f"Enqueued {task} as {task_id}, recorded as requested by {by}.", "ok"
