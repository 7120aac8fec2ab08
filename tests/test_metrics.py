"""Prometheus metrics: state read from real PostgreSQL at scrape time equals what the tables hold; task durations
and delivery attempts counted in a real Celery worker's prefork children reach a scrape by another process
(multiprocess mode); the example alerting rules pass `promtool check rules` and `promtool test rules`."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from config import load_config
from config.settings import get_settings
from storage.db import session_scope
from storage.models import Notification, utcnow
from tests.conftest import TEST_CONFIG, stack_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import drop_in_inbox, recent_months
from tests.worker_process import running_worker, vendorwatch
from worker.cli import cli
from worker.metrics import exposition

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_state_metrics_are_what_the_database_holds(vw_env: dict[str, str], tmp_path: Path) -> None:
    month = recent_months(1)[0]
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,{month},9.7\n"
                    f"maple-clinic,claimright,days_in_ar,{month},30\n", encoding="utf-8")
    bad.write_text("practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,2026-10,lots\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest", str(good)]).exit_code == 0
    assert runner.invoke(cli, ["ingest", str(bad)]).exit_code == 3
    waited = dt.timedelta(minutes=20)
    with session_scope() as session:
        session.add(Notification(kind="alert", practice_id="maple-clinic", severity="warning", tags=[], title="t",
                                 payload={}, status="pending", created_at=utcnow() - waited))
    found = samples(exposition(get_settings(), lambda: load_config(TEST_CONFIG)).decode())

    assert value(found, "vendorwatch_database_up") == 1
    assert value(found, "vendorwatch_files_total", kind="feed", outcome="accepted") == 1
    assert value(found, "vendorwatch_files_total", kind="feed", outcome="rejected") == 1
    assert value(found, "vendorwatch_files_total", kind="remits", outcome="accepted") == 0
    assert value(found, "vendorwatch_rows_stored_total") == 2
    assert value(found, "vendorwatch_alerts", state="firing", severity="warning") == 1
    assert value(found, "vendorwatch_notifications_pending") == 1
    age = value(found, "vendorwatch_notifications_oldest_pending_age_seconds")
    assert age is not None and waited.total_seconds() <= age < waited.total_seconds() + 60
    assert value(found, "vendorwatch_feed_days_late", practice="maple-clinic", vendor="claimright") == 0
    scheduled = value(found, "vendorwatch_digest_scheduled_timestamp_seconds", practice="maple-clinic")
    assert scheduled is not None and abs(scheduled - time.time()) < 7 * 86400
    # The embedded broker has no beat lock: no beat metric rather than a guess.
    assert not any(name.startswith("vendorwatch_beat") for name, _ in found)


def test_835s_and_pulse_exports_are_counted_as_their_own_kind(vw_env: dict[str, str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    from decimal import Decimal

    from remits.keys import KEY_VARIABLE
    from remits.synthetic import render_835
    from tests.test_remits import KEY, first_file

    monkeypatch.setenv(KEY_VARIABLE, KEY)
    good, bad, unbalanced, feed = (tmp_path / name for name in ("era.835", "era-2.835", "era-3.835", "oct.csv"))
    good.write_bytes(render_835(first_file()))
    northwind, bluebird = first_file()
    bad.write_bytes(render_835([dataclasses.replace(northwind, total=Decimal("1.00")), bluebird]))  # BPR02 is off
    unbalanced.write_bytes(render_835([dataclasses.replace(bluebird, total=Decimal("2.00"))]))
    feed.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,{recent_months(1)[0]},9.7\n",
                    encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest", "--practice", "maple-clinic", str(good)]).exit_code == 0
    for path in (bad, unbalanced):
        assert runner.invoke(cli, ["ingest", "--practice", "maple-clinic", str(path)]).exit_code == 3
    assert runner.invoke(cli, ["ingest", str(feed)]).exit_code == 0
    found = samples(exposition(get_settings(), lambda: load_config(TEST_CONFIG)).decode())

    assert {outcome: value(found, "vendorwatch_files_total", kind="remits", outcome=outcome)
            for outcome in ("accepted", "rejected")} == {"accepted": 1, "rejected": 2}
    # A rejected 835 is no rejected feed file; no pulse export came, and its series is there at 0.
    assert value(found, "vendorwatch_files_total", kind="feed", outcome="accepted") == 1
    assert value(found, "vendorwatch_files_total", kind="feed", outcome="rejected") == 0
    assert value(found, "vendorwatch_files_total", kind="pulse", outcome="accepted") == 0


def test_a_database_that_does_not_answer_is_reported_not_raised(vw_env: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDORWATCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/none")
    get_settings.cache_clear()
    found = samples(exposition(get_settings(), lambda: load_config(TEST_CONFIG)).decode())
    assert value(found, "vendorwatch_database_up") == 0
    assert value(found, "vendorwatch_files_total", kind="feed", outcome="accepted") is None


def wait_for(read: Callable[[], Samples], ready: Callable[[Samples], bool], timeout: float = 60) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if ready(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_worker_children_count_tasks_and_attempts_for_another_process_to_scrape(
        tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
        smtp_server: CapturingSMTPServer) -> None:
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_99999.db").write_bytes(b"left by a worker before")  # wiped at start

    def scrape() -> Samples:
        return samples(vendorwatch("metrics", env=env).stdout)

    month = recent_months(1)[0]
    with running_worker(env):
        drop_in_inbox(data_dir / "inbox", "claimright.csv", f"kpi,period,value\ndenial_rate,{month},10.4\n")
        vendorwatch("rerun", "ingest", env=env)
        teams_server.wait_for(1, timeout=30)
        found = wait_for(scrape, lambda s: any(name == "vendorwatch_delivery_attempts_total"
                                               and dict(labels)["outcome"] == "sent" for name, labels in s))
    durations = {dict(labels)["task"]: count for (name, labels), count in found.items()
                 if name == "vendorwatch_task_duration_seconds_count"}
    assert {"ingest.scan_inbox", "ingest.file", "alerts.evaluate", "alerts.deliver"} <= set(durations), durations
    attempts = {dict(labels)["channel"]: count for (name, labels), count in found.items()
                if name == "vendorwatch_delivery_attempts_total"}
    assert attempts and all(count >= 1 for count in attempts.values()), attempts
    assert value(found, "vendorwatch_alerts", state="firing", severity="critical") == 1
    assert not (tmp_path / "metrics" / "counter_99999.db").exists()


def test_the_example_alerting_rules_are_valid_and_fire_when_they_should() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus package is required (apt-get install prometheus)"
    for args in (["check", "rules", "prometheus-rules.yml"], ["test", "rules", "prometheus-rules.test.yml"]):
        result = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_counting_never_breaks_the_work_it_counts(caplog: pytest.LogCaptureFixture) -> None:
    from worker.metrics import attempt_recorded

    attempt_recorded.warned = False  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="worker.metrics"):
        attempt_recorded(None, None, object())  # an attempt without outcome: counting fails, delivery goes on
        attempt_recorded(None, None, object())
    warnings = [r.getMessage() for r in caplog.records if r.name == "worker.metrics"]
    assert len(warnings) == 1 and "could not count attempt_recorded: AttributeError" in warnings[0]
