"""Generate the demo's synthetic 835 remittances (issue 16): oakridge-fm's payers, one file per month of payment.

Run `python -m worker.demo.remits` after `python -m worker.demo.generate`: each month's claim payments add up to
the net collections Acme reports for that month (so that check matches), and the first-pass denial rate is as
below. The story, for the demo's newest month 2026-10: Acme reports 9.6%, the remittances show 12.5% (25 of 200
claims denied): "reported figure disagrees with remittances" (a warning: 2.9 points, over 1.5, not over 3). In
2026-01 (before go-live) denials were mostly coding and missing information; in 2026-10 authorization leads.
Every name and id is invented; the files are reproducible byte for byte.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

from remits.synthetic import Adjustment, Claim, Remittance, render_835

DATA_DIR = Path(__file__).resolve().parent / "data"
PRACTICE, VENDOR = "oakridge-fm", "acme-billing"
CLAIMS = 200
# month -> (denied claims of CLAIMS, the CARCs their denials draw from)
MONTHS = {
    "2026-01": (22, ("97", "16", "16", "4", "27")),
    "2026-08": (16, ("197", "16", "97", "27")),
    "2026-09": (16, ("197", "16", "97", "27")),
    "2026-10": (25, ("197", "197", "15", "27", "16")),
}
PAYERS = (("Northwind Health", "NWH01"), ("Bluebird Mutual", "BBM02"))
CENT = Decimal("0.01")


def reported_net_collections(month: str) -> Decimal:
    path = DATA_DIR / PRACTICE / VENDOR / f"{PRACTICE}-{VENDOR}-{month}.csv"
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["kpi"] == "net_collections":
                return Decimal(row["value"])
    raise LookupError(f"no net_collections in {path}")


def month_remittances(month: str, rng: random.Random) -> list[Remittance]:
    denied, carcs = MONTHS[month]
    paid_on = dt.date.fromisoformat(f"{month}-15")
    net = reported_net_collections(month)
    denials = set(range(0, CLAIMS, CLAIMS // denied)[:denied])
    share = (net / (CLAIMS - denied)).quantize(CENT)
    last_paid = max(set(range(CLAIMS)) - denials)
    remittances = [Remittance(name, payer_id, paid_on) for name, payer_id in PAYERS]
    for number in range(CLAIMS):
        claim_id = f"DEMO{month.replace('-', '')}{number:04d}"
        served = paid_on - dt.timedelta(days=rng.randrange(14, 45))
        if number in denials:
            charge = Decimal(rng.randrange(9000, 30000)) / 100
            claim = Claim(claim_id, "4", charge, Decimal(0), service_date=served,
                          line_adjustments=(Adjustment("CO", rng.choice(carcs), charge),))
        else:
            # the last paid claim takes the rounding, so the month's payments are the reported net collections
            paid = net - share * (CLAIMS - denied - 1) if number == last_paid else share
            charge = (paid / Decimal("0.7")).quantize(CENT)
            claim = Claim(claim_id, "1", charge, paid, service_date=served,
                          line_adjustments=(Adjustment("CO", "45", charge - paid),))
        remittances[0 if rng.random() < 0.6 else 1].claims.append(claim)
    return remittances


def main(output_dir: Path | None = None) -> list[Path]:
    target = (output_dir or DATA_DIR) / PRACTICE / "remits"
    target.mkdir(parents=True, exist_ok=True)
    rng = random.Random(835)
    written = []
    for month in MONTHS:
        path = target / f"era-{month}.835"
        path.write_bytes(render_835(month_remittances(month, rng)))
        written.append(path)
        print(f"wrote {path} ({CLAIMS} claims)")
    return written


if __name__ == "__main__":
    main()
