"""Synthetic X12 835 (005010X221A1) files: the demo's remittances, the benchmark's 200,000 claims, tests' inputs.

Every name and id in them is invented. `write_835` streams segments to a binary file, so a file of any size is
written without being held whole.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import BinaryIO


@dataclass(frozen=True)
class Adjustment:
    group: str  # CAS01: CO, OA, PI, PR, CR
    reason: str  # CAS02: CARC number
    amount: Decimal


@dataclass(frozen=True)
class Claim:
    claim_id: str  # CLP01
    status: str  # CLP02: 1 primary, 4 denied, 22 reversal, ...
    charge: Decimal  # CLP03
    paid: Decimal  # CLP04
    patient_resp: Decimal = Decimal(0)  # CLP05
    service_date: dt.date | None = None  # DTM*472 on the service line
    statement_date: dt.date | None = None  # claim DTM*232
    adjustments: tuple[Adjustment, ...] = ()  # claim-level CAS
    line_adjustments: tuple[Adjustment, ...] = ()  # service-line CAS
    patient_last: str = "SYNTHETIC"
    patient_first: str = "PAT"
    member_id: str = "M000000"
    service_line: bool = True  # False: a claim-level remittance without SVC loops


@dataclass(frozen=True)
class ProviderAdjustment:
    reason: str  # PLB03-1, e.g. WO, L6, FB
    amount: Decimal  # PLB04: positive lowers the payment


@dataclass
class Remittance:
    """One ST/SE transaction: one payer's payment to the practice."""

    payer_name: str
    payer_id: str  # N1*PR*..*XV*<id> (N104)
    payment_date: dt.date  # BPR16
    claims: list[Claim] = field(default_factory=list)
    plb: list[ProviderAdjustment] = field(default_factory=list)
    total: Decimal | None = None  # BPR02; None: the claims' CLP04 less PLB, as a balanced file has it

    def balanced_total(self) -> Decimal:
        return sum((c.paid for c in self.claims), Decimal(0)) - sum((p.amount for p in self.plb), Decimal(0))


@dataclass(frozen=True)
class Delimiters:
    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    segment: str = "~"
    newline: bool = True  # one segment a line, else all on one line


def money(value: Decimal) -> str:
    text = f"{value:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def isa(d: Delimiters, control: int, version: str = "00501") -> str:
    e = d.element
    return e.join(["ISA", "00", " " * 10, "00", " " * 10, "ZZ", "SYNTHPAYER".ljust(15), "ZZ",
                   "SYNTHCLINIC".ljust(15), "260105", "1200", d.repetition, version, f"{control:09d}", "0", "P",
                   d.component])


def transaction_segments(r: Remittance, d: Delimiters, control: int) -> list[str]:
    e, c = d.element, d.component
    total = r.total if r.total is not None else r.balanced_total()
    date = r.payment_date.strftime("%Y%m%d")
    body = [
        e.join(["BPR", "I", money(total), "C", "ACH", "CCP", "01", "999999999", "DA", "123456", "1512345678", "",
                "01", "999988880", "DA", "98765", date]),
        e.join(["TRN", "1", f"TR{control:07d}", "1512345678"]),
        e.join(["DTM", "405", date]),
        e.join(["N1", "PR", r.payer_name, "XV", r.payer_id]),
        e.join(["N3", "1 PAYER WAY"]),
        e.join(["N4", "CITY", "ST", "12345"]),
        e.join(["PER", "BL", "", "TE", "8005550100"]),
        e.join(["N1", "PE", "SYNTH CLINIC", "XX", "1234567893"]),
    ]
    if r.claims:
        body.append(e.join(["LX", "1"]))
    for claim in r.claims:
        body.extend(claim_segments(claim, e, c))
    for plb in r.plb:
        body.append(e.join(["PLB", "1234567893", f"{r.payment_date.year}1231", f"{plb.reason}{c}REF1",
                            money(plb.amount)]))
    st = e.join(["ST", "835", f"{control:04d}", "005010X221A1"])
    se = e.join(["SE", str(len(body) + 2), f"{control:04d}"])
    return [st, *body, se]


def claim_segments(claim: Claim, e: str, c: str) -> Iterator[str]:
    yield e.join(["CLP", claim.claim_id, claim.status, money(claim.charge), money(claim.paid),
                  money(claim.patient_resp), "12", f"PCN{claim.claim_id}", "11", "1"])
    for adj in claim.adjustments:
        yield e.join(["CAS", adj.group, adj.reason, money(adj.amount)])
    yield e.join(["NM1", "QC", "1", claim.patient_last, claim.patient_first, "", "", "", "MI", claim.member_id])
    if claim.statement_date is not None:
        yield e.join(["DTM", "232", claim.statement_date.strftime("%Y%m%d")])
    if not claim.service_line:
        return
    yield e.join(["SVC", f"HC{c}99213", money(claim.charge), money(claim.paid), "", "1"])
    if claim.service_date is not None:
        yield e.join(["DTM", "472", claim.service_date.strftime("%Y%m%d")])
    for adj in claim.line_adjustments:
        yield e.join(["CAS", adj.group, adj.reason, money(adj.amount)])


def segments_835(remittances: Iterable[Remittance], d: Delimiters = Delimiters(), version: str = "00501",
                 group_version: str = "005010X221A1") -> Iterator[str]:
    """One interchange, one functional group, one ST/SE per remittance."""
    yield isa(d, 1, version)
    yield d.element.join(["GS", "HP", "SYNTHPAYER", "SYNTHCLINIC", "20260105", "1200", "1", "X", group_version])
    count = 0
    for count, remittance in enumerate(remittances, start=1):
        yield from transaction_segments(remittance, d, count)
    yield d.element.join(["GE", str(count), "1"])
    yield d.element.join(["IEA", "1", "000000001"])


def write_835(out: BinaryIO, remittances: Iterable[Remittance], d: Delimiters = Delimiters(),
              version: str = "00501") -> None:
    end = d.segment + ("\n" if d.newline else "")
    for segment in segments_835(remittances, d, version):
        out.write((segment + end).encode("ascii"))


def render_835(remittances: Iterable[Remittance], d: Delimiters = Delimiters(), version: str = "00501") -> bytes:
    end = d.segment + ("\n" if d.newline else "")
    return "".join(segment + end for segment in segments_835(remittances, d, version)).encode("ascii")


PAYERS = (("Northwind Health", "NWH01"), ("Bluebird Mutual", "BBM02"), ("Cascade Care", "CSC03"),
          ("Summit Medicaid", "SMD04"))
DENIAL_CARCS = ("27", "197", "16", "97", "29", "50", "18", "252")


def random_claim(rng: random.Random, number: int, paid_on: dt.date) -> Claim:
    """A claim as payers remit them: mostly paid with a contractual write-off and a patient share, some denied."""
    charge = Decimal(rng.randrange(8000, 60000)) / 100
    served = paid_on - dt.timedelta(days=rng.randrange(7, 60))
    last, first, member = f"LAST{number}", f"FIRST{number}", f"MB{number:08d}"
    if rng.random() < 0.1:
        reason = rng.choice(DENIAL_CARCS)
        return Claim(f"C{number:09d}", "4", charge, Decimal(0), Decimal(0), service_date=served,
                     line_adjustments=(Adjustment("CO", reason, charge),), patient_last=last, patient_first=first,
                     member_id=member)
    contractual = (charge * Decimal("0.3")).quantize(Decimal("0.01"))
    patient = (charge * Decimal("0.1")).quantize(Decimal("0.01"))
    paid = charge - contractual - patient
    return Claim(f"C{number:09d}", "1", charge, paid, patient, service_date=served,
                 line_adjustments=(Adjustment("CO", "45", contractual), Adjustment("PR", "2", patient)),
                 patient_last=last, patient_first=first, member_id=member)


def reversal_of(claim: Claim) -> Claim:
    """CLP02 = 22: the payer takes back an earlier payment, with every amount negated."""
    return Claim(claim.claim_id, "22", -claim.charge, -claim.paid, -claim.patient_resp,
                 service_date=claim.service_date,
                 line_adjustments=tuple(Adjustment(a.group, a.reason, -a.amount) for a in claim.line_adjustments),
                 patient_last=claim.patient_last, patient_first=claim.patient_first, member_id=claim.member_id)


def synthetic_remittances(claims: int, *, seed: int = 835, per_transaction: int = 2000,
                          start: dt.date = dt.date(2026, 1, 5)) -> Iterator[Remittance]:
    """Deterministic remittances totalling `claims` claims over the payers, with denials, reversals and PLBs."""
    rng = random.Random(seed)
    made = 0
    batch = 0
    while made < claims:
        name, payer_id = PAYERS[batch % len(PAYERS)]
        paid_on = start + dt.timedelta(days=7 * (batch // len(PAYERS)))
        remittance = Remittance(name, payer_id, paid_on)
        for _ in range(min(per_transaction, claims - made)):
            made += 1
            claim = random_claim(rng, made, paid_on)
            if remittance.claims and rng.random() < 0.01 and remittance.claims[-1].status == "1":
                claim = reversal_of(remittance.claims[-1])
            remittance.claims.append(claim)
        if batch % 3 == 0:
            remittance.plb.append(ProviderAdjustment("WO", Decimal("25.00")))
        batch += 1
        yield remittance
