"""The bundled demo data: canonical feed format, the 18-month window, the alert stories, reproducibility."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.demo.generate import DATA_DIR, main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
FIRST_PERIOD = "2025-05"
LAST_PERIOD = "2026-10"
VENDORS = {
    ("oakridge-fm", "acme-billing"),
    ("oakridge-fm", "brightcall"),
    ("lakeside-peds", "acme-billing"),
    ("lakeside-peds", "verifyfirst"),
    ("riverbend-im", "acme-billing"),  # the third practice of the group Acme serves (issue 17)
    ("lakeside-peds", "scribeline"),
}
PULSE_FILE = DATA_DIR / "oakridge-fm" / "pulse-2026-10-30.csv"
FREE_TEXT_QUESTION = "Anything else you want leadership to know?"


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def list_feed_files(root: Path = DATA_DIR) -> list[Path]:
    return sorted(root.glob("*/*/*.csv"))


def read_observations() -> dict[tuple[str, str, str, str], float]:
    """(practice, vendor, kpi, period) -> value, with practice and vendor taken from the folder path."""
    observations = {}
    for path in list_feed_files():
        practice, vendor = path.parent.parent.name, path.parent.name
        for kpi, period, value, _segment in read_csv(path)[1:]:
            observations[(practice, vendor, kpi, period)] = float(value)
    return observations


def expected_periods() -> list[str]:
    periods = []
    year, month = (int(part) for part in FIRST_PERIOD.split("-"))
    while (period := f"{year:04d}-{month:02d}") <= LAST_PERIOD:
        periods.append(period)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return periods


def load_yaml(name: str) -> dict[str, Any]:
    with (CONFIG_DIR / name).open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def resolve_threshold(practice_id: str, vendor_id: str, kpi: str) -> dict[str, Any]:
    """The catalog rule with the practice's, then the vendor's, overrides on top (see practices.yaml)."""
    rule = dict(load_yaml("kpis.yaml")["kpis"][kpi])
    practice = next(p for p in load_yaml("practices.yaml")["practices"] if p["id"] == practice_id)
    vendor = next(v for v in practice["vendors"] if v["id"] == vendor_id)
    rule.update((practice.get("overrides") or {}).get(kpi, {}))
    rule.update((vendor.get("overrides") or {}).get(kpi, {}))
    return rule


def classify_breach(rule: dict[str, Any], value: float) -> str | None:
    def breaches(bound: float | None) -> bool:
        if bound is None:
            return False
        return value > bound if rule["better"] == "lower" else value < bound

    if rule.get("rule") != "threshold":
        return None
    if breaches(rule.get("crit")):
        return "crit"
    return "warn" if breaches(rule.get("warn")) else None


def test_every_feed_file_has_the_canonical_long_header() -> None:
    files = list_feed_files()
    assert len(files) == len(VENDORS) * len(expected_periods())
    for path in files:
        assert read_csv(path)[0] == ["kpi", "period", "value", "segment"], path


def test_periods_cover_exactly_the_demo_window_for_every_vendor() -> None:
    periods: dict[tuple[str, str], set[str]] = {}
    for practice, vendor, _kpi, period in read_observations():
        periods.setdefault((practice, vendor), set()).add(period)
    assert set(periods) == VENDORS
    for key, seen in periods.items():
        assert sorted(seen) == expected_periods(), key


def test_no_period_is_after_the_latest_closed_month() -> None:
    for path in list_feed_files():
        assert path.stem.endswith(tuple(expected_periods())), path
        for row in read_csv(path)[1:]:
            assert row[1] <= LAST_PERIOD, (path, row)


def test_values_stay_in_their_valid_range() -> None:
    catalog = load_yaml("kpis.yaml")["kpis"]
    for (practice, vendor, kpi, period), value in read_observations().items():
        where = (practice, vendor, kpi, period, value)
        if catalog[kpi]["unit"] == "%":
            assert 0 <= value <= 100, where
        else:
            assert value >= 0, where


def test_oakridge_denial_rate_turns_critical_only_in_the_latest_month() -> None:
    # practices.yaml overrides oakridge's denial_rate crit to 9; 2026-09 stays a warning, 2026-10 is critical.
    observations = read_observations()
    assert observations[("oakridge-fm", "acme-billing", "denial_rate", "2026-10")] > 9
    assert observations[("oakridge-fm", "acme-billing", "denial_rate", "2026-09")] < 9


def test_latest_month_breaches_exactly_the_demo_stories() -> None:
    latest = {
        (practice, vendor, kpi): value
        for (practice, vendor, kpi, period), value in read_observations().items()
        if period == LAST_PERIOD
    }
    breaches = {
        key: severity
        for key, value in latest.items()
        if (severity := classify_breach(resolve_threshold(*key), value)) is not None
    }
    assert breaches == {
        ("oakridge-fm", "acme-billing", "denial_rate"): "crit",
        ("lakeside-peds", "acme-billing", "net_collection_rate"): "warn",
        ("lakeside-peds", "acme-billing", "charge_lag_days"): "crit",
        ("lakeside-peds", "verifyfirst", "eligibility_verified_rate"): "warn",
    }


def test_pulse_export_looks_like_google_forms_and_keeps_a_line_break() -> None:
    header, *rows = read_csv(PULSE_FILE)
    questions = [question["text"] for question in load_yaml("surveys.yaml")["questions"]]
    assert header == ["Timestamp", "Email Address", *questions, FREE_TEXT_QUESTION]
    assert len(rows) == 11
    assert all(len(row) == len(header) for row in rows)
    free_text = [row[-1] for row in rows]
    assert any("\n" in text for text in free_text)
    assert any('"' in text and "," in text for text in free_text)


def test_pulse_answers_tell_the_workload_and_burnout_story() -> None:
    header, *rows = read_csv(PULSE_FILE)
    column = {
        question["dimension"]: header.index(question["text"])
        for question in load_yaml("surveys.yaml")["questions"]
    }
    workload = [int(row[column["pulse_workload"]]) for row in rows]
    burnout = [int(row[column["pulse_burnout"]]) for row in rows]
    assert sum(workload) / len(workload) == pytest.approx(3.2, abs=0.1)
    assert sum(1 for answer in burnout if answer >= 3) == 4


def test_generator_reproduces_the_bundled_files_byte_for_byte(tmp_path: Path) -> None:
    first = main(tmp_path / "first")
    second = main(tmp_path / "second")
    relative = sorted(path.relative_to(tmp_path / "first") for path in first)
    assert relative == sorted(path.relative_to(tmp_path / "second") for path in second)
    bundled = sorted(path.relative_to(DATA_DIR) for path in DATA_DIR.rglob("*.csv"))
    assert relative == bundled, "bundled demo data is stale: run python -m worker.demo.generate"
    for name in relative:
        fresh = (tmp_path / "first" / name).read_bytes()
        assert fresh == (tmp_path / "second" / name).read_bytes(), name
        assert fresh == (DATA_DIR / name).read_bytes(), f"{name} is stale: run python -m worker.demo.generate"


def test_the_bundled_835s_are_what_the_generator_writes_and_pay_what_acme_reports(tmp_path: Path) -> None:
    """worker/demo/remits.py (issue 16): reproducible byte for byte; each month's BPR02s add up to Acme's reported
    net collections, so only the denial rate disagrees (October)."""
    from remits.synthetic import Remittance
    from worker.demo import remits as demo_remits

    written = demo_remits.main(tmp_path)

    for path in written:
        assert path.read_bytes() == (DATA_DIR / "oakridge-fm" / "remits" / path.name).read_bytes(), path.name
    rng = random.Random(835)  # the generator's seed: the months come out as bundled
    for month in demo_remits.MONTHS:
        remittances: list[Remittance] = demo_remits.month_remittances(month, rng)
        assert sum(r.balanced_total() for r in remittances) == demo_remits.reported_net_collections(month)
