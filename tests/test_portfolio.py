"""The portfolio view, part one: a vendor compared across the practices it serves (issue 17 item 1).

The pure figures against values worked out by hand; then the real path: feeds for three practices sharing a
vendor ingested and evaluated on PostgreSQL, each practice's digest line (counts only, unless its group shares
names), the regional roll-up's block per shared vendor with names, vendors of one service side by side, and
`vendorwatch vendors compare`."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from config import Config, load_config
from digest.build import build_digest
from digest.model import Digest
from digest.portfolio import (
    compare,
    field_of,
    matters,
    peer_line,
    service_comparison,
    shared_vendors,
    within,
    worst_standing,
)
from digest.region import build_region_digest
from digest.render import render_digest, render_region
from storage.db import session_scope
from tests.test_digest_seed import AFTER_SEND, GO_LIVE, PRACTICES, REGIONS, WEEK, evaluate_at, ingest_at, write_config
from tests.test_escaping import DIGEST_ELEMENTS, HOSTILE, html_problems, one_line, read_html, text_problems

# -- pure figures, by hand -------------------------------------------------------------------------------------
# Denial rate (lower is better) at five practices: sorted 3.0, 4.0, 4.0, 6.5, 9.0.
DENIALS = {"a": 4.0, "b": 9.0, "c": 3.0, "d": 6.5, "e": 4.0}


def test_median_best_worst_and_competition_ranks_follow_lower_is_better() -> None:
    field = field_of("acme", "denial_rate", "2026-10", "lower", DENIALS, "Initial denial rate", "%")

    assert (field.median, field.best, field.worst, field.practices) == (4.0, 3.0, 9.0, 5)
    # c best; a and e tie on 4.0 and share rank 2; d is 4th (three practices better); b last.
    assert {pid: field.rank(value) for pid, value in DENIALS.items()} == {"c": 1, "a": 2, "e": 2, "d": 4, "b": 5}
    assert (field.better_than(6.5), field.worse_than(6.5)) == (3, 1)
    assert (field.better_than(4.0), field.worse_than(4.0)) == (1, 2)


def test_higher_is_better_turns_the_order_round() -> None:
    # Net collection rate at four practices: 97.5 best, median (96.0 + 95.0) / 2 = 95.5, 93.0 worst.
    field = field_of("acme", "net_collection_rate", "2026-10", "higher", {"a": 95.0, "b": 97.5, "c": 93.0,
                                                                         "d": 96.0})
    assert (field.median, field.best, field.worst) == (95.5, 97.5, 93.0)
    assert [field.rank(v) for v in (97.5, 96.0, 95.0, 93.0)] == [1, 2, 3, 4]
    comparison = compare(field, "Acme RCM", {"a": "Alder", "b": "Birch", "c": "Cedar", "d": "Dogwood"})
    assert [(s.practice_name, s.rank) for s in comparison.standings] == [
        ("Birch", 1), ("Dogwood", 2), ("Alder", 3), ("Cedar", 4)]
    assert [s.practice_name for s in comparison.leaders] == ["Birch"]
    assert [s.practice_name for s in comparison.laggards] == ["Cedar"]


def test_a_practice_line_counts_the_others_and_matters_only_when_behind_most_of_them() -> None:
    field = field_of("acme", "denial_rate", "2026-10", "lower", DENIALS, "Initial denial rate", "%")

    worst = peer_line(field, "b", "Acme RCM")
    assert worst is not None
    # b (9.0) is worse than at 4 of the 5 practices, better than none: all 4 others are better.
    assert (worst.better_elsewhere, worst.worse_elsewhere, worst.practices, worst.share_behind) == (4, 0, 5, 1.0)
    assert matters(worst)
    middle = peer_line(field, "d", "Acme RCM")  # 3 of the 4 others better: more than half
    assert middle is not None and (middle.better_elsewhere, matters(middle)) == (3, True)
    tied = peer_line(field, "a", "Acme RCM")  # only c is better: 1 of 4
    assert tied is not None and (tied.better_elsewhere, matters(tied)) == (1, False)
    assert peer_line(field, "zz", "Acme RCM") is None  # not served
    alone = field_of("acme", "denial_rate", "2026-10", "lower", {"a": 4.0})
    assert peer_line(alone, "a", "Acme RCM") is None  # nobody to compare with


def test_the_digest_line_is_the_kpi_furthest_behind_then_furthest_from_the_median() -> None:
    denial = field_of("acme", "denial_rate", "2026-10", "lower", {"x": 9.6, "y": 6.1, "z": 4.4})
    ar90 = field_of("acme", "ar_over_90_pct", "2026-10", "lower", {"x": 10.4, "y": 9.0, "z": 7.5})
    clean = field_of("acme", "clean_claim_rate", "2026-10", "higher", {"x": 96.0, "y": 96.2, "z": 95.0})
    lines = [line for f in (denial, ar90, clean) if (line := peer_line(f, "x", "Acme RCM")) is not None]

    # Both denial and A/R over 90 are worse than at 2 of the 3; the denial rate is further from its median:
    # (9.6 - 6.1) / 6.1 = 0.57 against (10.4 - 9.0) / 9.0 = 0.16. Clean claims: 1 of 2 others better, no line.
    chosen = worst_standing(lines)
    assert chosen is not None and chosen.kpi == "denial_rate"
    assert worst_standing([line for line in lines if line.kpi == "clean_claim_rate"]) is None


def test_a_region_sees_only_its_own_practices_and_only_vendors_shared_there() -> None:
    fields = [
        field_of("acme", "denial_rate", "2026-09", "lower", {"a": 5.0, "b": 7.0, "c": 6.0}),
        field_of("acme", "denial_rate", "2026-10", "lower", {"a": 4.0, "b": 8.0, "c": 6.0, "far": 1.0}),
        field_of("solo", "denial_rate", "2026-10", "lower", {"a": 4.0, "far": 5.0}),
    ]
    names = {"a": "Alder", "b": "Birch", "c": "Cedar"}
    vendors = {"acme": ("Acme RCM", "billing"), "solo": ("Solo Billing", "billing")}

    [block] = shared_vendors(fields, {"a", "b", "c"}, names, vendors)  # solo serves one practice here
    [comparison] = block.comparisons
    assert (block.vendor_name, block.practices, comparison.period) == ("Acme RCM", 3, "2026-10")  # newest month
    assert (comparison.median, comparison.best, comparison.worst) == (6.0, 4.0, 8.0)  # "far" left out
    assert [s.practice_name for s in comparison.standings] == ["Alder", "Cedar", "Birch"]
    assert within(fields[1], {"a", "far"}).values == {"a": 4.0, "far": 1.0}


def test_vendors_of_one_service_side_by_side_best_median_first() -> None:
    acme = field_of("acme", "denial_rate", "2026-10", "lower", {"a": 4.0, "b": 8.0, "c": 6.0})
    summit = field_of("summit", "denial_rate", "2026-10", "lower", {"d": 5.0, "e": 5.5})
    row = service_comparison("billing", [("Acme RCM", acme), ("Summit RCM", summit)])

    # Summit's median (5.0 + 5.5) / 2 = 5.25 beats Acme's 6.0.
    assert row is not None
    assert [(c.vendor_name, c.median, c.practices) for c in row.columns] == [("Summit RCM", 5.25, 2),
                                                                             ("Acme RCM", 6.0, 3)]
    assert service_comparison("billing", [("Acme RCM", acme)]) is None


# -- the real path ------------------------------------------------------------------------------------------------
# Three practices on ClaimRight, denial rates in 2026-10: Maple 10.4 (the seed's critical), Pine 5.0, Aspen 4.0.
OTHERS = {"pine-family": 5.0, "aspen-health": 4.0}


def group_practices(share_names: bool = False, pine_name: str = "Pine Family Practice"
                    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Maple and Pine in region mountain, Aspen in front-range, all three on ClaimRight."""
    practices = copy.deepcopy(PRACTICES)
    practices[1]["name"] = pine_name
    practices[1]["vendors"][0]["go_live"] = GO_LIVE  # type: ignore[index]
    aspen = copy.deepcopy(practices[1])
    aspen.update(id="aspen-health", name="Aspen Health", region="front-range")
    regions: dict[str, dict[str, Any]] = {**copy.deepcopy(REGIONS),
                                          "front-range": {"digest_to": ["lead@front-range.example"]}}
    regions["mountain"]["share_names"] = share_names
    return [*practices, aspen], regions


def feed(path: Path, practice: str, denial: float) -> Path:
    """The seed's five billing KPIs for one practice, 2025-11..2026-10, on target except the denial rate's
    last month."""
    lines = ["practice,vendor,kpi,period,value"]
    for year, month in [(2025, 11), (2025, 12)] + [(2026, m) for m in range(1, 11)]:
        period = f"{year}-{month:02d}"
        values = {"days_in_ar": 38.0, "denial_rate": denial if period == "2026-10" else 4.5,
                  "net_collection_rate": 97.0, "cost_to_collect_pct": 6.0, "charge_lag_days": 1.0}
        lines += [f"{practice},claimright,{kpi},{period},{value}" for kpi, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def configure(directory: Path, share_names: bool = False, pine_name: str = "Pine Family Practice",
              peer_minimum: int | None = None) -> Config:
    practices, regions = group_practices(share_names, pine_name)
    config = write_config(directory, practices, regions)
    if peer_minimum is None:
        return config
    path = directory / "practices.yaml"
    path.write_text(f"peer_minimum: {peer_minimum}\n" + path.read_text())
    return load_config(directory)


def seed_group(tmp: Path, share_names: bool = False, pine_name: str = "Pine Family Practice",
               peer_minimum: int | None = None) -> Config:
    """`peer_minimum` None: the default (5), so no practice's digest shows figures across these three."""
    from tests.test_digest_seed import billing_feed, months

    config = configure(tmp / "config", share_names, pine_name, peer_minimum)
    history = months("2024-07", "2026-09")
    ingest_at(dt.datetime(2026, 10, 12, 15, tzinfo=dt.UTC), billing_feed(tmp / "history.csv", history), config)
    evaluate_at(dt.datetime(2026, 10, 15, 12, tzinfo=dt.UTC), config)  # as the seed world: Maple's charge lag
    ingest_at(dt.datetime(2026, 11, 17, 15, tzinfo=dt.UTC),
              billing_feed(tmp / "maple-2026-10.csv", ["2026-10"], offset=len(history)), config)
    for practice, denial in OTHERS.items():
        ingest_at(dt.datetime(2026, 11, 17, 15, tzinfo=dt.UTC), feed(tmp / f"{practice}.csv", practice, denial),
                  config)
    evaluate_at(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC), config)
    return config


def digest_for(config: Config, practice_id: str) -> Digest:
    practice = config.practice(practice_id)
    assert practice is not None
    with session_scope() as session:
        return build_digest(session, config, practice, WEEK, AFTER_SEND)


def words(text: str) -> str:
    return " ".join(text.split())


def test_a_practice_digest_says_where_it_stands_without_naming_the_others(tmp_path: Path,
                                                                          vw_env: dict[str, str]) -> None:
    config = seed_group(tmp_path, peer_minimum=2)  # Pine and Aspen: two practices Maple may not name
    digest = digest_for(config, "maple-clinic")

    [line] = digest.peers
    # Maple 10.4 against Pine 5.0 and Aspen 4.0: worse than at 2 of the 3, median 5.0, best 4.0.
    assert (line.kpi, line.value, line.better_elsewhere, line.practices, line.median, line.best) == (
        "denial_rate", 10.4, 2, 3, 5.0, 4.0)
    rendered = render_digest(digest)
    sentence = ("ClaimRight Billing's initial denial rate here, 10.4% in Oct 2026, is worse than at 2 of the 3 "
                "practices it serves (median 5.0%, best 4.0%).")
    assert sentence in words(rendered.text)
    assert sentence in read_html(rendered.html)[0]
    for other in ("Pine Family Practice", "Aspen Health", "pine-family", "aspen-health"):
        assert other not in rendered.text and other not in rendered.html
    # Pine is better than Maple, worse than Aspen: 1 of 2 others better, not worth a line.
    assert digest_for(config, "pine-family").peers == ()


def test_with_share_names_the_group_best_is_named_but_never_a_practice_of_another_group(
        tmp_path: Path, vw_env: dict[str, str]) -> None:
    config = seed_group(tmp_path, share_names=True, peer_minimum=1)
    [line] = digest_for(config, "maple-clinic").peers

    # Aspen (4.0) is in another region: the best named is Pine, Maple's own group, at 5.0.
    assert (line.best, line.best_name, line.group_best) == (4.0, "Pine Family Practice", 5.0)
    text = words(render_digest(digest_for(config, "maple-clinic")).text)
    assert "(median 5.0%, best 4.0%; best in your group: Pine Family Practice, 5.0%)." in text
    assert "Aspen" not in text


def test_the_regional_roll_up_compares_each_shared_vendor_by_name(tmp_path: Path, vw_env: dict[str, str]) -> None:
    config = seed_group(tmp_path)
    with session_scope() as session:
        region = build_region_digest(session, config, "mountain", WEEK, AFTER_SEND)

    [block] = region.vendors  # Maple and Pine in this region; Aspen is not
    denial = next(c for c in block.comparisons if c.kpi == "denial_rate")
    assert [(s.practice_name, s.value, s.rank) for s in denial.standings] == [
        ("Pine Family Practice", 5.0, 1), ("Maple Street Clinic", 10.4, 2)]
    assert denial.median == pytest.approx(7.7)  # (5.0 + 10.4) / 2
    text = words(render_region(region).text)
    assert "CLAIMRIGHT BILLING (BILLING) SERVES 2 PRACTICES HERE" in text
    assert ("Initial denial rate in Oct 2026: median 7.7%; best Pine Family Practice, 5.0%; worst Maple Street "
            "Clinic, 10.4%") in text
    assert "Aspen" not in text


def test_vendors_compare_prints_every_practice_rank_and_json(tmp_path: Path, vw_env: dict[str, str]) -> None:
    from worker.cli import cli

    seed_group(tmp_path)
    runner = CliRunner()
    config_dir = str(tmp_path / "config")
    result = runner.invoke(cli, ["--config", config_dir, "--json", "vendors", "compare", "--vendor", "claimright",
                                 "--kpi", "denial_rate", "--month", "2026-10"])
    assert result.exit_code == 0, result.output
    [comparison] = json.loads(result.stdout)
    assert (comparison["median"], comparison["best"], comparison["worst"], comparison["practices"]) == (
        5.0, 4.0, 10.4, 3)
    assert [(s["practice_id"], s["rank"]) for s in comparison["standings"]] == [
        ("aspen-health", 1), ("pine-family", 2), ("maple-clinic", 3)]
    table = runner.invoke(cli, ["--config", config_dir, "vendors", "compare", "--vendor", "claimright"])
    assert table.exit_code == 0, table.output
    assert "Maple Street Clinic" in table.stdout and "3 of 3" in table.stdout
    bad = runner.invoke(cli, ["--config", config_dir, "vendors", "compare", "--vendor", "nobody"])
    assert bad.exit_code != 0 and "names vendor" in bad.output and "'nobody'" in bad.output


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_practice_names_in_the_comparison_are_escaped(hostile: str, tmp_path: Path,
                                                              vw_env: dict[str, str]) -> None:
    pine = f"Pine {hostile}"
    config = seed_group(tmp_path, share_names=True, pine_name=pine, peer_minimum=1)
    digest = render_digest(digest_for(config, "maple-clinic"))
    with session_scope() as session:
        region = render_region(build_region_digest(session, config, "mountain", WEEK, AFTER_SEND))

    problems = []
    for kind, rendered in (("digest", digest), ("roll-up", region)):
        problems += [f"{kind} HTML: {p}" for p in html_problems(rendered.html, hostile, [pine], DIGEST_ELEMENTS)]
        problems += [f"{kind} text: {p}" for p in text_problems(rendered.text, hostile, [pine])]
    assert "best in your group: " + one_line(pine) in words(digest.text)
    assert not problems, "\n".join(problems)


def test_the_roll_up_sets_vendors_of_one_service_side_by_side_in_words() -> None:
    from digest.model import RegionDigest
    from digest.portfolio import service_comparisons

    fields = [field_of("acme", "denial_rate", "2026-10", "lower", {"a": 4.0, "b": 8.0, "c": 6.0},
                       "Initial denial rate", "%"),
              field_of("summit", "denial_rate", "2026-10", "lower", {"d": 5.0, "e": 5.5}, "Initial denial rate", "%")]
    vendors = {"acme": ("Acme RCM", "billing"), "summit": ("Summit <b>RCM</b>", "billing")}
    services = service_comparisons(fields, {"a", "b", "c", "d", "e"}, vendors)
    region = RegionDigest("west", "West", WEEK, dt.date(2026, 11, 16), dt.date(2026, 11, 23), (), (), services)
    rendered = render_region(region)

    assert ("BILLING VENDORS IN THIS REGION - Initial denial rate: Summit <b>RCM</b> 5.2% (median of 2); Acme RCM "
            "6.0% (median of 3)") in words(rendered.text)
    assert "Summit &lt;b&gt;RCM&lt;/b&gt; 5.2% (median of 2)" in rendered.html


# -- too few practices to show a figure (the minimum) -----------------------------------------------------------------


@pytest.mark.parametrize(("values", "named", "minimum", "shown"), [
    ({"me": 9.0, "a": 4.0}, {"me"}, 5, False),  # the "median" is the mean of mine and a's: a's figure
    ({"me": 9.0, "a": 4.0, "b": 5.0}, {"me"}, 5, False),  # the "best" is a's exact figure
    ({"me": 9.0, "a": 4.0, "b": 5.0}, {"me"}, 2, True),  # two the reader may not name: enough at minimum 2
    ({"me": 9.0, "a": 4.0, "b": 5.0}, {"me", "a"}, 2, False),  # a named by the group: b alone is left
    ({"me": 9.0, "a": 4.0, "b": 5.0}, {"me", "a", "b"}, 5, True),  # every practice named (a region's leader)
    ({"me": 9.0, **{f"p{i}": float(i) for i in range(5)}}, {"me"}, 5, True),  # five others
    ({"me": 9.0, **{f"p{i}": float(i) for i in range(4)}}, {"me"}, 5, False),  # four
    ({"me": 9.0}, {"me"}, 5, True),  # nobody else: nothing to hide (and no line: peer_line is None)
])
def test_figures_across_practices_need_the_minimum_of_practices_the_reader_may_not_name(
        values: dict[str, float], named: set[str], minimum: int, shown: bool) -> None:
    from digest.portfolio import figures_shown

    assert figures_shown(field_of("acme", "denial_rate", "2026-10", "lower", values), named, minimum) is shown


def peer_section(text: str) -> str:
    return words(text.split("COMPARED WITH OTHER PRACTICES", 1)[1].split("ALERTS SINCE", 1)[0])


def test_with_fewer_than_five_other_practices_a_digest_shows_no_peer_figure_and_says_why(
        tmp_path: Path, vw_env: dict[str, str]) -> None:
    config = seed_group(tmp_path)  # the default minimum (5); Maple's vendor serves 2 others
    for practice in ("maple-clinic", "pine-family"):
        digest = digest_for(config, practice)
        assert digest.peers == ()
        [hidden] = digest.peers_hidden
        assert (hidden.vendor, hidden.minimum, hidden.outside_group, hidden.every_kpi) == (
            "ClaimRight Billing", 5, False, True)
        assert "Initial denial rate" in hidden.kpi_labels
        rendered = render_digest(digest)
        section = peer_section(rendered.text)
        assert section == ("- ClaimRight Billing's figures are not compared with other practices: fewer than 5 "
                           "other practices report its KPIs.")
        # Neither Aspen's 4.0 nor Pine's 5.0 (nor any median) anywhere in the line, in text or HTML.
        assert "median" not in section and "%" not in section
        assert section[2:] in words(read_html(rendered.html)[0])
    # The figures stay in the digest for the regional roll-up, whose leader sees its practices by name.
    assert digest_for(config, "maple-clinic").fields


@pytest.mark.parametrize(("labels", "every", "outside", "sentence"), [
    (("Initial denial rate",), False, False, "Acme RCM's initial denial rate is not compared with other practices: "
                                             "fewer than 5 other practices report this KPI."),
    (("Days in A/R", "Initial denial rate", "Charge lag"), False, True,
     "Acme RCM's days in A/R, initial denial rate and charge lag are not compared with other practices: fewer than "
     "5 practices outside your group report these KPIs."),
    (("Days in A/R", "Initial denial rate"), True, False,
     "Acme RCM's figures are not compared with other practices: fewer than 5 other practices report its KPIs."),
])
def test_a_hidden_comparison_says_which_kpis_and_why(labels: tuple[str, ...], every: bool, outside: bool,
                                                     sentence: str) -> None:
    from alerts.formats import HTML, TEXT
    from digest.portfolio import HiddenPeers
    from digest.render import environment

    hidden = HiddenPeers("acme", "Acme RCM", labels, 5, outside, every)
    for output in (TEXT, HTML):  # nothing here to escape for either
        say: Any = environment(output).get_template("_sentences.txt").module
        peers_hidden = say.peers_hidden
        assert str(peers_hidden(hidden)) == sentence, output


def test_a_group_that_shares_names_counts_only_the_practices_outside_it(tmp_path: Path,
                                                                        vw_env: dict[str, str]) -> None:
    # Maple 10.4, Pine 5.0 (same region), Aspen 4.0 (another). At a minimum of 2, Maple's leaders may see
    # figures over Pine and Aspen, two practices they may not name...
    shared = seed_group(tmp_path, share_names=True, peer_minimum=2)
    alone = configure(tmp_path / "alone", share_names=False, peer_minimum=2)
    assert [line.best for line in digest_for(alone, "maple-clinic").peers] == [4.0]
    # ...but when their group shares names they know Pine's 5.0, and "best 4.0%" would be Aspen's own figure.
    digest = digest_for(shared, "maple-clinic")
    assert digest.peers == ()
    [hidden] = digest.peers_hidden
    assert hidden.outside_group
    section = peer_section(render_digest(digest).text)
    assert "fewer than 2 practices outside your group report its KPIs." in section
    assert "4.0" not in section and "Aspen" not in section


def test_the_roll_up_and_vendors_compare_name_their_practices_whatever_the_minimum(
        tmp_path: Path, vw_env: dict[str, str]) -> None:
    from worker.cli import cli

    config = seed_group(tmp_path)  # minimum 5, two practices in the region
    with session_scope() as session:
        region = build_region_digest(session, config, "mountain", WEEK, AFTER_SEND)
    [block] = region.vendors
    assert {s.practice_name for c in block.comparisons for s in c.standings} == {"Pine Family Practice",
                                                                                 "Maple Street Clinic"}
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "config"), "--json", "vendors", "compare",
                                      "--vendor", "claimright", "--kpi", "denial_rate", "--month", "2026-10"])
    assert result.exit_code == 0, result.output
    [comparison] = json.loads(result.stdout)
    assert (comparison["best"], comparison["practices"]) == (4.0, 3)  # the operator's view


def test_the_minimum_is_configured_once_for_the_file(tmp_path: Path, vw_env: dict[str, str]) -> None:
    from config import ConfigError

    practices, regions = group_practices()
    config = write_config(tmp_path, practices, regions)
    assert config.peer_minimum == 5
    path = tmp_path / "practices.yaml"
    text = path.read_text()
    path.write_text("peer_minimum: 3\n" + text)
    assert load_config(tmp_path).peer_minimum == 3
    path.write_text("peer_minimum: 0\n" + text)
    with pytest.raises(ConfigError, match="peer_minimum"):
        load_config(tmp_path)
