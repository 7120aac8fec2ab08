"""Generate the bundled demo data: 18 months of vendor KPI feeds and one staff pulse survey.

Run `python -m worker.demo.generate`: it rewrites worker/demo/data/ and prints every file it wrote. One
random.Random(2026) drives all the noise, so the bundled files are reproducible byte for byte.

The stories, as evaluated at the newest period 2026-10 (thresholds from config/kpis.yaml and practices.yaml):
- oakridge-fm / acme-billing (go-live 2026-03): A/R days 52 -> 41 and clean claims 89 -> 96 after a
  two-month learning dip, but denial_rate only partly recovers: 8.2 in 2026-09 (warning, override warn 7),
  9.6 in 2026-10 (critical, override crit 9).
- oakridge-fm / brightcall (go-live 2026-01-05): no-shows fall from ~9% to ~6%, reminder reach ~63% -> ~93%.
- lakeside-peds / acme-billing (go-live 2026-05): A/R days stay ~38-42, but a charge-entry backlog shows up
  as charge_lag_days 3.4 in 2026-09 (warning) and 5.6 in 2026-10 (critical), and net_collection_rate 95.2
  in 2026-10 (warning).
- lakeside-peds / verifyfirst (go-live 2026-04): eligibility verified 98.5-99.5% except 97.4 in 2026-10
  (warning).
- riverbend-im / acme-billing (go-live 2025-12): steady improvement, no alerts; with the two above, the group
  of three practices Acme serves that the portfolio view compares (Oakridge's denial rate is the worst of 3).
- lakeside-peds / scribeline (go-live 2025-03, before the demo's first month): transcription turnaround ~14 hours,
  then from 2026-03 about 15: never near the 24-hour warning line, but eight months in a row above the centre
  line of its control chart (baseline window 2025-05..2026-04): a shift, an SPC warning, told in the digest.
  Drawn from its own random.Random(SEED + 1), after everything else, so no other bundled file changes.
- oakridge-fm pulse 2026-10-30: 11 of 14 staff answered; workload mean 3.2, 4 of 11 report burnout 3 or more;
  readiness about 20.5 of 30 (prepare); by role, front desk 6 and clinical 5 (both large enough to show).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SEED = 2026
# Fixed, not derived from the clock: regenerating later must reproduce the bundled files exactly, and the
# newest period must stay in the past for the demo's "today" (2026-11-23) so validation never sees a future
# period.
FIRST_PERIOD = "2025-05"
LAST_PERIOD = "2026-10"
DATA_DIR = Path(__file__).resolve().parent / "data"
FEED_HEADER = ("kpi", "period", "value", "segment")
SEGMENT = "all"

# Units from config/kpis.yaml; duplicated so the bundled data does not change when someone edits the catalog.
PERCENT_KPIS = frozenset(
    {
        "denial_rate",
        "clean_claim_rate",
        "net_collection_rate",
        "ar_over_60_pct",
        "ar_over_90_pct",
        "cost_to_collect_pct",
        "no_show_rate",
        "reminder_reach_rate",
        "eligibility_verified_rate",
    }
)
DOLLAR_KPIS = frozenset({"net_collections"})

# Collections dip when patient deductibles reset (January, February) and over the December holidays.
SEASONALITY = {1: 0.93, 2: 0.96, 12: 0.97}


@dataclass(frozen=True)
class Story:
    """One KPI over the 18 months: the practice's in-house level, then the vendor's month-by-month path."""

    kpi: str
    in_house: float
    noise: float
    # Levels for go-live month 0, 1, 2, ...; the last level holds for later months.
    vendor_path: tuple[float, ...]
    # Vendor processes run steadier than the in-house ones they replace; None keeps `noise`.
    vendor_noise: float | None = None
    # Exact values the demo's alerts depend on, by period; noise never touches them.
    pins: Mapping[str, float] = field(default_factory=dict)
    seasonal: bool = False


@dataclass(frozen=True)
class VendorFeed:
    """A practice/vendor pair as in config/practices.yaml, with the month its go-live falls in."""

    practice_id: str
    vendor_id: str
    go_live_period: str
    stories: tuple[Story, ...]


OAKRIDGE_ACME = VendorFeed(
    "oakridge-fm",
    "acme-billing",
    "2026-03",
    (
        Story("days_in_ar", 52.0, 1.5, (54.5, 53.0, 49.5, 47.0, 45.0, 43.4, 42.2, 41.3), vendor_noise=0.8),
        Story(
            "denial_rate",
            11.0,
            0.6,
            (12.4, 11.6, 9.9, 8.9, 8.3, 7.9, 8.2, 9.6),
            vendor_noise=0.3,
            pins={"2026-09": 8.2, "2026-10": 9.6},
        ),
        Story(
            "clean_claim_rate", 89.0, 0.8, (87.6, 88.9, 91.4, 93.2, 94.5, 95.4, 95.9, 96.0), vendor_noise=0.4
        ),
        Story(
            "net_collection_rate",
            93.6,
            0.5,
            (92.7, 93.4, 94.6, 95.4, 96.4, 96.7, 96.9, 96.8),
            vendor_noise=0.3,
        ),
        Story(
            "ar_over_60_pct", 24.5, 1.2, (27.0, 26.5, 24.0, 22.0, 20.5, 19.4, 18.8, 18.9), vendor_noise=0.6
        ),
        Story(
            "ar_over_90_pct", 13.6, 0.8, (14.8, 14.4, 13.6, 12.8, 11.9, 11.1, 10.6, 10.4), vendor_noise=0.4
        ),
        Story("charge_lag_days", 3.9, 0.4, (2.8, 2.1, 1.6, 1.4, 1.3, 1.2, 1.2, 1.3), vendor_noise=0.2),
        Story(
            "payment_posting_lag_days", 3.2, 0.4, (2.4, 1.7, 1.3, 1.1, 1.0, 1.0, 0.9, 1.0), vendor_noise=0.2
        ),
        # Turnaround slips in 2026-10 because the denial spike floods the rework queue.
        Story(
            "denial_turnaround_days",
            21.0,
            2.0,
            (19.5, 15.0, 11.5, 9.8, 9.0, 8.6, 8.9, 10.8),
            vendor_noise=1.0,
        ),
        # Go-live months pay the vendor fee while the in-house biller is still on payroll.
        Story("cost_to_collect_pct", 9.6, 0.3, (9.4, 8.3, 7.6, 7.4, 7.3, 7.2, 7.2, 7.3), vendor_noise=0.2),
        Story(
            "net_collections",
            500000 / 12,
            1300.0,
            (38900.0, 40600.0, 42300.0, 43000.0, 43400.0, 43600.0, 43900.0, 43100.0),
            seasonal=True,
        ),
    ),
)

OAKRIDGE_BRIGHTCALL = VendorFeed(
    "oakridge-fm",
    "brightcall",
    "2026-01",
    (
        # Go-live on 2026-01-05, so January is already mostly vendor-run: a transition level, then the new normal.
        Story("no_show_rate", 9.1, 0.5, (7.4, 6.6, 6.3, 6.1, 6.0, 5.9, 6.1, 6.0, 5.8, 6.0), vendor_noise=0.3),
        Story(
            "reminder_reach_rate",
            63.0,
            2.5,
            (84.0, 90.5, 92.0, 92.6, 93.1, 92.8, 93.4, 93.0, 93.6, 93.2),
            vendor_noise=1.0,
        ),
    ),
)

LAKESIDE_ACME = VendorFeed(
    "lakeside-peds",
    "acme-billing",
    "2026-05",
    (
        Story("days_in_ar", 39.5, 1.3, (41.8, 41.0, 39.4, 38.6, 39.0, 40.6), vendor_noise=0.8),
        Story("denial_rate", 7.1, 0.5, (7.4, 7.0, 6.2, 5.8, 5.9, 6.1), vendor_noise=0.3),
        Story("clean_claim_rate", 93.2, 0.7, (93.6, 94.6, 95.8, 96.3, 96.4, 96.2), vendor_noise=0.4),
        # Charges entered late are collected late: the backlog drags the collection rate under 96 in 2026-10.
        Story(
            "net_collection_rate",
            96.9,
            0.3,
            (96.5, 96.7, 96.9, 96.7, 96.4, 95.2),
            vendor_noise=0.2,
            pins={"2026-09": 96.4, "2026-10": 95.2},
        ),
        Story("ar_over_60_pct", 18.0, 1.0, (19.5, 19.0, 17.6, 16.9, 16.7, 16.8), vendor_noise=0.5),
        Story("ar_over_90_pct", 9.8, 0.7, (10.6, 10.2, 9.4, 8.9, 8.7, 8.8), vendor_noise=0.4),
        # The vendor's coding backlog: a warning in 2026-09, critical in 2026-10.
        Story(
            "charge_lag_days",
            2.2,
            0.3,
            (2.6, 2.3, 1.9, 2.0, 3.4, 5.6),
            vendor_noise=0.2,
            pins={"2026-09": 3.4, "2026-10": 5.6},
        ),
        Story("payment_posting_lag_days", 1.6, 0.3, (1.9, 1.5, 1.2, 1.1, 1.1, 1.2), vendor_noise=0.2),
        Story("denial_turnaround_days", 12.0, 1.5, (12.5, 11.0, 9.0, 8.2, 8.0, 8.6), vendor_noise=0.8),
        Story("cost_to_collect_pct", 8.6, 0.3, (8.9, 7.6, 7.0, 6.9, 6.9, 7.0), vendor_noise=0.2),
        Story(
            "net_collections",
            820000 / 12,
            2000.0,
            (66500.0, 68000.0, 69600.0, 70200.0, 69800.0, 67400.0),
            seasonal=True,
        ),
    ),
)

LAKESIDE_VERIFYFIRST = VendorFeed(
    "lakeside-peds",
    "verifyfirst",
    "2026-04",
    (
        Story(
            "eligibility_verified_rate",
            93.5,
            0.8,
            (98.8, 99.0, 99.1, 99.2, 99.0, 99.1, 97.4),
            vendor_noise=0.3,
            pins={"2026-10": 97.4},
        ),
        # Coverage surprises at check-in per 100 visits; they creep back up with the 2026-10 verification gap.
        Story("check_in_surprises", 4.6, 0.5, (2.0, 1.4, 1.2, 1.1, 1.2, 1.1, 2.3), vendor_noise=0.2),
    ),
)

# The third practice of the midwest group, on Acme RCM since 2025-12 and doing well: the comparison across the
# practices Acme serves has a yardstick (the portfolio view, issue 17). No noise, so no rule can fire by chance.
RIVERBEND_ACME = VendorFeed(
    "riverbend-im",
    "acme-billing",
    "2025-12",
    (
        Story("days_in_ar", 44.0, 1.2, (43.0, 40.5, 38.0, 36.0, 34.5, 33.8), vendor_noise=0.0),
        Story("denial_rate", 8.4, 0.4, (8.0, 6.9, 5.8, 5.0, 4.6, 4.4), vendor_noise=0.0),
        Story("clean_claim_rate", 91.0, 0.6, (91.5, 93.8, 95.6, 96.8, 97.2, 97.4), vendor_noise=0.0),
        Story("net_collection_rate", 95.0, 0.3, (95.2, 96.0, 96.8, 97.3, 97.6, 97.8), vendor_noise=0.0),
        Story("ar_over_60_pct", 22.0, 0.8, (21.0, 19.5, 17.8, 16.4, 15.6, 15.2), vendor_noise=0.0),
        Story("ar_over_90_pct", 12.0, 0.6, (11.6, 10.4, 9.2, 8.3, 7.8, 7.5), vendor_noise=0.0),
        Story("charge_lag_days", 3.0, 0.3, (2.4, 1.8, 1.4, 1.2, 1.1, 1.0), vendor_noise=0.0),
        Story("payment_posting_lag_days", 2.6, 0.3, (2.0, 1.5, 1.2, 1.0, 0.9, 0.9), vendor_noise=0.0),
        Story("denial_turnaround_days", 16.0, 1.2, (14.0, 11.0, 9.0, 8.0, 7.5, 7.2), vendor_noise=0.0),
        Story("cost_to_collect_pct", 9.2, 0.3, (8.8, 7.6, 6.9, 6.6, 6.5, 6.4), vendor_noise=0.0),
        Story("net_collections", 640000 / 12, 1500.0, (52000.0, 53500.0, 54600.0, 55200.0, 55400.0, 55500.0),
              vendor_noise=0.0),
    ),
)

# A shift a threshold never sees (issue 18): pinned, so its signal does not hang on the noise of the window.
LAKESIDE_SCRIBELINE = VendorFeed(
    "lakeside-peds",
    "scribeline",
    "2025-03",
    (
        Story(
            "transcription_turnaround_hours",
            20.0,
            1.2,
            (14.0,),
            pins={"2026-03": 14.9, "2026-04": 15.1, "2026-05": 14.8, "2026-06": 15.0, "2026-07": 15.2,
                  "2026-08": 14.9, "2026-09": 15.0, "2026-10": 15.1},
        ),
    ),
)

FEEDS = (OAKRIDGE_ACME, OAKRIDGE_BRIGHTCALL, LAKESIDE_ACME, LAKESIDE_VERIFYFIRST)
# Written after the pulse survey, from a random stream of their own, so the files above stay byte for byte.
GROUP_FEEDS = (RIVERBEND_ACME,)
GROUP_SEED = SEED + 17
LATER_FEEDS = (LAKESIDE_SCRIBELINE,)  # each from its own generator, so adding one changes no earlier file

# The pulse survey, as a Google Forms export. Question texts mirror config/surveys.yaml, in order, because the
# product matches columns by that text.
PULSE_PRACTICE = "oakridge-fm"
PULSE_FILE = "pulse-2026-10-30.csv"
PULSE_STAFF = 14
PULSE_EMAIL_DOMAIN = "oakridge.example"
# Google Forms prints the form's zone abbreviation; late October in America/Chicago is still daylight time.
PULSE_TIMEZONE = "CDT"
PULSE_DAYS = (26, 26, 26, 27, 27, 28, 28, 28, 29, 30, 30)
FREE_TEXT_QUESTION = "Anything else you want leadership to know?"
# Each question's answers, best first; shuffling who gives which keeps the means and shares exact.
PULSE_ANSWERS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("My workload this week was manageable.", (4, 4, 4, 4, 3, 3, 3, 3, 3, 2, 2)),
    ("I know what is expected of me since the vendor started.", (5, 4, 4, 4, 4, 4, 3, 3, 3, 3, 2)),
    ("Leadership keeps us informed about the outsourcing changes.", (5, 4, 4, 4, 3, 3, 3, 3, 3, 3, 2)),
    ("I am confident the vendor is doing its part well.", (4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2)),
    (
        "Over the past two weeks, how drained has work left you? (1 = not at all, 2 = a little, 3 = most days, "
        "4 = nearly every day, 5 = completely)",
        (1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 4),
    ),
    (
        "How likely are you to recommend this practice as a place to work? (0-10)",
        (10, 10, 9, 9, 8, 8, 7, 7, 6, 5, 3),
    ),
    # The readiness matrix (seed 000), exported as answer labels the way a multiple-choice question is: the six
    # category means sum to about 20.5, "prepare before proceeding".
    ("I can raise worries about the outsourcing change openly, and leadership listens.",
     (5, 4, 4, 4, 4, 3, 3, 3, 3, 3, 2)),
    ("Leaders give the same message about the change, whoever I ask.", (5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2)),
    ("I know who decides when a problem involves both the vendor and our own team.",
     (4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2)),
    ("The way we really do this work is written down, exceptions included.", (4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2)),
    ("We have room to adjust while the new workflow settles, and mistakes are treated as learning.",
     (5, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3)),
    ("There is a regular, visible way to give feedback on how the change is going.",
     (5, 5, 4, 4, 4, 4, 4, 4, 3, 3, 3)),
)  # fmt: skip
LABELLED_FROM = 6  # answers from this question on are written as the agree scale's labels
AGREE_LABELS = {1: "Strongly disagree", 2: "Disagree", 3: "Neither agree nor disagree", 4: "Agree", 5: "Strongly agree"}
ROLE_QUESTION = "Which best describes your role?"
ROLES = ("Front desk / scheduling",) * 6 + ("Clinical",) * 5
# Commas, double quotes and a line break on purpose: the parser must survive what staff actually type.
PULSE_COMMENTS = (
    "Acme answers the phone, but denied claims still land on the front desk to fix, and nobody owns them.",
    'When they say "the vendor handles it", what does that mean for a claim that bounced twice?',
    "Mondays are rough.\nWe need a second person at check-in until the new workflow settles.",
    "The Friday huddles help, please keep them.",
    'BrightCall cut the no-shows; the schedule feels "real" again.',
    "",
    "",
    "",
    "",
    "",
    "",
)


def list_periods(first: str = FIRST_PERIOD, last: str = LAST_PERIOD) -> list[str]:
    """Every month from first to last inclusive, as YYYY-MM."""
    year, month = (int(part) for part in first.split("-"))
    periods = []
    while (period := f"{year:04d}-{month:02d}") <= last:
        periods.append(period)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return periods


def count_months_live(period: str, go_live_period: str) -> int:
    """Months since the go-live month (0 in it, negative before it: the in-house baseline)."""
    year, month = (int(part) for part in period.split("-"))
    live_year, live_month = (int(part) for part in go_live_period.split("-"))
    return (year - live_year) * 12 + (month - live_month)


def clamp_value(kpi: str, value: float) -> float:
    """Keep noise from pushing a value outside what validation accepts (percent 0-100, nothing negative)."""
    upper = 100.0 if kpi in PERCENT_KPIS else float("inf")
    return min(max(value, 0.0), upper)


def draw_value(story: Story, period: str, months_live: int, rng: random.Random) -> float:
    noise = story.noise if months_live < 0 or story.vendor_noise is None else story.vendor_noise
    # Drawn even for pinned months so that adding a pin never shifts the noise of any other value.
    wobble = rng.triangular(-noise, noise, 0.0)
    if period in story.pins:
        return story.pins[period]
    path = story.vendor_path
    level = story.in_house if months_live < 0 else path[min(months_live, len(path) - 1)]
    if story.seasonal:
        level *= SEASONALITY.get(int(period[5:]), 1.0)
    return clamp_value(story.kpi, level + wobble)


def format_value(kpi: str, value: float) -> str:
    return str(round(value)) if kpi in DOLLAR_KPIS else f"{value:.1f}"


def build_feed_rows(feed: VendorFeed, period: str, rng: random.Random) -> list[tuple[str, str, str, str]]:
    months_live = count_months_live(period, feed.go_live_period)
    return [
        (story.kpi, period, format_value(story.kpi, draw_value(story, period, months_live, rng)), SEGMENT)
        for story in feed.stories
    ]


def feed_path(output_dir: Path, feed: VendorFeed, period: str) -> Path:
    folder = output_dir / feed.practice_id / feed.vendor_id
    return folder / f"{feed.practice_id}-{feed.vendor_id}-{period}.csv"


def write_csv(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], *, quote_all: bool = False
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        # Feeds use LF like a vendor's Linux export; the Google Forms export keeps the csv module's CRLF and
        # quotes every field, as Google's download appears to (a parser must accept minimal quoting too).
        writer = csv.writer(
            handle,
            quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
            lineterminator="\r\n" if quote_all else "\n",
        )
        writer.writerow(header)
        writer.writerows(rows)


def write_feeds(output_dir: Path, rng: random.Random, feeds: Sequence[VendorFeed] = FEEDS
                ) -> list[tuple[Path, int]]:
    written = []
    for feed in feeds:
        for period in list_periods():
            rows = build_feed_rows(feed, period, rng)
            path = feed_path(output_dir, feed, period)
            write_csv(path, FEED_HEADER, rows)
            written.append((path, len(rows)))
    return written


def format_google_timestamp(day: int, seconds: int) -> str:
    """Google Forms' export format, e.g. '2026/10/28 9:14:03 AM CDT' (12-hour clock, unpadded hour)."""
    hour, rest = divmod(seconds, 3600)
    minute, second = divmod(rest, 60)
    suffix = "AM" if hour < 12 else "PM"
    return f"2026/10/{day:02d} {(hour - 1) % 12 + 1}:{minute:02d}:{second:02d} {suffix} {PULSE_TIMEZONE}"


def assign_answers(strain: Sequence[float], best_first: Sequence[int], rng: random.Random) -> list[int]:
    """Give the best answers to the least strained respondents, loosely, so that items correlate."""
    order = sorted(range(len(strain)), key=lambda person: strain[person] + rng.uniform(-0.35, 0.35))
    answers = [0] * len(strain)
    for rank, person in enumerate(order):
        answers[person] = best_first[rank]
    return answers


def build_pulse_rows(rng: random.Random) -> list[list[str]]:
    respondents = len(PULSE_DAYS)
    # Office hours, 7:00 to 18:00, sorted because Google lists responses in submission order.
    submitted = sorted((day, rng.randint(7 * 3600, 18 * 3600)) for day in PULSE_DAYS)
    emails = [
        f"staff{number:02d}@{PULSE_EMAIL_DOMAIN}"
        for number in rng.sample(range(1, PULSE_STAFF + 1), respondents)
    ]
    strain = [rng.random() for _ in range(respondents)]
    columns = [assign_answers(strain, best_first, rng) for _, best_first in PULSE_ANSWERS]
    roles = list(ROLES)
    rng.shuffle(roles)
    comments = list(PULSE_COMMENTS)
    rng.shuffle(comments)
    return [
        [
            format_google_timestamp(day, seconds),
            emails[person],
            *(format_answer(number, column[person]) for number, column in enumerate(columns)),
            roles[person],
            comments[person],
        ]
        for person, (day, seconds) in enumerate(submitted)
    ]


def format_answer(question_number: int, answer: int) -> str:
    return AGREE_LABELS[answer] if question_number >= LABELLED_FROM else str(answer)


def write_pulse(output_dir: Path, rng: random.Random) -> tuple[Path, int]:
    header = ["Timestamp", "Email Address", *(text for text, _ in PULSE_ANSWERS), ROLE_QUESTION, FREE_TEXT_QUESTION]
    rows = build_pulse_rows(rng)
    path = output_dir / PULSE_PRACTICE / PULSE_FILE
    write_csv(path, header, rows, quote_all=True)
    return path, len(rows)


def remove_stale_files(output_dir: Path, keep: set[Path]) -> list[Path]:
    """Delete earlier demo files this run did not write; only our own file names, never anything else."""
    candidates = [
        path
        for feed in (*FEEDS, *GROUP_FEEDS, *LATER_FEEDS)
        for path in (output_dir / feed.practice_id / feed.vendor_id).glob(
            f"{feed.practice_id}-{feed.vendor_id}-*.csv"
        )
    ]
    candidates += (output_dir / PULSE_PRACTICE).glob("pulse-*.csv")
    stale = sorted(path for path in candidates if path not in keep)
    for path in stale:
        path.unlink()
    return stale


def describe_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(output_dir: Path | None = None) -> list[Path]:
    """Write the demo data into output_dir (default: worker/demo/data/ beside this file); return the paths."""
    target = (output_dir or DATA_DIR).resolve()
    rng = random.Random(SEED)
    written = [*write_feeds(target, rng), write_pulse(target, rng),
               *write_feeds(target, random.Random(GROUP_SEED), GROUP_FEEDS)]
    written += write_feeds(target, random.Random(SEED + 1), LATER_FEEDS)
    paths = [path for path, _ in written]
    for path in remove_stale_files(target, set(paths)):
        print(f"removed stale {describe_path(path)}")
    for path, rows in written:
        print(f"wrote {describe_path(path)} ({rows} rows)")
    print(f"{len(written)} files, {sum(rows for _, rows in written)} data rows in {describe_path(target)}")
    return paths


if __name__ == "__main__":
    main()
