"""Configuration: what vendorwatch watches (practices, vendors, KPIs) and where it reports (channels, routes).

`load_config(directory)` reads practices.yaml, kpis.yaml, channels.yaml and surveys.yaml, validates them
together and raises ConfigError naming the file and line of every problem. A directory without kpis.yaml or
surveys.yaml uses the catalog and survey template shipped here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from config.channels import Channel, load_channels
from config.loader import ConfigError, YamlDocument, read_yaml, validate
from config.schema import (
    Catalog,
    ChannelsFile,
    Kpi,
    Practice,
    PracticesFile,
    Region,
    Route,
    SurveysFile,
    ThresholdOverride,
    Vendor,
)

BUNDLED_DIR = Path(__file__).resolve().parent
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

__all__ = [
    "BUNDLED_DIR",
    "Catalog",
    "Channel",
    "Config",
    "ConfigError",
    "Kpi",
    "Practice",
    "Route",
    "ThresholdOverride",
    "Vendor",
    "load_config",
]


@dataclass(frozen=True)
class Config:
    directory: Path
    practices: list[Practice]
    catalog: Catalog
    channels: list[Channel]
    routes: list[Route]
    dry_run: bool
    digest_tag: str | None
    surveys: SurveysFile
    # Carried with the rest, so a region's leader and send time come from the same validated version of the file.
    regions: dict[str, Region] = field(default_factory=dict)
    peer_minimum: int = 5  # practices.yaml `peer_minimum`: see config.schema.PracticesFile

    def practice(self, practice_id: str) -> Practice | None:
        return next((p for p in self.practices if p.id == practice_id), None)

    def kpi(self, key: str) -> Kpi | None:
        return self.catalog.kpis.get(key)


def config_file(directory: Path, name: str) -> Path:
    own = directory / name
    return own if own.exists() or name in ("practices.yaml", "channels.yaml") else BUNDLED_DIR / name


def load_config(directory: Path | str) -> Config:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError([f"{directory}: configuration directory not found"])
    problems: list[str] = []
    # Read every file before giving up, so that a YAML or ${VAR} problem in one does not hide the others'.
    practices_doc = collect(problems, lambda: read_yaml(config_file(directory, "practices.yaml")))
    catalog_doc = collect(problems, lambda: read_yaml(config_file(directory, "kpis.yaml")))
    channels_doc = collect(
        problems, lambda: read_yaml(config_file(directory, "channels.yaml"), expand_env=True)
    )
    surveys_doc = collect(problems, lambda: read_yaml(config_file(directory, "surveys.yaml")))

    practices = collect_valid(problems, practices_doc, PracticesFile)
    catalog = collect_valid(problems, catalog_doc, Catalog)
    channels_file = collect_valid(problems, channels_doc, ChannelsFile)
    surveys = collect_valid(problems, surveys_doc, SurveysFile)
    if (
        problems
        or practices_doc is None
        or channels_doc is None
        or practices is None
        or catalog is None
        or channels_file is None
        or surveys is None
    ):
        raise ConfigError(problems)

    channels, channel_problems = load_channels(channels_doc, channels_file.urls)
    problems += channel_problems
    problems += check_unique_ids(practices_doc, practices)
    problems += check_overrides(practices_doc, practices, catalog)
    problems += check_tags(channels_doc, channels_file, channels)
    if problems:
        raise ConfigError(problems)
    remember_pull_tokens(practices)
    return Config(
        directory=directory,
        practices=practices.practices,
        catalog=catalog,
        channels=channels,
        routes=channels_file.routes,
        dry_run=channels_file.dry_run,
        digest_tag=channels_file.digest,
        surveys=surveys,
        regions=practices.regions,
        peer_minimum=practices.peer_minimum,
    )


def remember_pull_tokens(practices: PracticesFile) -> None:
    """A pull's auth header value lives in the environment; mask it wherever text is written (config.secrets)."""
    import os

    from config.secrets import remember

    names = {vendor.pull.auth_env for practice in practices.practices for vendor in practice.vendors
             if vendor.pull is not None and vendor.pull.auth_env}
    remember(os.environ.get(name) for name in sorted(names))


def collect(problems: list[str], load: Callable[[], T]) -> T | None:
    """Run one file's validation, gathering its problems so that every file is reported at once."""
    try:
        return load()
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def collect_valid(problems: list[str], document: YamlDocument | None, model: type[M]) -> M | None:
    return None if document is None else collect(problems, lambda: validate(document, model))


def check_unique_ids(document: YamlDocument, practices: PracticesFile) -> list[str]:
    """A practice id, or a vendor id within one practice, listed twice: reported at the repeat's line."""
    problems = []
    first_practice: dict[str, int] = {}
    for p_index, practice in enumerate(practices.practices):
        if practice.id in first_practice:
            earlier = document.line_of(("practices", first_practice[practice.id], "id"))
            problems.append(
                document.problem(
                    ("practices", p_index, "id"),
                    f"practice id listed twice: {practice.id} (first on line {earlier})",
                )
            )
        first_practice.setdefault(practice.id, p_index)
        first_vendor: dict[str, int] = {}
        for v_index, vendor in enumerate(practice.vendors):
            if vendor.id in first_vendor:
                earlier = document.line_of(("practices", p_index, "vendors", first_vendor[vendor.id], "id"))
                problems.append(
                    document.problem(
                        ("practices", p_index, "vendors", v_index, "id"),
                        f"vendor id listed twice: {vendor.id} (first on line {earlier})",
                    )
                )
            first_vendor.setdefault(vendor.id, v_index)
    return problems


def check_overrides(document: YamlDocument, practices: PracticesFile, catalog: Catalog) -> list[str]:
    problems = []
    for p_index, practice in enumerate(practices.practices):
        for kpi in practice.overrides:
            if kpi not in catalog.kpis:
                problems.append(
                    document.problem(("practices", p_index, "overrides", kpi), unknown_kpi(kpi, catalog))
                )
        for v_index, vendor in enumerate(practice.vendors):
            for kpi in vendor.overrides:
                if kpi not in catalog.kpis:
                    location = ("practices", p_index, "vendors", v_index, "overrides", kpi)
                    problems.append(document.problem(location, unknown_kpi(kpi, catalog)))
    return problems


def unknown_kpi(kpi: str, catalog: Catalog) -> str:
    from difflib import get_close_matches

    close = get_close_matches(kpi, list(catalog.kpis), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown KPI {kpi!r}{hint}"


def check_tags(document: YamlDocument, channels_file: ChannelsFile, channels: list[Channel]) -> list[str]:
    known = set().union(*(channel.tags for channel in channels)) if channels else set()
    problems = []
    for index, route in enumerate(channels_file.routes):
        for tag in route.tags:
            if tag not in known:
                problems.append(
                    document.problem(("routes", index, "tags"), f"no channel has the tag {tag!r}")
                )
    if channels_file.digest and channels_file.digest not in known:
        problems.append(document.problem(("digest",), f"no channel has the tag {channels_file.digest!r}"))
    return problems
