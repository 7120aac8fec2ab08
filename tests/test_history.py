"""`vendorwatch history`: what the flow recorded, read back with filters and --json, against real PostgreSQL and
loopback Teams and SMTP servers. Files are ingested, corrected, rejected, delivered, rerun and resent through the
command line first; every answer below is what those commands stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from worker.cli import cli

FEED = "practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,2026-10,{value}\n"
BROKEN = "practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,2026-10,lots\n"


def run(*args: str, status: int = 0) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == status, result.output
    return result


def history(*args: str) -> list[dict[str, Any]]:
    rows = json.loads(run("history", *args, "--json").stdout)
    assert isinstance(rows, list)
    return rows


@pytest.fixture
def recorded(vw_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A first delivery (a warning alert, delivered), a correction (a revision), a broken file (a rejection), a
    rerun and a direct digest resend, each by operator 'alice'."""
    monkeypatch.setenv("VENDORWATCH_OPERATOR", "alice")
    first, second, broken = (tmp_path / name for name in ("oct.csv", "oct-corrected.csv", "oct-broken.csv"))
    first.write_text(FEED.format(value=9.7), encoding="utf-8")
    second.write_text(FEED.format(value=10.4), encoding="utf-8")
    broken.write_text(BROKEN, encoding="utf-8")
    run("ingest", str(first))
    run("ingest", str(second))
    run("ingest", str(broken), status=3)
    run("rerun", "ingest")
    run("digest", "--practice", "maple-clinic", "--resend")
    return tmp_path


def test_feeds_show_accepted_and_rejected_files_with_row_column_and_reason(recorded: Path) -> None:
    rows = history("feeds")
    assert [(row["file"], row["status"]) for row in rows] == [
        ("oct-broken.csv", "rejected"), ("oct-corrected.csv", "accepted"), ("oct.csv", "accepted")]
    assert rows[0]["problems"] == [{"row": 2, "column": "value", "value": "lots", "message": "not a number"}]
    assert rows[1]["rows"] == 1 and rows[1]["sha256"] != rows[2]["sha256"]
    assert "row 2, column value ('lots'): not a number" in run("history", "feeds").stdout


def test_vendor_and_practice_find_files_that_name_them_in_their_rows(recorded: Path) -> None:
    """oct.csv and its correction name practice and vendor in their rows (no inbox folder, no --vendor): they are
    found by what they stored for claimright at maple-clinic, oct.csv by the value its correction replaced."""
    both = [("oct-corrected.csv", "accepted"), ("oct.csv", "accepted")]
    for filters in (("--vendor", "claimright"), ("--practice", "maple-clinic"),
                    ("--vendor", "claimright", "--practice", "maple-clinic")):
        assert [(row["file"], row["status"]) for row in history("feeds", *filters)] == both, filters
    assert history("feeds", "--vendor", "brightcall") == []
    assert history("feeds", "--vendor", "claimright", "--practice", "elsewhere") == []
    # A rejected file stored nothing: it is found by what its delivery named, here nothing.
    assert "oct-broken.csv" not in [row["file"] for row in history("feeds", "--vendor", "claimright")]


def test_a_file_in_a_practice_inbox_root_is_found_by_the_vendor_its_rows_name(
        vw_env: dict[str, str], tmp_path: Path) -> None:
    from config import load_config
    from config.settings import get_settings
    from intake.inbox import process_inbox_file
    from tests.conftest import TEST_CONFIG

    settings = get_settings()
    root = settings.inbox / "maple-clinic"
    root.mkdir(parents=True, exist_ok=True)
    path = root / "october.csv"
    path.write_text(FEED.format(value=9.7), encoding="utf-8")

    result = process_inbox_file(path, load_config(TEST_CONFIG), settings, settled=True)
    assert result is not None and result.status == "accepted", result

    (row,) = history("feeds", "--vendor", "claimright")
    assert (row["file"], row["practice"], row["vendor"]) == ("october.csv", "maple-clinic", None)
    assert history("feeds", "--vendor", "claimright", "--practice", "maple-clinic") == [row]


def test_revisions_give_old_and_new_value_and_both_files(recorded: Path) -> None:
    (revision,) = history("revisions", "--kpi", "denial_rate", "--practice", "maple-clinic")
    assert (revision["old_value"], revision["new_value"]) == (9.7, 10.4)
    assert (revision["old_file"], revision["new_file"]) == ("oct.csv", "oct-corrected.csv")
    assert revision["vendor"] == "claimright" and revision["period_start"] == "2026-10-01"
    assert history("revisions", "--kpi", "days_in_ar") == []
    assert history("revisions", "--practice", "elsewhere") == []


def test_deliveries_list_every_attempt_per_target(recorded: Path) -> None:
    rows = history("deliveries", "--vendor", "claimright")
    alerts = [row for row in rows if row["kind"] == "alert"]
    assert alerts, rows
    for row in alerts:
        assert row["status"] == "sent"
        assert row["attempts"] and all(a["outcome"] == "sent" and a["error"] is None for a in row["attempts"])
        assert len({a["target"] for a in row["attempts"]}) == len(row["attempts"])
    assert history("deliveries", "--vendor", "nobody") == []


def test_reruns_record_who_and_what_including_a_direct_resend(recorded: Path) -> None:
    rows = history("reruns")
    assert [(row["task"], row["requested_by"]) for row in rows] == [
        ("digest.resend", "alice"), ("ingest.scan_inbox", "alice")]
    assert rows[0]["arguments"]["practice_id"] == "maple-clinic" and rows[1]["task_id"]
    assert history("reruns", "--practice", "maple-clinic") == rows[:1]


def test_digests_and_since_filter(recorded: Path) -> None:
    (run_row,) = history("digests", "--practice", "maple-clinic")
    assert run_row["status"] == "sent" and run_row["subject"]
    for kind in ("feeds", "revisions", "deliveries", "reruns", "digests", "pulls"):
        assert history(kind, "--since", "2999-01-01") == []
    assert history("pulls") == []  # the test configuration pulls nothing


def test_tables_print_for_people_and_bad_since_is_refused(recorded: Path) -> None:
    table = run("history", "revisions").stdout
    assert "9.7" in table and "10.4" in table and "oct-corrected.csv" in table
    result = run("history", "feeds", "--since", "last tuesday", status=2)
    assert "--since" in result.output


def test_feeds_list_an_accepted_835_with_its_claims_under_the_remits_folder(
    vw_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remits.keys import KEY_VARIABLE
    from remits.synthetic import render_835
    from tests.test_remits import KEY
    from tests.test_remits_input import planted_file

    monkeypatch.setenv(KEY_VARIABLE, KEY)
    era, feed = tmp_path / "era.835", tmp_path / "oct.csv"
    era.write_bytes(render_835(planted_file()))
    feed.write_text(FEED.format(value=9.7), encoding="utf-8")
    run("ingest", "--practice", "maple-clinic", str(era))
    run("ingest", str(feed))

    (remit,) = history("feeds", "--vendor", "remits", "--practice", "maple-clinic")
    # Claims counted: Northwind C1, C2, C3, C6 and the planted one; Bluebird C7 (C4 reversed, C5 a duplicate).
    assert (remit["file"], remit["status"], remit["vendor"], remit["rows"]) == ("era.835", "accepted", "remits", 6)
    assert [row["file"] for row in history("feeds")] == ["oct.csv", "era.835"]
    assert "era.835" not in [row["file"] for row in history("feeds", "--vendor", "claimright")]
    assert history("feeds", "--practice", "another-practice") == []
