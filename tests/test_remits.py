"""Payers' 835 remittances (issue 16): every figure of a hand-built file against values worked out by hand below,
resubmissions, idempotency, delimiters, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config import BUNDLED_DIR, Config, load_config
from intake.ingest import ingest_path
from remits.figures import Figures
from remits.summary import summary
from remits.synthetic import Adjustment, Claim, Delimiters, ProviderAdjustment, Remittance, render_835
from storage.db import engine_for, session_scope, upgrade
from storage.models import RemitClaim, RemitFile, RemitMonth

PRACTICE = "oakridge-fm"
KEY = "test-remit-key-0123456789"
MARCH, APRIL = dt.date(2026, 3, 1), dt.date(2026, 4, 1)
D = Decimal


def co(reason: str, amount: str) -> Adjustment:
    return Adjustment("CO", reason, D(amount))


def first_file() -> list[Remittance]:
    """Northwind paid on 2026-03-10, Bluebird on 2026-04-02. Worked out by hand (see each claim):
    Northwind counts C1, C2, C3, C6 (C4 is reversed in the same file, C5 is an exact duplicate, CARC 18)."""
    northwind = Remittance("Northwind Health", "NWH01", dt.date(2026, 3, 10), claims=[
        # paid: 100 - 70 = CO 20 + PR 10; served 03-01: 9 days
        Claim("C1", "1", D(100), D(70), D(10), service_date=dt.date(2026, 3, 1),
              line_adjustments=(co("45", "20"), Adjustment("PR", "1", D(10)))),
        # denied (CLP02 = 4), authorization (CARC 197); served 02-28: 10 days
        Claim("C2", "4", D(200), D(0), service_date=dt.date(2026, 2, 28), line_adjustments=(co("197", "200"),)),
        # nothing paid with an OA adjustment: denied, missing information (CARC 16); claim-level only, its
        # statement date (DTM*232) 02-20: 18 days
        Claim("C3", "1", D(50), D(0), statement_date=dt.date(2026, 2, 20),
              adjustments=(Adjustment("OA", "16", D(50)),), service_line=False),
        Claim("C4", "1", D(80), D(80), service_date=dt.date(2026, 3, 2)),
        Claim("C4", "22", D(-80), D(-80), service_date=dt.date(2026, 3, 2)),  # reversal of C4
        Claim("C5", "1", D(60), D(0), service_date=dt.date(2026, 3, 3), line_adjustments=(co("18", "60"),)),
        # secondary payer's payment, served 03-05: 5 days
        Claim("C6", "2", D(40), D(30), service_date=dt.date(2026, 3, 5), line_adjustments=(co("45", "10"),)),
    ], plb=[ProviderAdjustment("WO", D(5))])
    bluebird = Remittance("Bluebird Mutual", "BBM02", dt.date(2026, 4, 2), claims=[
        Claim("C7", "1", D(120), D(100), D(20), line_adjustments=(Adjustment("PR", "3", D(20)),)),
    ])
    return [northwind, bluebird]


NORTHWIND_MARCH = Figures(
    payer="Northwind Health", month=MARCH, claims_adjudicated=4, claims_denied=2, first_pass_claims=4,
    first_pass_denied=2,
    first_pass_denial_rate=50.0,  # 2 / 4
    first_pass_denial_rate_dollars=64.1,  # (200 + 50) / (100 + 200 + 50 + 40) = 250 / 390
    payments=D("100.00"),  # 70 + 0 + 0 + 80 - 80 + 0 + 30
    provider_adjustments=D("5.00"), net_payments=D("95.00"),  # = BPR02
    patient_responsibility=D("10.00"),
    contractual_adjustments=D("290.00"),  # CO: 20 + 200 + 60 + 10
    days_to_payment_median=9.5,  # 5, 9, 10, 18
    days_to_payment_p90=18,  # nearest rank: ceil(0.9 x 4) = 4th
    denial_categories={"authorization": 1, "missing information": 1}, denial_carcs={"197": 1, "16": 1})
BLUEBIRD_APRIL = Figures(
    payer="Bluebird Mutual", month=APRIL, claims_adjudicated=1, claims_denied=0, first_pass_claims=1,
    first_pass_denied=0, first_pass_denial_rate=0.0, first_pass_denial_rate_dollars=0.0, payments=D("100.00"),
    provider_adjustments=D("0.00"), net_payments=D("100.00"), patient_responsibility=D("20.00"),
    contractual_adjustments=D("0.00"), days_to_payment_median=None, days_to_payment_p90=None)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
        return
    url = f"sqlite:///{tmp_path / 'remits.sqlite'}"
    upgrade(url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("VENDORWATCH_REMIT_KEY", KEY)
    return load_config(BUNDLED_DIR)


def write(path: Path, remittances: list[Remittance], delimiters: Delimiters | None = None) -> Path:
    path.write_bytes(render_835(remittances, delimiters or Delimiters()))
    return path


def figures(config: Config, database_url: str, payer: str | None = None) -> list[Figures]:
    with session_scope(database_url) as session:
        return [f for f in summary(session, config, PRACTICE) if payer is None or f.payer == payer]


def count(database_url: str, model: type) -> int:
    with session_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_every_figure_of_a_hand_built_835_is_the_value_worked_out_by_hand(
    tmp_path: Path, database_url: str, config: Config
) -> None:
    result = ingest_path(write(tmp_path / "era.835", first_file()), config, practice=PRACTICE,
                         database_url=database_url)

    assert (result.status, result.kind, result.rows, result.practices) == ("accepted", "remits", 5, [PRACTICE])
    northwind, all_march, bluebird, all_april = figures(config, database_url)
    assert northwind == NORTHWIND_MARCH
    assert bluebird == BLUEBIRD_APRIL
    assert (all_march.payer, all_march.claims_adjudicated, all_april.claims_adjudicated) == ("all payers", 4, 1)
    assert count(database_url, RemitClaim) == 7  # C1..C7, each once: only their keyed hashes


def test_a_later_file_of_the_same_month_adds_up_and_a_resubmission_is_not_a_first_pass(
    tmp_path: Path, database_url: str, config: Config
) -> None:
    ingest_path(write(tmp_path / "first.835", first_file()), config, practice=PRACTICE, database_url=database_url)
    later = Remittance("Northwind Health", "NWH01", dt.date(2026, 3, 24), claims=[
        # C2 again, now paid: a resubmission; served 02-28, paid 03-24: 24 days
        Claim("C2", "1", D(200), D(150), service_date=dt.date(2026, 2, 28), line_adjustments=(co("45", "50"),)),
        # new and denied, timely filing (CARC 29); served 03-01: 23 days
        Claim("C8", "4", D(300), D(0), service_date=dt.date(2026, 3, 1), line_adjustments=(co("29", "300"),)),
    ])

    result = ingest_path(write(tmp_path / "later.835", [later]), config, practice=PRACTICE,
                         database_url=database_url)

    assert result.status == "accepted"
    northwind = figures(config, database_url, "Northwind Health")[0]
    assert (northwind.claims_adjudicated, northwind.claims_denied) == (6, 3)  # C2 counted twice, C8 added
    assert (northwind.first_pass_claims, northwind.first_pass_denied) == (5, 3)  # C1, C2, C3, C6, C8
    assert northwind.first_pass_denial_rate == 60.0  # 3 / 5
    assert northwind.first_pass_denial_rate_dollars == 79.71  # (200 + 50 + 300) / (390 + 300) = 550 / 690
    assert (northwind.payments, northwind.net_payments) == (D("250.00"), D("245.00"))
    assert northwind.days_to_payment_median == 14.0  # 5, 9, 10, 18, 23, 24
    assert northwind.days_to_payment_p90 == 24  # ceil(0.9 x 6) = 6th
    assert northwind.denial_categories == {"authorization": 1, "missing information": 1, "timely filing": 1}
    with session_scope(database_url) as session:
        assert session.scalars(select(RemitMonth.files).where(RemitMonth.payer_id == "NWH01")).one() == 2


def test_the_same_bytes_twice_are_a_no_op(tmp_path: Path, database_url: str, config: Config) -> None:
    path = write(tmp_path / "era.835", first_file())
    ingest_path(path, config, practice=PRACTICE, database_url=database_url)

    again = ingest_path(path, config, practice=PRACTICE, database_url=database_url)

    assert again.status == "duplicate"
    assert figures(config, database_url, "Northwind Health")[0] == NORTHWIND_MARCH
    assert count(database_url, RemitFile) == 1


@pytest.mark.parametrize("delimiters", [
    Delimiters(newline=False),
    Delimiters(element="|", component=">", repetition="^", segment="!", newline=False),
    Delimiters(element="^", component="\\", repetition="{", segment="~", newline=True),
], ids=["one-line", "pipes-and-bangs", "carets"])
def test_any_delimiters_the_isa_declares_give_the_same_figures(
    tmp_path: Path, postgres_url: str, config: Config, delimiters: Delimiters
) -> None:
    result = ingest_path(write(tmp_path / "era.835", first_file(), delimiters), config, practice=PRACTICE,
                         database_url=postgres_url)

    assert result.status == "accepted", result.problems
    assert figures(config, postgres_url, "Northwind Health")[0] == NORTHWIND_MARCH


def test_a_claim_seen_in_an_earlier_file_is_no_first_pass_however_often_this_file_names_it(
    tmp_path: Path, database_url: str, config: Config
) -> None:
    ingest_path(write(tmp_path / "first.835", first_file()), config, practice=PRACTICE, database_url=database_url)
    later = Remittance("Northwind Health", "NWH01", dt.date(2026, 5, 4), claims=[
        Claim("C1", "4", D(100), D(0), line_adjustments=(co("16", "100"),)),  # seen in the first file
        Claim("C1", "1", D(100), D(100)),  # and again: both resubmissions
        Claim("C9", "1", D(50), D(50)),  # new: the month's only first pass
        Claim("C9", "22", D(-50), D(-50)),  # reversed: C9 and its reversal leave the counts
        Claim("C9", "1", D(50), D(40), line_adjustments=(co("45", "10"),)),  # re-adjudicated: not a first pass
    ])

    ingest_path(write(tmp_path / "later.835", [later]), config, practice=PRACTICE, database_url=database_url)

    may = next(f for f in figures(config, database_url, "Northwind Health") if f.month == dt.date(2026, 5, 1))
    assert (may.claims_adjudicated, may.claims_denied) == (3, 1)  # C1, C1, C9 again
    assert (may.first_pass_claims, may.first_pass_denied, may.first_pass_denial_rate) == (0, 0, None)
    assert may.payments == D("140.00")  # 0 + 100 + 50 - 50 + 40


def test_every_figure_in_kpis_yaml_is_computed_and_every_check_names_a_catalog_kpi(config: Config) -> None:
    computed = set(Figures.__dataclass_fields__)
    remits = config.catalog.remits

    assert set(remits.figures) <= computed, set(remits.figures) - computed
    x12_element = re.compile(r"\b(?:CLP|CAS|PLB|BPR|DTM)\d*\b")
    assert [name for name, f in remits.figures.items() if not x12_element.search(f.formula)] == []
    assert remits.checks == {"denial_rate": "first_pass_denial_rate", "net_collections": "net_payments"}


def test_two_files_stored_at_once_count_like_one_after_the_other(tmp_path: Path, postgres_url: str,
                                                                 config: Config) -> None:
    """Both name the new claims S0..S39 (one file's copy paid, the other's denied): stored one at a time per
    practice, whichever comes second sees them as resubmissions; the same bytes from two workers are stored once."""
    from concurrent.futures import ThreadPoolExecutor

    def month(status: str, paid: str) -> list[Remittance]:
        return [Remittance("Northwind Health", "NWH01", dt.date(2026, 6, 10), claims=[
            Claim(f"S{n}", status, D(50), D(paid), line_adjustments=() if paid == "50" else (co("16", "50"),))
            for n in range(40)])]

    paths = [write(tmp_path / "a.835", month("1", "50")), write(tmp_path / "b.835", month("4", "0")),
             write(tmp_path / "a-again.835", month("1", "50"))]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda p: ingest_path(p, config, practice=PRACTICE, database_url=postgres_url),
                                paths))

    assert sorted(r.status for r in results) == ["accepted", "accepted", "duplicate"]
    june = figures(config, postgres_url, "Northwind Health")[0]
    assert (june.claims_adjudicated, june.first_pass_claims) == (80, 40)
    assert june.first_pass_denied in (0, 40)  # whichever file was first


def test_a_byte_order_mark_and_blank_lines_before_the_isa_are_tolerated(
    tmp_path: Path, postgres_url: str, config: Config
) -> None:
    path = tmp_path / "era.835"
    path.write_bytes(b"\xef\xbb\xbf\r\n" + render_835(first_file()).replace(b"~\n", b"~\r\n"))

    result = ingest_path(path, config, practice=PRACTICE, database_url=postgres_url)

    assert result.status == "accepted", result.problems
    assert figures(config, postgres_url, "Northwind Health")[0] == NORTHWIND_MARCH


def test_nothing_paid_is_a_denial_with_a_co_oa_or_pi_adjustment_not_with_the_patients_share(
    tmp_path: Path, postgres_url: str, config: Config
) -> None:
    remittance = Remittance("Bluebird Mutual", "BBM02", dt.date(2026, 7, 1), claims=[
        Claim("P1", "1", D(50), D(0), line_adjustments=(Adjustment("PI", "204", D(50)),)),  # denied: eligibility
        Claim("P2", "1", D(50), D(0), D(50), line_adjustments=(Adjustment("PR", "1", D(50)),)),  # deductible
        Claim("P3", "1", D(50), D(0), line_adjustments=(co("252", "50"),)),  # denied: missing information
        Claim("P4", "1", D(50), D(10), line_adjustments=(co("97", "40"),)),  # something paid: not a denial
    ])

    ingest_path(write(tmp_path / "era.835", [remittance]), config, practice=PRACTICE, database_url=postgres_url)

    july = figures(config, postgres_url, "Bluebird Mutual")[0]
    assert (july.claims_adjudicated, july.claims_denied, july.first_pass_denial_rate) == (4, 2, 50.0)
    assert july.denial_categories == {"eligibility and coverage": 1, "missing information": 1}
    assert (july.patient_responsibility, july.contractual_adjustments) == (D("50.00"), D("90.00"))  # CO 50 + 40


# -- a reversal in a later file (CLP02 = 22 of a claim paid in an earlier 835) ---------------------------------------


def claim_of(remittance: Remittance, claim_id: str) -> Claim:
    return next(c for c in remittance.claims if c.claim_id == claim_id and c.status != "22")


def test_a_reversal_in_a_later_file_takes_its_claim_out_of_the_month_it_was_counted_in(
    tmp_path: Path, database_url: str, config: Config
) -> None:
    from remits.synthetic import reversal_of

    northwind = first_file()[0]
    ingest_path(write(tmp_path / "march.835", first_file()), config, practice=PRACTICE, database_url=database_url)
    april = Remittance("Northwind Health", "NWH01", dt.date(2026, 4, 15), claims=[
        reversal_of(claim_of(northwind, "C1")),  # paid in March: 100 billed, 9 days, a first pass
        reversal_of(claim_of(northwind, "C2")),  # denied in March (CARC 197): 200 billed, 10 days, a first pass
        Claim("C10", "1", D(90), D(90), service_date=dt.date(2026, 4, 1)),  # new: 14 days
        Claim("C99", "22", D(-25), D(-25)),  # a reversal of a claim no file brought: nothing to take back
    ])
    path = write(tmp_path / "april.835", [april])

    result = ingest_path(path, config, practice=PRACTICE, database_url=database_url)

    assert (result.status, result.rows) == ("accepted", 1)
    march, april_figures = figures(config, database_url, "Northwind Health")
    assert (march.claims_adjudicated, march.claims_denied, march.first_pass_claims) == (2, 1, 2)  # C3 and C6 left
    assert result.notes == ["2 claim(s) paid in an earlier file reversed: taken out of their month",
                            "1 reversal(s) of a claim no stored file counts: recorded as unmatched"]
    # March keeps C3 (denied, 50 billed, 18 days) and C6 (40 billed, 5 days); its dollars stay: that money moved
    # in March, and the reversals' negative amounts count in April.
    assert march == NORTHWIND_MARCH.__class__(
        payer="Northwind Health", month=MARCH, claims_adjudicated=2, claims_denied=1, first_pass_claims=2,
        first_pass_denied=1, first_pass_denial_rate=50.0,
        first_pass_denial_rate_dollars=55.56,  # 50 / (50 + 40)
        payments=D("100.00"), provider_adjustments=D("5.00"), net_payments=D("95.00"),
        patient_responsibility=D("10.00"), contractual_adjustments=D("290.00"),
        days_to_payment_median=11.5, days_to_payment_p90=18,  # 5, 18
        denial_categories={"missing information": 1}, denial_carcs={"16": 1}, reversed_later=2)
    assert (april_figures.month, april_figures.claims_adjudicated, april_figures.first_pass_claims) == (APRIL, 1, 1)
    assert april_figures.payments == D("-5.00")  # -70 + 0 + 90 - 25
    assert (april_figures.patient_responsibility, april_figures.contractual_adjustments) == (D("-10.00"),
                                                                                           D("-220.00"))
    assert (april_figures.days_to_payment_median, april_figures.unmatched_reversals) == (14.0, 1)

    # The same file again: a no-op. Another file reversing C1 again: C1 counts nowhere now, so it is unmatched.
    assert ingest_path(path, config, practice=PRACTICE, database_url=database_url).status == "duplicate"
    again = Remittance("Northwind Health", "NWH01", dt.date(2026, 4, 20), claims=[
        reversal_of(claim_of(northwind, "C1"))])
    ingest_path(write(tmp_path / "again.835", [again]), config, practice=PRACTICE, database_url=database_url)
    march_now, april_now = figures(config, database_url, "Northwind Health")
    assert march_now == march
    assert (april_now.claims_adjudicated, april_now.unmatched_reversals) == (1, 2)


def test_a_claim_reversed_and_paid_again_counts_once_where_it_was_paid_last(
    tmp_path: Path, database_url: str, config: Config
) -> None:
    """A payer's correction: C1 reversed and re-adjudicated in April (no first pass: the claim was seen), then
    reversed again in May: the May reversal takes back the April payment, wherever it was stored."""
    from remits.synthetic import reversal_of

    c1 = claim_of(first_file()[0], "C1")
    ingest_path(write(tmp_path / "march.835", first_file()), config, practice=PRACTICE, database_url=database_url)
    paid_again = Claim("C1", "1", D(100), D(90), service_date=dt.date(2026, 3, 1), line_adjustments=(co("45", "10"),))
    april = Remittance("Northwind Health", "NWH01", dt.date(2026, 4, 15), claims=[reversal_of(c1), paid_again])
    ingest_path(write(tmp_path / "april.835", [april]), config, practice=PRACTICE, database_url=database_url)

    march, april_figures = figures(config, database_url, "Northwind Health")
    assert (march.claims_adjudicated, march.first_pass_claims) == (3, 3)
    assert march.reversed_later == 1
    assert (april_figures.claims_adjudicated, april_figures.first_pass_claims) == (1, 0)
    assert april_figures.days_to_payment_median == 45.0  # 03-01 to 04-15

    may = Remittance("Northwind Health", "NWH01", dt.date(2026, 5, 5), claims=[reversal_of(paid_again)])
    ingest_path(write(tmp_path / "may.835", [may]), config, practice=PRACTICE, database_url=database_url)

    march_now, april_now, may_figures = figures(config, database_url, "Northwind Health")
    assert march_now == march
    assert (april_now.claims_adjudicated, april_now.days_to_payment_median, april_now.reversed_later) == (0, None, 1)
    assert (may_figures.claims_adjudicated, may_figures.unmatched_reversals, may_figures.payments) == (
        0, 0, D("-90.00"))
