"""A pulse schedule counts from when it started (the first evaluation that sees it, or `pulse.start`), so adding
`pulse: {cadence_days: 30}` to a practice live for a year asks for a first pulse a cadence later instead of
firing a year-old check-in at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from alerts.checkins import send_checkin_reminders
from alerts.evaluate import evaluate_practices
from alerts.lifecycle import Change
from config import Config, Practice, Vendor
from config.schema import PulseSchedule
from digest.build import build_digest
from digest.render import render_digest
from storage.db import session_scope
from storage.models import Notification, PulseTracking
from tests.test_dates_and_wording import messages, words
from tests.test_pulse_support import config_with

GO_LIVE = dt.date(2025, 7, 1)  # a year before the schedule is added


def live_a_year(pulse: PulseSchedule) -> Config:
    vendor = Vendor(id="acme-billing", name="Acme RCM", service="billing", go_live=GO_LIVE)
    return config_with(Practice(id="pine-clinic", name="Pine Clinic", staff_count=10, vendors=[vendor],
                                pulse=pulse))


def overdue_on(config: Config, day: dt.date, url: str) -> list[Change]:
    [result] = evaluate_practices(config, as_of=day, now=dt.datetime.combine(day, dt.time(18), tzinfo=dt.UTC),
                                  database_url=url)
    return [change for change in result.changes if change.rule == "pulse_overdue"]


def test_a_schedule_added_a_year_after_go_live_asks_for_its_first_pulse_a_cadence_later(
    postgres_url: str, tmp_path: Path
) -> None:
    config = live_a_year(PulseSchedule(cadence_days=30))
    added = dt.date(2026, 7, 1)

    assert overdue_on(config, added, postgres_url) == []
    with session_scope(postgres_url) as session:
        assert session.scalars(select(PulseTracking.started_on)).one() == added
        rendered = render_digest(build_digest(session, config, config.practices[0], "2026-W27",
                                              dt.datetime(2026, 7, 1, 18, tzinfo=dt.UTC)))
    assert "staff pulse due" not in words(rendered.text) and "staff pulse due" not in words(rendered.html)

    reminded = send_checkin_reminders(config, as_of=dt.date(2026, 7, 24), database_url=postgres_url)
    with session_scope(postgres_url) as session:
        assert [session.get(Notification, n).title for n in reminded] == [  # type: ignore[union-attr]
            "Staff pulse due: Pine Clinic, by 2026-07-31"]

    assert overdue_on(config, dt.date(2026, 8, 7), postgres_url) == []  # due Jul 31, 7 days' grace
    [overdue] = overdue_on(config, dt.date(2026, 8, 8), postgres_url)
    assert (overdue.severity, overdue.value, overdue.period) == ("warning", 8, "2026-07-31")
    for family, body in messages(overdue, "Pine Clinic").items():
        assert "The staff check-in due on Jul 31, 2026 is 8 days overdue" in words(body), (family, body)


def test_an_explicit_pulse_start_counts_check_ins_from_that_day(postgres_url: str) -> None:
    config = live_a_year(PulseSchedule(cadence_days=30, start=dt.date(2026, 6, 1)))

    assert overdue_on(config, dt.date(2026, 7, 8), postgres_url) == []
    [overdue] = overdue_on(config, dt.date(2026, 7, 9), postgres_url)

    assert (overdue.severity, overdue.value, overdue.period) == ("warning", 8, "2026-07-01")
