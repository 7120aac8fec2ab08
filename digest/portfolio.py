"""A vendor compared across the practices it serves: pure figures, no database, no wording.

A Field is one (vendor, KPI, period)'s practice-wide values at every practice the vendor serves, ordered best
first by the KPI's `better`. It is built once per data version (digest/peers.py caches it) and each digest asks
it where its own practice stands, by bisection: a digest costs the same whether the vendor serves 3 practices or
3,000, so the weekly run stays linear in the number of practices.

Ranks are competition ranks ("1224"): a practice's rank is one more than the number of practices with a strictly
better value, so practices on the same value share a rank.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    vendor_id: str
    kpi: str
    period: str
    better: str  # lower | higher
    kpi_label: str
    unit: str
    values: Mapping[str, float]  # practice id -> value
    keys: tuple[float, ...]  # ascending sort keys: the value, negated when higher is better (best first)
    median: float  # worked out once: every digest of the run asks for it

    @property
    def practices(self) -> int:
        return len(self.values)

    def value(self, key: float) -> float:
        return -key if self.better == "higher" else key

    @property
    def best(self) -> float:
        return self.value(self.keys[0])

    @property
    def worst(self) -> float:
        return self.value(self.keys[-1])

    def better_than(self, value: float) -> int:
        """How many practices have a value strictly better than `value`."""
        return bisect_left(self.keys, sort_key(value, self.better))

    def worse_than(self, value: float) -> int:
        """How many practices have a value strictly worse than `value`."""
        return len(self.keys) - bisect_right(self.keys, sort_key(value, self.better))

    def rank(self, value: float) -> int:
        return 1 + self.better_than(value)


def sort_key(value: float, better: str) -> float:
    return -value if better == "higher" else value


def field_of(vendor_id: str, kpi: str, period: str, better: str, values: Mapping[str, float],
             kpi_label: str = "", unit: str = "") -> Field:
    keys = tuple(sorted(sort_key(value, better) for value in values.values()))
    middle = statistics.median(values.values()) if values else float("nan")
    return Field(vendor_id, kpi, period, better, kpi_label or kpi, unit, dict(values), keys, middle)


def within(field: Field, practice_ids: Collection[str]) -> Field:
    """The same figure over some of its practices only (a region's)."""
    return field_of(field.vendor_id, field.kpi, field.period, field.better,
                    {pid: value for pid, value in field.values.items() if pid in practice_ids},
                    field.kpi_label, field.unit)


@dataclass(frozen=True)
class Standing:
    practice_id: str
    practice_name: str
    value: float
    rank: int  # 1 = best; practices on the same value share a rank


@dataclass(frozen=True)
class Comparison:
    """One KPI of one vendor across its practices, with every practice's rank: what an operator and a regional
    leader see (names included)."""

    vendor_id: str
    vendor_name: str
    kpi: str
    kpi_label: str
    unit: str
    better: str
    period: str
    median: float
    best: float
    worst: float
    standings: tuple[Standing, ...]  # best first, then by name

    @property
    def practices(self) -> int:
        return len(self.standings)

    @property
    def leaders(self) -> tuple[Standing, ...]:
        return tuple(s for s in self.standings if s.rank == 1)

    @property
    def laggards(self) -> tuple[Standing, ...]:
        return tuple(s for s in self.standings if s.value == self.worst)


def compare(field: Field, vendor_name: str, names: Mapping[str, str]) -> Comparison:
    standings = sorted(
        (Standing(pid, names.get(pid, pid), value, field.rank(value)) for pid, value in field.values.items()),
        key=lambda s: (s.rank, s.practice_name, s.practice_id),
    )
    return Comparison(field.vendor_id, vendor_name, field.kpi, field.kpi_label, field.unit, field.better,
                      field.period,
                      field.median, field.best, field.worst, tuple(standings))


@dataclass(frozen=True)
class PeerLine:
    """Where one practice stands among the practices its vendor serves, as its own leaders may see it: counts
    and figures, and another practice's name only when the group shares names (best_name)."""

    vendor_id: str
    vendor: str
    kpi: str
    kpi_label: str
    unit: str
    better: str
    period: str
    value: float
    practices: int  # the practices the vendor serves that report this KPI for this period, this one included
    better_elsewhere: int  # of them, how many have a strictly better value
    worse_elsewhere: int
    median: float
    best: float
    best_name: str | None = None  # the best other practice of its group, named when the group shares names
    group_best: float | None = None  # and its value

    @property
    def share_behind(self) -> float:
        """The share of the other practices doing better: 1.0 is the worst of all."""
        return self.better_elsewhere / (self.practices - 1)


def peer_line(field: Field, practice_id: str, vendor: str) -> PeerLine | None:
    """This practice's standing, or None when the vendor serves no other practice reporting this KPI."""
    value = field.values.get(practice_id)
    if value is None or field.practices < 2:
        return None
    return PeerLine(field.vendor_id, vendor, field.kpi, field.kpi_label, field.unit, field.better, field.period, value,
                    field.practices,
                    field.better_than(value), field.worse_than(value), field.median, field.best)


def figures_shown(field: Field, named: Collection[str], minimum: int) -> bool:
    """The one rule for figures across practices (median, best, worst, counts, ranks): shown to a reader only when
    every practice behind them is one the reader may see by name (`named`: its own practice, its group's when the
    group shares names, a region's leader's region, the operator's all), or when at least `minimum` are not.
    With fewer, a median or a best is one of those practices' own figure, or nearly so."""
    # Counted over the smaller of the two: every digest asks about every field, and a field holds every practice
    # the vendor serves (counted over it, 2,000 digests took 57 s to build instead of 23).
    if len(named) < len(field.values):
        unnamed = len(field.values) - sum(1 for practice_id in named if practice_id in field.values)
    else:
        unnamed = sum(1 for practice_id in field.values if practice_id not in named)
    return unnamed == 0 or unnamed >= minimum


@dataclass(frozen=True)
class HiddenPeers:
    """A vendor's KPIs whose figures across other practices this practice's leaders may not see, and why."""

    vendor_id: str
    vendor: str
    kpi_labels: tuple[str, ...]
    minimum: int
    outside_group: bool  # the practice's group shares names: the practices counted are those outside it
    every_kpi: bool = False  # no KPI of this vendor is compared: the sentence says so rather than list them all


def matters(line: PeerLine) -> bool:
    """Worth a line in the digest: the vendor does worse here than at more than half of the other practices."""
    return line.better_elsewhere * 2 > line.practices - 1


def worst_standing(lines: Iterable[PeerLine]) -> PeerLine | None:
    """The KPI on which the practice stands furthest behind, among those that matter: behind the most practices,
    then furthest from the median relative to it (9.6% against a 6.1% median before 10.4% against 9.0%)."""
    candidates = [line for line in lines if matters(line)]
    return max(candidates, key=lambda line: (line.share_behind, distance(line), line.kpi), default=None)


def distance(line: PeerLine) -> float:
    return abs(line.value - line.median) / abs(line.median) if line.median else abs(line.value)


@dataclass(frozen=True)
class ServiceColumn:
    vendor_id: str
    vendor_name: str
    practices: int
    median: float


@dataclass(frozen=True)
class ServiceComparison:
    """Different vendors of one service side by side on one KPI ("billing vendors in this region")."""

    service: str
    kpi: str
    kpi_label: str
    unit: str
    better: str
    columns: tuple[ServiceColumn, ...]  # best median first


def service_comparison(service: str, fields: Sequence[tuple[str, Field]]) -> ServiceComparison | None:
    """(vendor name, field) pairs of one service and KPI; None unless two or more vendors report it."""
    if not fields:
        return None
    first = fields[0][1]
    columns = [ServiceColumn(field.vendor_id, name, field.practices, field.median)
               for name, field in fields if field.practices]
    if len({column.vendor_id for column in columns}) < 2:
        return None
    columns.sort(key=lambda column: (sort_key(column.median, first.better), column.vendor_name))
    return ServiceComparison(service, first.kpi, first.kpi_label, first.unit, first.better, tuple(columns))


@dataclass(frozen=True)
class SharedVendor:
    """A vendor serving two or more practices of a region, each KPI compared across them (the roll-up's block)."""

    vendor_id: str
    vendor_name: str
    service: str
    practices: int
    comparisons: tuple[Comparison, ...]


def shared_vendors(fields: Iterable[Field], practice_ids: Collection[str], names: Mapping[str, str],
                   vendors: Mapping[str, tuple[str, str]]) -> tuple[SharedVendor, ...]:
    """Per vendor (id -> (name, service)), its newest figure for each KPI over the given practices; only the
    vendors with two or more of them. Fields of several periods: the newest period wins."""
    newest = newest_fields(fields)
    by_vendor: dict[str, list[Comparison]] = {}
    for (vendor_id, _), found in newest.items():
        mine = within(found, practice_ids)
        if mine.practices >= 2 and vendor_id in vendors:
            by_vendor.setdefault(vendor_id, []).append(compare(mine, vendors[vendor_id][0], names))
    blocks = [SharedVendor(vendor_id, vendors[vendor_id][0], vendors[vendor_id][1],
                           max(c.practices for c in comparisons), tuple(sorted(comparisons, key=lambda c: c.kpi_label)))
              for vendor_id, comparisons in by_vendor.items()]
    return tuple(sorted(blocks, key=lambda block: (block.service, block.vendor_name)))


def service_comparisons(fields: Iterable[Field], practice_ids: Collection[str],
                        vendors: Mapping[str, tuple[str, str]]) -> tuple[ServiceComparison, ...]:
    """Vendors of the same service side by side on each KPI two or more of them report, over the given
    practices (a region's)."""
    newest = newest_fields(fields)
    grouped: dict[tuple[str, str], list[tuple[str, Field]]] = {}
    for (vendor_id, kpi), found in sorted(newest.items()):
        if vendor_id not in vendors:
            continue
        name, service = vendors[vendor_id]
        mine = within(found, practice_ids)
        if mine.practices:
            grouped.setdefault((service, kpi), []).append((name, mine))
    found_rows = [row for (service, _), pairs in grouped.items()
                  if (row := service_comparison(service, pairs)) is not None]
    return tuple(sorted(found_rows, key=lambda row: (row.service, row.kpi_label)))


def newest_fields(fields: Iterable[Field]) -> dict[tuple[str, str], Field]:
    """(vendor, KPI) -> its figure for the newest period among those given (practices report different months)."""
    newest: dict[tuple[str, str], Field] = {}
    for found in fields:
        key = (found.vendor_id, found.kpi)
        if key not in newest or found.period > newest[key].period:
            newest[key] = found
    return newest
