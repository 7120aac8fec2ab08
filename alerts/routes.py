"""Routes pick channel tags for a message: the first route whose every given field matches wins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from config import Route


@dataclass(frozen=True)
class MessageFacts:
    kind: str  # alert | operator
    severity: str
    practice: str | None = None
    region: str | None = None
    vendors: tuple[str, ...] = ()


def field_matches(wanted: str | list[str] | None, actual: str | None) -> bool:
    if wanted is None:
        return True
    return actual in ([wanted] if isinstance(wanted, str) else wanted)


def route_matches(route: Route, facts: MessageFacts) -> bool:
    when = route.when
    vendor_ok = when.vendor is None or any(field_matches(when.vendor, v) for v in facts.vendors)
    return (
        field_matches(when.severity, facts.severity)  # type: ignore[arg-type]
        and field_matches(when.kind, facts.kind)
        and field_matches(when.practice, facts.practice)
        and field_matches(when.region, facts.region)
        and vendor_ok
    )


def select_tags(routes: Sequence[Route], facts: MessageFacts) -> list[str]:
    for route in routes:
        if route_matches(route, facts):
            return list(route.tags)
    return []
