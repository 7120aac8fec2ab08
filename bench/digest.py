"""Digest benchmark: every practice's weekly digest built and rendered (HTML, text, subject), not sent.

    .venv/bin/python -m bench.digest [--practices N] [--profile]

For N practices (default 2,000) and again for N/10 (default 200), each in its own fresh PostgreSQL database:

1. The data of bench/evaluate.py (its generator, reused): 3 vendors per practice (billing, reminders,
   eligibility), 25 KPIs x 24 months (2024-11..2026-10), go-live 2025-11-01, a few percent of series turning
   bad in their last months. The config adds what the digest reads: an annual net collectible revenue and
   recipients per practice, a fee on the billing vendor, and a leader for each of the 4 regions.
2. Setup, not measured: alerts.evaluate.evaluate_practices once (so the digests have alerts to report).
3. Measured: for each practice, in a session of its own as the digest.weekly task has,
   digest.build.build_digest + digest.render.render_digest for week 2026-W48, as of Monday 2026-11-23 16:00 UTC
   (after every practice's 07:00). Wall clock.
4. Diagnostics: build and render apart, HTML sizes (Gmail clips past 102 KB), the regional roll-ups rendered from
   the practice digests already built; with --profile, the top functions under cProfile at N/10.

The last line is `RESULT practices=N seconds=S per_digest_ms=D scaling_2000_vs_200=K`, K = seconds(N) /
seconds(N/10). Goal: K <= 10.5 (issue 18).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.evaluate import (
    REGIONS,
    VENDOR_SLOTS,
    load_observations,
    practice_list,
    say,
    with_database,
    write_spc_catalog,
)

WEEK = "2026-W48"
NOW = dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.UTC)
EVALUATED_AT = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
GOAL_SCALING = 10.5  # issue 18 (was 11)
GMAIL_CLIP_BYTES = 102 * 1024


def write_config(directory: Path, count: int) -> None:
    """bench/evaluate.py's practices, plus revenue, recipients, a billing fee and regional leaders."""
    practices = practice_list(count)
    for index, practice in enumerate(practices):
        practice["annual_net_collectible"] = 300_000 + 25_000 * (index % 49)
        practice["digest_to"] = [f"owner@{practice['id']}.example", f"manager@{practice['id']}.example"]
        practice["vendors"][0]["fee_pct"] = 4.0 + 0.5 * (index % 9)
    regions = {region: {"digest_to": [f"lead@{region}.example"]} for region in REGIONS}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "practices.yaml").write_text(
        yaml.safe_dump({"regions": regions, "practices": practices}, sort_keys=False))
    (directory / "channels.yaml").write_text("dry_run: true\nurls: []\nroutes: []\n")
    write_spc_catalog(directory)  # every KPI row charted, as bench/evaluate.py judges every series


def build_and_render(config: Any, url: str) -> dict[str, Any]:
    """Every practice's digest, one session each; build and render timed apart."""
    from digest.build import build_digest
    from digest.render import render_digest
    from storage.db import session_scope

    built, build_seconds, render_seconds, sizes = [], 0.0, 0.0, []
    gc.collect()
    start = time.perf_counter()
    for practice in config.practices:
        began = time.perf_counter()
        with session_scope(url) as session:
            digest = build_digest(session, config, practice, WEEK, NOW)
        rendered_at = time.perf_counter()
        rendered = render_digest(digest)
        finished = time.perf_counter()
        build_seconds += rendered_at - began
        render_seconds += finished - rendered_at
        sizes.append(len(rendered.html.encode()))
        built.append(digest)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "build": build_seconds, "render": render_seconds, "sizes": sizes, "digests": built}


def render_regions(config: Any, digests: list[Any]) -> tuple[float, int, int]:
    """(seconds, regions, largest HTML in bytes) for the roll-ups, from practice digests already built."""
    from digest.region import region_practices, regions_of, roll_up
    from digest.render import render_region

    by_id = {digest.practice_id: digest for digest in digests}
    start = time.perf_counter()
    regions = regions_of(config)
    largest = 0
    for key, region in regions.items():
        practices = region_practices(config, key)
        rendered = render_region(roll_up(key, region, practices, WEEK, [by_id[p.id] for p in practices], NOW))
        largest = max(largest, len(rendered.html.encode()))
    return time.perf_counter() - start, len(regions), largest


def run_size(count: int, directory: Path) -> dict[str, Any]:
    from alerts.evaluate import evaluate_practices
    from config import load_config
    from storage.db import engine_for

    config_dir = directory / f"config-{count}"
    write_config(config_dir, count)
    config = load_config(config_dir)

    def measured(url: str) -> dict[str, Any]:
        loaded = load_observations(url, count, every_vendor=False)
        say(f"[{count:,} practices] loaded {loaded['rows']:,} observations with COPY in {loaded['load_seconds']:.2f} s")
        start = time.perf_counter()
        results = evaluate_practices(config, as_of=EVALUATED_AT.date(), now=EVALUATED_AT, database_url=url)
        changes = sum(len(result.changes) for result in results)
        say(f"  setup: evaluate_practices {time.perf_counter() - start:.2f} s ({changes:,} alert changes)")
        engine_for(url).dispose()
        run = build_and_render(config, url)
        sizes = sorted(run["sizes"])
        say(f"  build + render: {run['seconds']:.2f} s, {1000 * run['seconds'] / count:.2f} ms per digest "
            f"(build {run['build']:.2f} s, render {run['render']:.2f} s)")
        clipped = sum(size >= GMAIL_CLIP_BYTES for size in sizes)
        say(f"    HTML size: median {sizes[len(sizes) // 2] / 1024:.1f} KB, largest {sizes[-1] / 1024:.1f} KB "
            f"({clipped} at or past Gmail's {GMAIL_CLIP_BYTES // 1024} KB clip)")
        tones: dict[str, int] = {}
        for digest in run["digests"]:
            tones[digest.headline.tone] = tones.get(digest.headline.tone, 0) + 1
        say("    verdicts: " + ", ".join(f"{tone} {n:,}" for tone, n in sorted(tones.items())))
        region_seconds, regions, largest = render_regions(config, run["digests"])
        say(f"  regional roll-ups from the built digests (diagnostic): {regions} of {count // regions:,} practices "
            f"in {region_seconds:.2f} s, largest HTML {largest / 1024:.1f} KB")
        run["digests"] = None
        return run

    return dict(with_database(measured))


def profile(count: int, directory: Path, top: int = 15) -> None:
    from alerts.evaluate import evaluate_practices
    from config import load_config

    config = load_config(directory / f"config-{count}")

    def work(url: str) -> None:
        load_observations(url, count, every_vendor=False)
        evaluate_practices(config, as_of=EVALUATED_AT.date(), now=EVALUATED_AT, database_url=url)
        profiler = cProfile.Profile()
        profiler.enable()
        build_and_render(config, url)
        profiler.disable()
        stats = pstats.Stats(profiler)
        say(f"  build + render of {count:,} digests under cProfile, top {top} by cumulative time:")
        stats.sort_stats("cumulative").print_stats(top)

    with_database(work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.digest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--practices", type=int, default=2000,
                        help="practices in the big run (default 2,000); the scaling run uses a tenth of it")
    parser.add_argument("--profile", action="store_true", help="diagnostic: cProfile of the small run")
    args = parser.parse_args(argv)
    if args.practices < 10:
        parser.error("--practices must be at least 10")
    big, small = args.practices, args.practices // 10
    say(f"bench.digest: {big:,} and {small:,} practices x {len(VENDOR_SLOTS)} vendors, week {WEEK}, "
        f"as of {NOW.isoformat()}")

    with tempfile.TemporaryDirectory(prefix="vw-bench-digest-") as temp:
        directory = Path(temp)
        small_run = run_size(small, directory)
        big_run = run_size(big, directory)
        if args.profile:
            profile(small, directory)

    seconds = big_run["seconds"]
    scaling = seconds / small_run["seconds"]
    say(f"goal: scaling_2000_vs_200 <= {GOAL_SCALING:g} ({'met' if scaling <= GOAL_SCALING else 'NOT met'})")
    say(f"RESULT practices={big} seconds={seconds:.2f} per_digest_ms={1000 * seconds / big:.2f} "
        f"scaling_2000_vs_200={scaling:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
