"""A pulse export dropped in the inbox leaves nothing on disk that names staff."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from config import BUNDLED_DIR, load_config
from config.settings import Settings
from intake.inbox import process_inbox_file
from worker.demo.run import DATA_DIR


def drop(inbox: Path, source: Path) -> Path:
    target = inbox / "oakridge-fm" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    settled = time.time() - 30
    os.utime(target, (settled, settled))
    return target


def test_an_accepted_pulse_export_is_deleted_not_archived(tmp_path: Path, postgres_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=postgres_url)
    path = drop(settings.inbox, DATA_DIR / "oakridge-fm" / "pulse-2026-10-30.csv")
    result = process_inbox_file(path, load_config(BUNDLED_DIR), settings)
    assert result is not None and (result.kind, result.status) == ("pulse", "accepted")
    assert not path.exists()
    left_on_disk = [p for p in (tmp_path / "var").rglob("*") if p.is_file()]
    assert left_on_disk == [], left_on_disk


def test_a_rejected_pulse_export_leaves_only_its_errors(tmp_path: Path, postgres_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=postgres_url)
    source = DATA_DIR / "oakridge-fm" / "pulse-2026-10-30.csv"
    broken = tmp_path / "pulse-broken.csv"
    lines = source.read_text().splitlines(keepends=True)
    broken.write_text(lines[0] + lines[1].replace('"3","4"', '"9","4"', 1) + "".join(lines[2:]))  # 9 on a 1-5 item
    path = drop(settings.inbox, broken)
    result = process_inbox_file(path, load_config(BUNDLED_DIR), settings)
    assert result is not None and (result.kind, result.status) == ("pulse", "rejected")
    files = [p for p in (tmp_path / "var").rglob("*") if p.is_file()]
    assert [p.name.endswith(".errors.json") for p in files] == [True]
    assert "@" not in files[0].read_text(), "the error list must not repeat an email address"
