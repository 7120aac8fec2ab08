"""Configuration: the bundled and test configurations load; every broken one fails with the file, the line and
what is wrong, all problems at once, and the CLI stops with exit 1 printing them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import config
from config import BUNDLED_DIR, ConfigError, load_config
from tests.conftest import TEST_CONFIG, subprocess_env
from tests.worker_process import vendorwatch

TEAMS_FALLBACK = "${VENDORWATCH_TEAMS_URL:-workflows://teams.example.invalid/demo-workflow/demo-signature}"


@pytest.fixture(autouse=True)
def no_vendorwatch_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled channels.yaml reads VENDORWATCH_* variables: start every test without them."""
    for name in list(os.environ):
        if name.startswith(("VENDORWATCH_", "TEST_")):
            monkeypatch.delenv(name)


@dataclass(frozen=True)
class Broken:
    """A copy of the bundled practices.yaml and channels.yaml with `old` replaced by `new` in `file`."""

    directory: Path
    path: Path
    line: int  # the line where the replacement sits

    def problems_at_line(self, problems: list[str]) -> list[str]:
        return [problem for problem in problems if problem.startswith(f"{self.path}:{self.line}: ")]


def copy_bundled(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("practices.yaml", "channels.yaml"):
        shutil.copy(BUNDLED_DIR / name, directory / name)
    return directory


def break_file(directory: Path, file: str, old: str, new: str, at: str | None = None) -> Broken:
    """Replace the first `old` by `new`; the expected line is where `at` (default: all of `new`) starts."""
    path = directory / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in the bundled {file}: update this test"
    start = text.index(old)
    changed = text.replace(old, new, 1)
    line = changed[: changed.index(at or new, start)].count("\n") + 1
    path.write_text(changed, encoding="utf-8")
    return Broken(directory=directory, path=path, line=line)


def break_config(tmp_path: Path, file: str, old: str, new: str, at: str | None = None) -> Broken:
    return break_file(copy_bundled(tmp_path / "config"), file, old, new, at)


def load_problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    return caught.value.problems


# -- what loads -------------------------------------------------------------------------------------------


def test_the_bundled_configuration_loads_three_practices_the_kpi_catalog_and_three_channels() -> None:
    loaded = load_config(BUNDLED_DIR)

    assert [p.id for p in loaded.practices] == ["oakridge-fm", "lakeside-peds", "riverbend-im"]
    assert len(loaded.catalog.kpis) == 31
    assert {"days_in_ar", "denial_rate", "net_collections", "enps"} <= set(loaded.catalog.kpis)
    assert sorted(tag for channel in loaded.channels for tag in channel.tags) == ["digest", "email", "teams"]
    assert loaded.digest_tag == "digest"
    assert [route.tags for route in loaded.routes] == [["email"], ["teams", "email"]]
    oakridge = loaded.practice("oakridge-fm")
    assert oakridge is not None
    assert oakridge.overrides["denial_rate"].warn == 7
    assert [v.id for v in oakridge.vendors] == ["acme-billing", "brightcall"]
    assert str(oakridge.vendors[0].go_live) == "2026-03-01"


@pytest.mark.parametrize(
    ("environment_value", "dry_run"),
    [(None, True), ("true", True), ("false", False)],
    ids=["unset", "true", "false"],
)
def test_the_bundled_configuration_is_a_dry_run_unless_the_environment_turns_it_off(
    monkeypatch: pytest.MonkeyPatch, environment_value: str | None, dry_run: bool
) -> None:
    if environment_value is not None:
        monkeypatch.setenv("VENDORWATCH_DRY_RUN", environment_value)

    assert load_config(BUNDLED_DIR).dry_run is dry_run


def test_an_unset_variable_with_a_fallback_takes_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    teams = next(c for c in load_config(BUNDLED_DIR).channels if "teams" in c.tags)
    assert teams.url == "workflows://teams.example.invalid/demo-workflow/demo-signature"

    monkeypatch.setenv("VENDORWATCH_TEAMS_URL", "workflows://127.0.0.1:8443/real-flow/real-signature")
    teams = next(c for c in load_config(BUNDLED_DIR).channels if "teams" in c.tags)
    assert teams.url == "workflows://127.0.0.1:8443/real-flow/real-signature"


def test_the_test_configuration_loads_when_its_channel_urls_are_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_TEAMS_URL", "json://127.0.0.1:9/teams")
    monkeypatch.setenv("TEST_ALERT_EMAIL_URL", "mailto://127.0.0.1:9?mode=insecure&from=vw@localhost&to=a@localhost")
    monkeypatch.setenv("TEST_DIGEST_EMAIL_URL", "mailto://127.0.0.1:9?mode=insecure&from=vw@localhost")

    loaded = load_config(TEST_CONFIG)

    assert [p.id for p in loaded.practices] == ["maple-clinic"]
    assert loaded.practices[0].vendors[0].id == "claimright"
    assert loaded.practices[0].overrides["denial_rate"].crit == 10
    assert loaded.dry_run is False
    assert {channel.url for channel in loaded.channels if "teams" in channel.tags} == {"json://127.0.0.1:9/teams"}
    # without kpis.yaml of its own, the directory uses the bundled catalog
    assert len(loaded.catalog.kpis) == len(load_config(BUNDLED_DIR).catalog.kpis)


def test_the_test_configuration_without_its_environment_names_every_missing_variable() -> None:
    problems = load_problems(TEST_CONFIG)

    channels = TEST_CONFIG / "channels.yaml"
    lines = channels.read_text().splitlines()
    for name in ("TEST_TEAMS_URL", "TEST_ALERT_EMAIL_URL", "TEST_DIGEST_EMAIL_URL"):
        line = next(number for number, text in enumerate(lines, start=1) if "${" + name + "}" in text)
        assert f"{channels}:{line}: environment variable {name} is not set" in problems


# -- what fails, with file, line and reason ----------------------------------------------------------------


@dataclass(frozen=True)
class Breakage:
    file: str
    old: str
    new: str
    says: tuple[str, ...]  # every fragment must be in the problem reported at the broken line
    at: str | None = None  # the text of `new` on the line the problem must name (default: its first line)


BREAKAGES = {
    "unknown_kpi_in_overrides": Breakage(
        "practices.yaml",
        "denial_rate: {warn: 7",
        "denial_rat: {warn: 7",
        ("practices[0].overrides.denial_rat", "unknown KPI 'denial_rat'", "(did you mean denial_rate?)"),
    ),
    "unknown_kpi_in_vendor_overrides": Breakage(
        "practices.yaml",
        "        grace_days: 2\n",
        "        grace_days: 2\n        overrides:\n          days_in_a: {warn: 40}\n",
        ("practices[1].vendors[1].overrides.days_in_a", "unknown KPI 'days_in_a'", "did you mean days_in_ar?"),
        at="days_in_a:",
    ),
    "bad_timezone": Breakage(
        "practices.yaml",
        "timezone: America/Chicago",
        "timezone: America/Chicgo",
        ("practices[0].timezone", "unknown time zone 'America/Chicgo'", "IANA"),
    ),
    "go_live_in_words": Breakage(
        "practices.yaml",
        "go_live: 2026-03-01",
        "go_live: next spring",
        ("practices[0].vendors[0].go_live", "valid date"),
    ),
    "go_live_with_month_13": Breakage(
        "practices.yaml",
        "go_live: 2026-03-01",
        "go_live: 2026-13-01",
        ("practices[0].vendors[0].go_live", "valid date", "month"),
    ),
    "unknown_service": Breakage(
        "practices.yaml",
        "service: reminders",
        "service: reminder",
        ("practices[0].vendors[1].service", "Input should be", "'reminders'", "'billing'"),
    ),
    "duplicate_practice_id": Breakage(
        "practices.yaml",
        "id: lakeside-peds",
        "id: oakridge-fm",
        ("practices[1].id", "practice id listed twice: oakridge-fm"),
    ),
    "duplicate_vendor_id": Breakage(
        "practices.yaml",
        "id: brightcall",
        "id: acme-billing",
        ("practices[0].vendors[1].id", "vendor id listed twice: acme-billing"),
    ),
    "unknown_key": Breakage(
        "practices.yaml",
        "digest_to: [director",
        "digest_too: [director",
        ("practices[1].digest_too", "Extra inputs are not permitted"),
    ),
    "unknown_top_level_key_in_channels": Breakage(
        "channels.yaml",
        "dry_run: ${",
        "dry_runn: ${",
        ("dry_runn", "Extra inputs are not permitted"),
    ),
    "route_tag_no_channel_has": Breakage(
        "channels.yaml",
        "tags: [teams, email]",
        "tags: [teams, pager]",
        ("routes[1].tags", "no channel has the tag 'pager'"),
    ),
    "digest_tag_no_channel_has": Breakage(
        "channels.yaml",
        "digest: digest",
        "digest: weekly",
        ("digest", "no channel has the tag 'weekly'"),
    ),
    "url_apprise_cannot_use": Breakage(
        "channels.yaml",
        TEAMS_FALLBACK,
        "nosuchscheme://hooks.example/flow",
        ("urls[0]", "Apprise cannot use this URL", "nosuchscheme://"),
    ),
    "unset_environment_variable": Breakage(
        "channels.yaml",
        TEAMS_FALLBACK,
        "${VW_TEST_NEVER_SET_TEAMS_URL}",
        ("environment variable VW_TEST_NEVER_SET_TEAMS_URL is not set",),
    ),
    "invalid_yaml": Breakage(
        "practices.yaml",
        "    region: midwest\n",
        "    region: midwest: north\n",
        ("not valid YAML", "mapping values are not allowed"),
    ),
    "tab_indentation": Breakage(
        "practices.yaml",
        "    staff_count: 14\n",
        "\tstaff_count: 14\n",
        ("not valid YAML",),
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES.values()), ids=list(BREAKAGES))
def test_a_broken_configuration_names_the_file_the_line_and_what_is_wrong(tmp_path: Path, breakage: Breakage) -> None:
    broken = break_config(tmp_path, breakage.file, breakage.old, breakage.new, breakage.at)

    problems = load_problems(broken.directory)

    at_line = broken.problems_at_line(problems)
    assert at_line, f"no problem at {broken.path}:{broken.line}, got {problems}"
    assert any(all(fragment in problem for fragment in breakage.says) for problem in at_line), (
        f"expected {breakage.says} in {at_line}"
    )


def test_an_unusable_channel_url_is_reported_without_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VENDORWATCH_TEAMS_URL", "nosuchscheme://bot:s3cr3t-token@hooks.example/flow")
    directory = copy_bundled(tmp_path / "config")
    line = next(
        number
        for number, text in enumerate((directory / "channels.yaml").read_text().splitlines(), start=1)
        if "VENDORWATCH_TEAMS_URL" in text and not text.lstrip().startswith("#")
    )

    with pytest.raises(ConfigError) as caught:
        load_config(directory)

    assert f"{directory / 'channels.yaml'}:{line}: urls[0]: Apprise cannot use this URL" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_a_commented_out_variable_reference_needs_no_environment(tmp_path: Path) -> None:
    broken = break_config(tmp_path, "channels.yaml", "dry_run: ${", "# ${VW_TEST_NEVER_SET}\ndry_run: ${")

    assert load_config(broken.directory).dry_run is True


def test_a_missing_configuration_directory_is_a_config_error(tmp_path: Path) -> None:
    problems = load_problems(tmp_path / "nowhere")

    assert problems == [f"{tmp_path / 'nowhere'}: configuration directory not found"]


def test_a_configuration_without_practices_yaml_says_it_cannot_read_it(tmp_path: Path) -> None:
    directory = copy_bundled(tmp_path / "config")
    (directory / "practices.yaml").unlink()

    problems = load_problems(directory)

    assert any(p.startswith(f"{directory / 'practices.yaml'}: cannot read") for p in problems)


# -- several problems, one report --------------------------------------------------------------------------


MULTIPLE = {
    "schema_problems_in_both_files": (
        Breakage("practices.yaml", "timezone: America/Chicago", "timezone: Mars/Olympus", ("unknown time zone",)),
        Breakage("channels.yaml", "dry_run: ${", "dry_runn: ${", ("Extra inputs are not permitted",)),
    ),
    "cross_file_problems_in_both_files": (
        Breakage("practices.yaml", "denial_rate: {warn: 7", "denial_rat: {warn: 7", ("unknown KPI 'denial_rat'",)),
        Breakage("channels.yaml", "tags: [teams, email]", "tags: [teams, pager]", ("no channel has the tag",)),
    ),
    "bad_timezone_and_unset_variable": (
        Breakage("practices.yaml", "timezone: America/Chicago", "timezone: Mars/Olympus", ("unknown time zone",)),
        Breakage("channels.yaml", TEAMS_FALLBACK, "${VW_TEST_NEVER_SET}", ("VW_TEST_NEVER_SET is not set",)),
    ),
    "invalid_yaml_and_unset_variable": (
        Breakage("practices.yaml", "    region: midwest\n", "    region: midwest: north\n", ("not valid YAML",)),
        Breakage("channels.yaml", TEAMS_FALLBACK, "${VW_TEST_NEVER_SET}", ("VW_TEST_NEVER_SET is not set",)),
    ),
    "two_problems_in_one_file": (
        Breakage("practices.yaml", "timezone: America/Chicago", "timezone: Mars/Olympus", ("unknown time zone",)),
        Breakage("practices.yaml", "service: reminders", "service: reminder", ("service",)),
    ),
}


@pytest.mark.parametrize("breakages", list(MULTIPLE.values()), ids=list(MULTIPLE))
def test_several_problems_are_all_reported_at_once(tmp_path: Path, breakages: tuple[Breakage, ...]) -> None:
    directory = copy_bundled(tmp_path / "config")
    broken = [break_file(directory, b.file, b.old, b.new, b.at) for b in breakages]

    problems = load_problems(directory)

    for breakage, where in zip(breakages, broken, strict=True):
        at_line = where.problems_at_line(problems)
        assert any(all(f in problem for f in breakage.says) for problem in at_line), (
            f"{breakage.says} not reported at {where.path}:{where.line} in {problems}"
        )


def test_config_error_lists_every_problem_in_its_message(tmp_path: Path) -> None:
    broken = break_config(tmp_path, "practices.yaml", "timezone: America/Chicago", "timezone: Mars/Olympus")
    break_file(broken.directory, "practices.yaml", "service: reminders", "service: reminder")

    with pytest.raises(config.ConfigError) as caught:
        load_config(broken.directory)

    assert len(caught.value.problems) == 2
    assert str(caught.value).startswith("invalid configuration:")
    assert all(problem in str(caught.value) for problem in caught.value.problems)


# -- the CLI stops on an invalid configuration -------------------------------------------------------------


@pytest.mark.parametrize("command", [("feeds", "status"), ("ingest", "--no-evaluate", "FEED")], ids=lambda c: c[0])
def test_the_cli_exits_1_and_prints_file_and_line_for_an_invalid_configuration(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    broken = break_config(tmp_path, "practices.yaml", "timezone: America/Chicago", "timezone: America/Chicgo")
    feed = tmp_path / "feed.csv"
    feed.write_text("practice,vendor,kpi,period,value\noakridge-fm,acme-billing,days_in_ar,2026-04,41\n")
    args = [str(feed) if part == "FEED" else part for part in command]
    env = subprocess_env({"VENDORWATCH_DATA_DIR": str(tmp_path / "var")})

    result = vendorwatch("--config", str(broken.directory), *args, env=env, check=False)

    assert result.returncode == 1, result.stdout + result.stderr
    # Rich wraps stderr at 80 columns when it is not a terminal; the wrapped text is the same text.
    stderr = result.stderr.replace("\n", "")
    assert f"{broken.path}:{broken.line}: practices[0].timezone:" in stderr
    assert "unknown time zone 'America/Chicgo'" in stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var" / "vendorwatch.sqlite").exists()
