"""835 remittance benchmark (issue 16): the whole ingest of a 200,000-claim file against pyx12 only parsing it.

    .venv/bin/python -m bench.remits [--claims N]

1. Writes, deterministically (remits.synthetic, fixed seed), one 835 of exactly N claims: 4 payers, one ST/SE of
   2,000 claims per payer and week, about 10% denials (8 CARCs), about 1% reversals (CLP02 = 22) of the claim
   before, a PLB in every third transaction; streamed to a temp file, never held whole.
2. A fresh PostgreSQL database (tests.support.services), migrated (storage.db.upgrade).
3. Measured: `feeds.ingest.ingest_path(file, config, practice=...)` (ISA header -> remits: fingerprint, oxedi
   parse, aggregate, HMAC of every claim id, store the months and the digests, commit) in a child process started
   with multiprocessing's `spawn` context; wall clock around the call; the child reports its own peak RSS
   (ru_maxrss). It must return `accepted` with the claims counted.
4. Yardstick: pyx12 4.0 walking the same file with `X12ContextReader.iter_segments` (its map-driven parse, no
   output written), in another spawned child, same run.

The last line is `RESULT claims=N seconds=S pyx12_seconds=P ratio_vs_pyx12=R peak_rss_mb=M` (R = P / S).
Goal: R >= 20 and M <= 300.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

GOAL_RATIO = 20.0
GOAL_RSS_MB = 300
PRACTICE = "oakridge-fm"
KEY = "bench-remit-key-not-a-secret"


def write_file(path: Path, claims: int) -> None:
    from remits.synthetic import synthetic_remittances, write_835

    with path.open("wb") as out:
        write_835(out, synthetic_remittances(claims))


def ingest_in_child(path: str, database_url: str) -> dict[str, Any]:
    """Runs in a spawned process: only the ingest's own memory counts."""
    os.environ["VENDORWATCH_REMIT_KEY"] = KEY
    from config import BUNDLED_DIR, load_config
    from intake.ingest import ingest_path

    config = load_config(BUNDLED_DIR)
    started = time.perf_counter()
    result = ingest_path(Path(path), config, source="bench", practice=PRACTICE, database_url=database_url)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "status": result.status, "claims": result.rows,
            "problems": [str(p) for p in result.problems[:5]],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def pyx12_in_child(path: str) -> dict[str, Any]:
    import pyx12.error_handler
    import pyx12.params
    import pyx12.x12context

    started = time.perf_counter()
    claims = 0
    with open(path) as handle:
        reader = pyx12.x12context.X12ContextReader(pyx12.params.params(), pyx12.error_handler.errh_null(), handle)
        for node in reader.iter_segments("2100"):
            claims += node.id == "2100"
    return {"seconds": time.perf_counter() - started, "claims": claims}


def in_child(function: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result: dict[str, Any] = pool.submit(function, *args).result()
        return result


def stored_claims(database_url: str) -> int:
    from sqlalchemy import func, select

    from storage.db import session_scope
    from storage.models import RemitMonth

    with session_scope(database_url) as session:
        return int(session.scalar(select(func.sum(RemitMonth.claims))) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--claims", type=int, default=200_000)
    args = parser.parse_args(argv)
    from storage.db import engine_for, upgrade
    from tests.support.services import drop_postgres_database, fresh_postgres_database

    with tempfile.TemporaryDirectory(prefix="bench-remits-") as folder:
        path = Path(folder) / "remits.835"
        started = time.perf_counter()
        write_file(path, args.claims)
        print(f"wrote {path.stat().st_size / 1e6:.1f} MB, {args.claims:,} claims in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        database_url = fresh_postgres_database("vw_bench_remits")
        try:
            upgrade(database_url)
            engine_for(database_url).dispose()
            ours = in_child(ingest_in_child, str(path), database_url)
            print(f"ingest: {ours}", flush=True)
            if ours["status"] != "accepted":
                print("the ingest did not accept the file", file=sys.stderr)
                return 1
            print(f"stored claims (all months): {stored_claims(database_url):,}", flush=True)
        finally:
            engine_for(database_url).dispose()
            drop_postgres_database(database_url)
        theirs = in_child(pyx12_in_child, str(path))
        print(f"pyx12: {theirs}", flush=True)
    ratio = theirs["seconds"] / ours["seconds"]
    met = ratio >= GOAL_RATIO and ours["peak_rss_mb"] <= GOAL_RSS_MB
    print(f"goal: ratio >= {GOAL_RATIO:g} and peak RSS <= {GOAL_RSS_MB} MB: {'met' if met else 'NOT met'}")
    print(f"RESULT claims={args.claims} seconds={ours['seconds']:.2f} pyx12_seconds={theirs['seconds']:.2f} "
          f"ratio_vs_pyx12={ratio:.1f} peak_rss_mb={ours['peak_rss_mb']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
