"""Pulse scores leadership acts on: the SPEC's default pulse rules through the same alert lifecycle as vendor KPIs,
baselines and trends across pulses, the check-in schedule, its reminders and the 'pulse overdue' alert."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alerts.checkins import send_checkin_reminders
from alerts.evaluate import evaluate_practices
from alerts.messages import render_alert, render_operator
from alerts.rules import Point, judge_baseline, judge_threshold, overdue_verdict, thresholds_for
from config import BUNDLED_DIR, Config, load_config
from digest.pulse_report import pulse_report
from intake.ingest import ingest_path
from pulse.schedule import reminders_due
from pulse.scores import readiness_verdict
from pulse.staff import STAFF_VENDOR_ID, staff_vendor
from storage.db import session_scope
from storage.models import Alert, Notification, Observation, ObservationRevision, PulseReminder, PulseSurvey
from storage.uploads import IngestResult
from tests.test_pulse_support import GO_LIVE, config_with, google_export, person, pine_clinic, staff, write_export

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
READY = ("readiness_emotional", "readiness_leadership", "readiness_decisions", "readiness_process",
         "readiness_adjustment", "readiness_trust")


def readiness(*answers: int) -> dict[str, object]:
    return dict(zip(READY, answers, strict=True))


@pytest.mark.parametrize(("total", "verdict"), [(30, "proceed"), (24, "proceed"), (23.9, "prepare"), (23, "prepare"),
                                                (18, "prepare"), (17.9, "pause"), (17, "pause"), (6, "pause")])
def test_readiness_verdict_follows_the_seeds_scoring_guide(total: float, verdict: str) -> None:
    assert readiness_verdict(total) == verdict


@pytest.mark.parametrize(
    ("kpi", "baseline", "value", "severity"),
    [
        ("pulse_workload", 4.0, 3.51, None),
        ("pulse_workload", 4.0, 3.5, "warning"),  # down 0.5
        ("pulse_workload", 4.0, 3.01, "warning"),
        ("pulse_workload", 4.0, 3.0, "critical"),  # down 1.0
        ("pulse_trust_leadership", 3.67, 3.17, "warning"),
        ("pulse_burnout_pct", 20.0, 29.9, None),
        ("pulse_burnout_pct", 20.0, 30.0, "warning"),  # up 10 points
        ("pulse_burnout_pct", 20.0, 40.0, "critical"),  # up 20 points
        ("enps", 30.0, 11.0, None),
        ("enps", 30.0, 10.0, "warning"),  # down 20 points
        ("enps", 30.0, -70.0, "warning"),  # eNPS has no critical rule
    ],
)  # fmt: skip
def test_the_default_baseline_rules_fire_at_the_spec_figures(
    kpi: str, baseline: float, value: float, severity: str | None
) -> None:
    config = load_config(BUNDLED_DIR)
    practice = pine_clinic()
    catalog_kpi = config.kpi(kpi)
    assert catalog_kpi is not None
    vendor = staff_vendor(practice, STAFF_VENDOR_ID)
    assert vendor is not None and vendor.go_live == GO_LIVE
    thresholds = thresholds_for(catalog_kpi, practice, vendor, kpi, config.catalog.defaults)
    day = dt.date(2026, 6, 1)

    verdict = judge_baseline([Point(day.isoformat(), day, day, value)], baseline, thresholds)

    assert verdict is not None and verdict.severity == severity


@pytest.mark.parametrize(("kpi", "value", "severity"), [("readiness_score", 18.0, None), ("readiness_score", 17.9,
                         "critical"), ("pulse_participation_rate", 60.0, None), ("pulse_participation_rate", 59.9,
                         "warning")])  # fmt: skip
def test_readiness_below_18_is_critical_and_participation_below_60_a_warning(
    kpi: str, value: float, severity: str | None
) -> None:
    config = load_config(BUNDLED_DIR)
    catalog_kpi = config.kpi(kpi)
    assert catalog_kpi is not None
    vendor = staff_vendor(pine_clinic(), STAFF_VENDOR_ID)
    assert vendor is not None
    day = dt.date(2026, 6, 1)

    verdict = judge_threshold([Point(day.isoformat(), day, day, value)],
                              thresholds_for(catalog_kpi, pine_clinic(), vendor, kpi))

    assert verdict is not None and verdict.severity == severity


def ingest(config: Config, tmp_path: Path, url: str, people: list[dict[str, object]], name: str) -> IngestResult:
    result = ingest_path(write_export(tmp_path, google_export(config, people), name), config,
                         practice="pine-clinic", database_url=url, today=dt.date(2026, 12, 31))
    assert result.status == "accepted", result.problems
    return result


def baseline_pulse(day: dt.date) -> list[dict[str, object]]:
    """8 of 10 staff before go-live: workload 4, no burnout, eNPS +100, readiness 30."""
    return staff(8, day, pulse_workload=4, pulse_burnout=1, enps=9, **readiness(5, 5, 5, 5, 5, 5))


def strained_pulse(day: dt.date) -> list[dict[str, object]]:
    """5 of 10 staff: workload down 1.0, burnout 20% (up 20), eNPS 80 (down 20), readiness 17."""
    worried = readiness(3, 3, 3, 3, 3, 2)
    return [*staff(4, day, pulse_workload=3, pulse_burnout=1, enps=9, **worried),
            person(day, pulse_workload=3, pulse_burnout=3, enps=7, **worried)]


def staff_alerts(url: str) -> dict[tuple[str, str], str]:
    with session_scope(url) as session:
        rows = session.execute(select(Alert.rule, Alert.kpi, Alert.severity)
                               .where(Alert.vendor_id == STAFF_VENDOR_ID, Alert.state == "firing"))
        return {(rule, kpi): severity for rule, kpi, severity in rows}


def test_pulse_kpis_fire_through_the_vendor_alert_lifecycle(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic())
    ingest(config, tmp_path, postgres_url, baseline_pulse(dt.date(2026, 2, 10)), "february.csv")
    ingest(config, tmp_path, postgres_url, strained_pulse(dt.date(2026, 6, 1)), "june.csv")

    [result] = evaluate_practices(config, as_of=dt.date(2026, 6, 2), now=NOW, database_url=postgres_url)

    assert staff_alerts(postgres_url) == {
        ("baseline", "pulse_workload"): "critical",
        ("baseline", "pulse_burnout_pct"): "critical",
        ("baseline", "enps"): "warning",
        ("threshold", "readiness_score"): "critical",
        ("threshold", "pulse_participation_rate"): "warning",
    }
    staff_changes = [c for c in result.changes if c.vendor == STAFF_VENDOR_ID]
    assert {c.vendor_name for c in staff_changes} == {"Staff pulse"}
    assert not any(c.learning for c in staff_changes)
    with session_scope(postgres_url) as session:
        notification = session.get(Notification, result.notification_id)
        assert notification is not None
        text = render_alert(notification.payload, notification.title, "text").body
    assert "Critical: Readiness score, Staff pulse" in text
    assert "17 for Jun 1, 2026, below the 18 threshold" in text
    assert "Talk with the team this week" in text


@pytest.mark.parametrize(("cadence_days", "judged"), [(90, True), (None, False)])
def test_a_quarterly_pulse_is_judged_between_check_ins_not_called_stale_after_two_months(
    postgres_url: str, tmp_path: Path, cadence_days: int | None, judged: bool
) -> None:
    """Eleven weeks after a quarterly pulse it is still the current one. Without a cadence, a pulse is as stale
    as a monthly feed two periods late, and stale data opens no alert."""
    config = config_with(pine_clinic(cadence_days=cadence_days))
    ingest(config, tmp_path, postgres_url, baseline_pulse(dt.date(2026, 2, 10)), "february.csv")
    ingest(config, tmp_path, postgres_url, strained_pulse(dt.date(2026, 6, 1)), "june.csv")

    evaluate_practices(config, as_of=dt.date(2026, 8, 20), now=NOW, database_url=postgres_url)

    readiness_alert = staff_alerts(postgres_url).get(("threshold", "readiness_score"))
    assert readiness_alert == ("critical" if judged else None)


def test_a_pulse_never_reads_as_a_late_feed(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic(cadence_days=None))
    ingest(config, tmp_path, postgres_url, baseline_pulse(dt.date(2026, 2, 10)), "february.csv")

    evaluate_practices(config, as_of=dt.date(2027, 6, 1), now=NOW, database_url=postgres_url)

    with session_scope(postgres_url) as session:
        late = session.execute(select(Alert.vendor_id).where(Alert.rule == "freshness")).scalars().all()
    assert late == ["acme-billing"]  # the vendor that never sent a feed; never the staff


def test_in_the_learning_period_baseline_rules_are_quiet_and_criticals_are_marked(
    postgres_url: str, tmp_path: Path
) -> None:
    config = config_with(pine_clinic())
    ingest(config, tmp_path, postgres_url, baseline_pulse(dt.date(2026, 2, 10)), "february.csv")
    ingest(config, tmp_path, postgres_url, strained_pulse(dt.date(2026, 3, 20)), "march.csv")

    [result] = evaluate_practices(config, as_of=dt.date(2026, 3, 21), now=NOW, database_url=postgres_url)

    assert staff_alerts(postgres_url) == {
        ("threshold", "readiness_score"): "critical",
        ("threshold", "pulse_participation_rate"): "warning",
    }
    staff_changes = [c for c in result.changes if c.vendor == STAFF_VENDOR_ID]
    assert staff_changes and all(c.learning for c in staff_changes)


def test_a_pulse_before_the_first_go_live_is_baseline_and_shows_its_verdict(postgres_url: str, tmp_path: Path) -> None:
    """Like a vendor's pre-go-live periods, it is the practice's own starting point, not judged as 'the vendor's';
    leadership sees its readiness verdict in the report (the digest's staff pulse)."""
    config = config_with(pine_clinic())
    ingest(config, tmp_path, postgres_url, strained_pulse(dt.date(2026, 2, 10)), "february.csv")

    evaluate_practices(config, as_of=dt.date(2026, 2, 11), now=NOW, database_url=postgres_url)

    assert staff_alerts(postgres_url) == {}
    with session_scope(postgres_url) as session:
        report = pulse_report(session, config, config.practices[0], dt.date(2026, 2, 11))
    assert report is not None and report.readiness_verdict == "pause"


def test_the_report_gives_each_score_its_baseline_trend_and_verdict(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic(pulse_start=GO_LIVE))
    for day, workload in ((dt.date(2026, 1, 10), 4), (dt.date(2026, 2, 10), 5), (dt.date(2026, 4, 10), 3),
                          (dt.date(2026, 6, 10), 4)):
        ingest(config, tmp_path, postgres_url, staff(6, day, pulse_workload=workload, **readiness(4, 4, 4, 3, 3, 3)),
               f"{day}.csv")

    with session_scope(postgres_url) as session:
        report = pulse_report(session, config, config.practices[0], dt.date(2026, 6, 30))

    assert report is not None and report.shown
    workload_score = next(score for score in report.scores if score.key == "pulse_workload")
    assert (workload_score.value, workload_score.baseline, workload_score.trend) == (4.0, 4.5, [4.0, 5.0, 3.0, 4.0])
    assert report.readiness_verdict == "prepare"  # 21
    assert [(c.label, c.value) for c in report.readiness_categories][:2] == [("Emotional readiness", 4.0),
                                                                            ("Leadership alignment", 4.0)]
    assert report.next_checkin_due == dt.date(2026, 7, 10)


def test_a_later_export_of_the_same_survey_revises_it(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic())
    first_days = staff(5, dt.date(2026, 10, 26), pulse_workload=4)
    early = first_days + staff(1, dt.date(2026, 10, 28), pulse_workload=4)
    final = early + staff(5, dt.date(2026, 10, 30), pulse_workload=1)  # 5 more: fewer are held back
    ingest(config, tmp_path, postgres_url, early, "peek.csv")

    ingest(config, tmp_path, postgres_url, final, "final.csv")
    again = ingest_path(tmp_path / "final.csv", config, practice="pine-clinic", database_url=postgres_url)
    older = ingest_path(write_export(tmp_path, google_export(config, first_days), "older.csv"), config,
                        practice="pine-clinic", database_url=postgres_url)

    assert again.status == "duplicate"
    assert older.status == "rejected" and "is already stored; this one is older" in str(older.problems[0])
    with session_scope(postgres_url) as session:
        survey = session.scalars(select(PulseSurvey)).one()
        assert (survey.responses, str(survey.opened_on), str(survey.closed_on)) == (11, "2026-10-26", "2026-10-30")
        workload = session.scalars(select(Observation).where(Observation.kpi == "pulse_workload")).one()
        assert (workload.period, workload.value) == ("2026-10-30", 2.64)
        revision = session.scalars(select(ObservationRevision).where(
            ObservationRevision.series_id == workload.series_id,
            ObservationRevision.period_start == workload.period_start)).one()
        assert (revision.old_value, revision.new_value) == (4.0, 2.64)


@pytest.mark.parametrize(
    ("closings", "as_of", "reminders", "severity", "days_late"),
    [
        ([], "2026-03-07", [], None, 0),
        ([], "2026-03-08", ["go-live:acme-billing:2026-03-01"], None, 0),  # a week after go-live
        ([], "2026-03-22", ["go-live:acme-billing:2026-03-01"], None, 0),  # due 03-15, 7 days' grace
        ([], "2026-03-23", [], "warning", 8),
        ([], "2026-04-22", [], "critical", 38),  # a further cadence missed too
        (["2026-02-20"], "2026-03-23", ["cadence:2026-03-22"], "warning", 8),  # before go-live: no check-in
        (["2026-03-10"], "2026-03-23", [], None, 0),
        (["2026-03-10"], "2026-04-01", [], None, 0),
        (["2026-03-10"], "2026-04-02", ["cadence:2026-04-09"], None, 0),  # 30 days on, a week's notice
        (["2026-03-10"], "2026-04-17", [], "warning", 8),
    ],
)  # fmt: skip
def test_check_ins_come_two_weeks_after_go_live_then_on_the_cadence(
    closings: list[str], as_of: str, reminders: list[str], severity: str | None, days_late: int
) -> None:
    practice, day = pine_clinic(cadence_days=30), dt.date.fromisoformat(as_of)
    closed = [dt.date.fromisoformat(text) for text in closings]

    assert [checkin.key for checkin in reminders_due(practice, closed, day)] == reminders
    verdict = overdue_verdict(practice, closed, day)
    assert (verdict.severity, verdict.value) == (severity, days_late)


def test_without_a_cadence_there_is_no_schedule() -> None:
    practice = pine_clinic(cadence_days=None)

    assert reminders_due(practice, [], dt.date(2026, 3, 8)) == []
    assert overdue_verdict(practice, [], dt.date(2027, 1, 1)).severity is None


def test_a_pulse_overdue_alert_fires_escalates_and_resolves(postgres_url: str, tmp_path: Path) -> None:
    config = config_with(pine_clinic(cadence_days=30, pulse_start=GO_LIVE))  # the schedule counts since go-live
    ingest(config, tmp_path, postgres_url, staff(6, dt.date(2026, 6, 1), pulse_workload=4), "june.csv")

    def overdue(as_of: dt.date) -> tuple[str, str, float, str]:
        evaluate_practices(config, as_of=as_of, now=NOW + dt.timedelta(days=(as_of - dt.date(2026, 7, 1)).days),
                           database_url=postgres_url)
        with session_scope(postgres_url) as session:
            alert = session.scalars(select(Alert).where(Alert.rule == "pulse_overdue")).one()
            return alert.state, alert.severity, alert.value, alert.period

    assert overdue(dt.date(2026, 7, 9)) == ("firing", "warning", 8.0, "2026-07-01")
    assert overdue(dt.date(2026, 8, 8)) == ("firing", "critical", 38.0, "2026-07-01")
    ingest(config, tmp_path, postgres_url, staff(6, dt.date(2026, 8, 9), pulse_workload=4), "august.csv")
    assert overdue(dt.date(2026, 8, 10))[0] == "resolved"
    with session_scope(postgres_url) as session:
        told = [n for n in session.scalars(select(Notification).order_by(Notification.id))
                if any(c["rule"] == "pulse_overdue" for c in n.payload["changes"])]
        text = render_alert(told[0].payload, told[0].title, "text").body
    assert "Now critical (was warning): check-in overdue, Staff pulse" in text  # the warning went to the digest
    assert "The staff check-in due on Jul 1, 2026 is 38 days overdue: no staff pulse survey has closed since" in text
    assert "Send the staff pulse survey this week" in text
    assert "Feed late (critical): Acme RCM" in text and "Staff pulse has not sent" not in text


def test_a_check_in_reminder_is_written_once(postgres_url: str) -> None:
    config = config_with(pine_clinic(cadence_days=30))

    first = send_checkin_reminders(config, as_of=dt.date(2026, 3, 8), database_url=postgres_url)
    again = send_checkin_reminders(config, as_of=dt.date(2026, 3, 8), database_url=postgres_url)
    later = send_checkin_reminders(config, as_of=dt.date(2026, 3, 12), database_url=postgres_url)

    assert len(first) == 1 and again == [] and later == []
    with session_scope(postgres_url) as session:
        notification = session.get(Notification, first[0])
        assert notification is not None and notification.kind == "operator"
        assert notification.title == "Staff check-in due: Pine Clinic, two weeks after Acme RCM went live"
        assert notification.payload["facts"]["due_on"] == "2026-03-15"
        assert "closes by 2026-03-15" in render_operator(notification.payload, notification.title, "text").body
        assert session.scalar(select(func.count()).select_from(PulseReminder)) == 1


def test_two_reminder_runs_at_once_write_one_reminder(postgres_url: str) -> None:
    config = config_with(pine_clinic(cadence_days=30))
    barrier, results = threading.Barrier(2), []

    def run() -> None:
        barrier.wait()
        results.append(send_checkin_reminders(config, as_of=dt.date(2026, 3, 9), database_url=postgres_url))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(len(ids) for ids in results) == [0, 1]
    with session_scope(postgres_url) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 1
