"""Monday 07:00 in each practice's own time zone, across daylight-saving changes: first as pure tables, then
through the beat's due list with the clock frozen (time_machine) on a real database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import time_machine

from config.schema import DigestSchedule
from digest.schedule import due_week, reporting_window, scheduled_at
from digest.send import due_digests
from storage.db import session_scope
from storage.models import DigestRun
from tests.test_digest_seed import write_config

MONDAY_7 = DigestSchedule()


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("timezone", "instant", "week"),
    [
        # New York leaves daylight time on Sunday 2026-11-01: 07:00 is 11:00 UTC before, 12:00 UTC after.
        ("America/New_York", "2026-10-26 10:59", None),
        ("America/New_York", "2026-10-26 11:00", "2026-W44"),
        ("America/New_York", "2026-11-02 11:00", None),  # a fixed UTC offset would send an hour early here
        ("America/New_York", "2026-11-02 11:59", None),
        ("America/New_York", "2026-11-02 12:00", "2026-W45"),
        # London enters summer time on Sunday 2026-03-29: 07:00 is 07:00 UTC before, 06:00 UTC after.
        ("Europe/London", "2026-03-23 06:59", None),
        ("Europe/London", "2026-03-23 07:00", "2026-W13"),
        ("Europe/London", "2026-03-30 05:59", None),
        ("Europe/London", "2026-03-30 06:00", "2026-W14"),
        # Auckland's Monday 07:00 (NZDT, UTC+13) is Sunday 18:00 UTC: its week starts while Los Angeles is
        # still in the week before.
        ("Pacific/Auckland", "2026-11-22 17:59", None),
        ("Pacific/Auckland", "2026-11-22 18:00", "2026-W48"),
        ("America/Los_Angeles", "2026-11-22 18:00", "2026-W47"),
        ("America/Los_Angeles", "2026-11-23 14:59", None),
        ("America/Los_Angeles", "2026-11-23 15:00", "2026-W48"),
        # Later in the week a digest not yet sent is still due (a worker down on Monday catches up).
        ("America/Los_Angeles", "2026-11-25 09:00", "2026-W48"),
    ],
)
def test_a_digest_is_due_from_monday_0700_in_the_practices_own_time_zone(
    timezone: str, instant: str, week: str | None
) -> None:
    assert due_week(MONDAY_7, timezone, utc(instant)) == week


@pytest.mark.parametrize(
    ("schedule", "timezone", "week", "expected"),
    [
        (DigestSchedule(weekday="friday", time="16:30"), "Asia/Kolkata", "2026-W48", "2026-11-27 11:00"),
        (DigestSchedule(time="07:30"), "America/Chicago", "2026-W48", "2026-11-23 13:30"),
        # 02:30 does not exist on 2026-03-08 in New York (clocks jump from 02:00 to 03:00): it falls after the
        # gap, at 03:30 EDT, late by the hour but not skipped.
        (DigestSchedule(weekday="sunday", time="02:30"), "America/New_York", "2026-W10", "2026-03-08 07:30"),
        # 01:30 happens twice on 2026-11-01 in New York: the first one (EDT) counts.
        (DigestSchedule(weekday="sunday", time="01:30"), "America/New_York", "2026-W44", "2026-11-01 05:30"),
    ],
)
def test_the_send_time_is_configurable_per_practice(
    schedule: DigestSchedule, timezone: str, week: str, expected: str
) -> None:
    assert scheduled_at(schedule, timezone, week) == utc(expected)


def test_the_week_reported_runs_from_the_previous_digest_across_the_clock_change() -> None:
    since, as_of = reporting_window(MONDAY_7, "America/New_York", "2026-W45", utc("2026-11-02 12:05"))

    assert since == utc("2026-10-26 11:00")  # last Monday 07:00 EDT
    assert as_of == utc("2026-11-02 12:05")
    assert reporting_window(MONDAY_7, "America/New_York", "2026-W40", utc("2026-11-02 12:05"))[1] == utc(
        "2026-09-28 11:00")  # a past week rebuilt today is dated as it was due: its own send time, in its week


ZONES = {
    "auckland": "Pacific/Auckland",
    "los-angeles": "America/Los_Angeles",
    "new-york": "America/New_York",
    "london": "Europe/London",
}


@pytest.fixture
def zones_config(tmp_path: Path, vw_env: dict[str, str]) -> Path:
    practices: list[dict[str, object]] = [
        {"id": key, "name": key.title(), "timezone": zone, "region": "world", "digest_to": [f"owner@{key}.example"]}
        for key, zone in ZONES.items()
    ]
    practices.append({"id": "no-recipients", "name": "Nobody", "timezone": "Pacific/Auckland"})
    regions = {"world": {"digest_to": ["lead@world.example"], "timezone": "Europe/London"}}
    write_config(tmp_path / "config", practices, regions)
    return tmp_path / "config"


def due_at(config_dir: Path, instant: str) -> set[tuple[str, str]]:
    """What the beat finds due with the clock frozen at `instant` (no `now` passed: the code reads the clock)."""
    from config import load_config

    with time_machine.travel(utc(instant), tick=False), session_scope() as session:
        return {(item.run_key, item.week) for item in due_digests(session, load_config(config_dir))}


def mark_sent(keys: list[str], week: str) -> None:
    with session_scope() as session:
        for key in keys:
            session.add(DigestRun(practice_id=key, week=week, status="sent", claimed_at=utc("2026-11-16 00:00")))


def test_at_one_utc_instant_each_practice_is_due_by_its_own_clock(zones_config: Path) -> None:
    mark_sent([*ZONES, "region:world"], "2026-W47")

    assert due_at(zones_config, "2026-11-22 17:59") == set()
    assert due_at(zones_config, "2026-11-22 18:00") == {("auckland", "2026-W48")}
    assert due_at(zones_config, "2026-11-23 07:00") == {("auckland", "2026-W48"), ("london", "2026-W48"),
                                                        ("region:world", "2026-W48")}
    assert due_at(zones_config, "2026-11-23 12:00") == {("auckland", "2026-W48"), ("london", "2026-W48"),
                                                        ("region:world", "2026-W48"), ("new-york", "2026-W48")}
    assert ("los-angeles", "2026-W48") in due_at(zones_config, "2026-11-23 15:00")


def test_across_the_november_clock_change_new_york_is_due_at_0700_est(zones_config: Path) -> None:
    mark_sent(list(ZONES), "2026-W44")

    assert ("new-york", "2026-W45") not in due_at(zones_config, "2026-11-02 11:30")
    assert ("new-york", "2026-W45") in due_at(zones_config, "2026-11-02 12:00")


def test_across_the_march_clock_change_london_is_due_at_0700_bst(zones_config: Path) -> None:
    assert ("london", "2026-W14") not in due_at(zones_config, "2026-03-30 05:59")
    assert ("london", "2026-W14") in due_at(zones_config, "2026-03-30 06:00")


def test_a_sent_week_is_not_due_again_and_a_stale_claim_is(zones_config: Path) -> None:
    mark_sent(["london"], "2026-W48")
    with session_scope() as session:
        session.add(DigestRun(practice_id="auckland", week="2026-W48", status="claimed",
                              claimed_at=utc("2026-11-23 07:00")))

    assert not {"london", "auckland"} & {key for key, _ in due_at(zones_config, "2026-11-23 07:29")}
    assert ("auckland", "2026-W48") in due_at(zones_config, "2026-11-23 07:31")  # its worker died mid-send
