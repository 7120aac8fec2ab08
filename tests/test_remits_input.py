"""835 remittances through the command line and the inbox (issue 16): bad input exits 3 naming segment numbers and
element positions only, with nothing stored; no patient data anywhere afterwards; `vendorwatch remits summary`."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from config import BUNDLED_DIR, load_config
from config.settings import Settings
from intake.inbox import process_inbox_file
from remits.keys import KEY_VARIABLE
from remits.synthetic import Claim, Remittance, render_835
from storage.db import session_scope
from storage.models import FeedRejection, RemitClaim, RemitFile, RemitMonth
from tests.conftest import subprocess_env
from tests.test_remits import KEY, PRACTICE, first_file
from tests.worker_process import vendorwatch

# Planted in the files below; none may be found anywhere vendorwatch writes.
PLANTED = ("ZEBULONQXW", "QUILLIANVZK", "MBR7731XQJ", "CLMZQ90817")


def planted_file(total: Decimal | None = None, payer_id: str = "NWH01") -> list[Remittance]:
    remittances = first_file()
    remittances[0].claims.append(Claim(PLANTED[3], "1", Decimal(90), Decimal(90), patient_last=PLANTED[0],
                                       patient_first=PLANTED[1], member_id=PLANTED[2]))
    remittances[0].total = total
    remittances[1].payer_id = payer_id
    return remittances


def environment(tmp_path: Path, database_url: str) -> dict[str, str]:
    return subprocess_env({
        "VENDORWATCH_CONFIG": str(BUNDLED_DIR),
        "VENDORWATCH_DATA_DIR": str(tmp_path / "var"),
        "VENDORWATCH_DATABASE_URL": database_url,
        KEY_VARIABLE: KEY,
    })


def count(database_url: str, model: type) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def base() -> bytes:
    return render_835(first_file())


BAD_INPUTS: dict[str, tuple[Callable[[], bytes], list[str]]] = {
    # cut after the second transaction's claim (segment 58): its loops end unclosed
    "truncated": (lambda: b"".join(base().splitlines(keepends=True)[:58]),
                  ["segment at end of file: the file ends before its closing segment"]),
    "se-count": (lambda: base().replace(b"SE*45*0001", b"SE*44*0001"),
                 ["segment 47, element 1: a control count"]),
    "ge-count": (lambda: base().replace(b"GE*2*1", b"GE*3*1"), ["segment 63, element 1: a control count"]),
    "iea-count": (lambda: base().replace(b"IEA*1*", b"IEA*2*"), ["segment 64, element 1: a control count"]),
    "004010": (lambda: render_835(first_file(), version="00401"), ["segment 1, ISA12: not version 00501"]),
    "837": (lambda: base().replace(b"GS*HP", b"GS*HC").replace(b"ST*835", b"ST*837"),
            ["segment 2, GS01: not a remittance group (HP)", "segment 3, ST01: not an 835"]),
    "bpr-total": (lambda: render_835(planted_file(total=Decimal("999.99"))),
                  ["segment 4, element 2: the amounts do not balance: BPR02 is not the claims' CLP04 less the PLB "
                   "adjustments (rule transaction_balance)"]),
    "unknown-payer": (lambda: render_835(planted_file(payer_id="ZZZ99")),
                      ["segment 51, N1*PR N104 / TRN03: the payer id of the transaction starting here"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_3_naming_segment_and_element_never_contents_and_stores_nothing(
    tmp_path: Path, postgres_url: str, case: str
) -> None:
    make, expected = BAD_INPUTS[case]
    path = tmp_path / f"{case}.835"
    path.write_bytes(make())

    result = vendorwatch("--json", "ingest", "--no-evaluate", "--practice", PRACTICE, str(path),
                         env=environment(tmp_path, postgres_url), check=False)

    assert result.returncode == 3, result.stdout + result.stderr
    report = json.loads(result.stdout)["files"][0]
    messages = [error["message"] for error in report["errors"]]
    for words in expected:
        assert any(words in message for message in messages), (words, messages)
    assert all(error["value"] is None for error in report["errors"])
    assert not any(planted in result.stdout + result.stderr for planted in PLANTED)
    assert [count(postgres_url, model) for model in (RemitFile, RemitClaim, RemitMonth)] == [0, 0, 0]
    with session_scope(postgres_url) as session:
        rejection = session.scalars(select(FeedRejection)).one()
        assert (rejection.practice_id, rejection.vendor_id) == (PRACTICE, "remits")
        assert not any(planted in json.dumps(rejection.errors) for planted in PLANTED)


def everything_written(database_url: str, data_dir: Path) -> bytes:
    """The whole database as pg_dump writes it, and every file under the data folder."""
    url = urlsplit(database_url.replace("postgresql+psycopg", "postgresql"))
    dump = subprocess.run(["pg_dump", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U",
                           url.username or "postgres", "--data-only", url.path.lstrip("/")],
                          capture_output=True, check=True).stdout
    files = b"".join(path.read_bytes() for path in sorted(data_dir.rglob("*")) if path.is_file())
    return dump + files


def test_no_patient_name_member_id_or_claim_id_is_kept_in_the_database_data_folder_or_logs(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    settings, era = in_inbox(tmp_path, postgres_url, planted_file())
    caplog.set_level(logging.DEBUG)

    inbox = process_inbox_file(era, load_config(BUNDLED_DIR), settings, settled=True)
    cli = vendorwatch("ingest", "--practice", PRACTICE, str(write_second(tmp_path)),
                      env=environment(tmp_path, postgres_url))

    assert inbox is not None and inbox.status == "accepted"
    assert not era.exists() and inbox.moved_to is None  # not archived: it names patients
    assert "accepted" in cli.stdout
    assert count(postgres_url, RemitClaim) == 9  # C1..C7, the planted claim, C9
    written = everything_written(postgres_url, settings.data_dir)
    logs = (caplog.text + cli.stdout + cli.stderr).encode()
    assert b"remit_month" in written and b"stored an 835" in logs  # the search looks where things are
    for planted in PLANTED:
        assert planted.encode() not in written, planted
        assert planted.encode() not in logs, planted


def in_inbox(tmp_path: Path, postgres_url: str, remittances: list[Remittance]) -> tuple[Settings, Path]:
    """An 835 dropped in inbox/<practice>/remits/, and the settings whose inbox it is."""
    settings = Settings(data_dir=tmp_path / "var", database_url=postgres_url)
    folder = settings.inbox / PRACTICE / "remits"
    folder.mkdir(parents=True)
    (folder / "era.835").write_bytes(render_835(remittances))
    return settings, folder / "era.835"


def write_second(tmp_path: Path) -> Path:
    path = tmp_path / "second.835"
    path.write_bytes(render_835([Remittance("Northwind Health", "NWH01", dt.date(2026, 3, 20), claims=[
        Claim("C9", "1", Decimal(10), Decimal(10), patient_last=PLANTED[0], member_id=PLANTED[2])])]))
    return path


def test_a_rejected_inbox_835_is_quarantined_with_a_report_of_positions_only(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    settings, era = in_inbox(tmp_path, postgres_url, planted_file(total=Decimal("1.00")))
    caplog.set_level(logging.DEBUG)

    result = process_inbox_file(era, load_config(BUNDLED_DIR), settings, settled=True)

    assert result is not None and result.status == "rejected" and result.moved_to is not None
    report = Path(result.moved_to + ".errors.json").read_text()
    assert json.loads(report)["errors"][0]["message"].startswith("segment 4, element 2: the amounts do not balance: "
                                                                 "BPR02")
    assert not any(planted in report or planted in caplog.text for planted in PLANTED)
    assert [count(postgres_url, model) for model in (RemitFile, RemitClaim, RemitMonth)] == [0, 0, 0]


def test_without_the_hmac_key_nothing_is_read_and_the_inbox_file_stays(
    tmp_path: Path, postgres_url: str
) -> None:
    path = tmp_path / "era.835"
    path.write_bytes(base())
    env = {k: v for k, v in environment(tmp_path, postgres_url).items() if k != KEY_VARIABLE}

    result = vendorwatch("ingest", "--no-evaluate", "--practice", PRACTICE, str(path), env=env, check=False)

    assert result.returncode == 1
    assert f"{KEY_VARIABLE} must be set" in result.stderr.replace("\n", "")
    assert path.exists() and count(postgres_url, RemitFile) == 0


def test_remits_summary_prints_a_table_and_json_filtered_by_month_and_payer(
    tmp_path: Path, postgres_url: str
) -> None:
    env = environment(tmp_path, postgres_url)
    path = tmp_path / "era.835"
    path.write_bytes(base())
    vendorwatch("ingest", "--no-evaluate", "--practice", PRACTICE, str(path), env=env)

    table = vendorwatch("remits", "summary", "--practice", PRACTICE, env={**env, "COLUMNS": "250"})
    march = json.loads(vendorwatch("--json", "remits", "summary", "--practice", PRACTICE, "--month", "2026-03",
                                   env=env).stdout)
    bluebird = json.loads(vendorwatch("--json", "remits", "summary", "--practice", PRACTICE, "--payer",
                                      "bluebird mutual", env=env).stdout)
    unknown = vendorwatch("remits", "summary", "--practice", PRACTICE, "--payer", "Nobody", env=env, check=False)

    assert "Northwind Health" in table.stdout and "50.0%" in table.stdout and "$100.00" in table.stdout
    assert [(m["payer"], m["month"], m["claims_adjudicated"]) for m in march["months"]] == [
        ("Northwind Health", "2026-03", 4), ("all payers", "2026-03", 4)]
    assert march["months"][0]["first_pass_denial_rate"] == 50.0
    assert march["months"][0]["net_payments"] == 95.0
    assert [(m["payer"], m["month"], m["patient_responsibility"]) for m in bluebird["months"]] == [
        ("Bluebird Mutual", "2026-04", 20.0)]
    assert unknown.returncode == 2 and "unknown payer" in unknown.stderr


def test_a_file_wrong_on_every_claim_lists_the_first_50_problems_and_counts_them_all(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intake.ingest import ingest_path

    monkeypatch.setenv(KEY_VARIABLE, KEY)
    # 120 claims whose charge less payment (100 - 60) is not their adjustments (none): claim and service balance
    unbalanced = Remittance("Northwind Health", "NWH01", dt.date(2026, 3, 10), claims=[
        Claim(f"U{n}", "1", Decimal(100), Decimal(60)) for n in range(120)])
    path = tmp_path / "unbalanced.835"
    path.write_bytes(render_835([unbalanced]))

    result = ingest_path(path, load_config(BUNDLED_DIR), practice=PRACTICE, database_url=postgres_url)

    assert result.status == "rejected"
    assert len(result.problems) == 50
    assert result.as_dict()["error_count"] == 240  # each claim breaks the claim balance and the service balance
    assert result.problems[0].message == ("segment 15, element 2: the amounts do not balance: SVC02 - SVC03 is not "
                                          "the service line's adjustments (rule service_balance)")
    assert any(p.message.startswith("segment 13, element 3: the amounts do not balance: CLP03 - CLP04")
               for p in result.problems)
