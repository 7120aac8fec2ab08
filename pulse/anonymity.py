"""Which groups' results may be shown without exposing anyone. Pure; tested as a table.

SPEC section 7: a group is shown only with at least `min_size` respondents, and no two shown figures may differ by
fewer than `min_size` people, so nobody can subtract one from another. The groups of one grouping question
(role, or location) are disjoint, so the subtractions that matter are the whole practice minus the shown groups:
with 12 respondents, Front desk 6 and Billing 5 shown, the practice figure minus both would be one person's
answers. The people left over after every shown group (blank answers and small groups together) must therefore
number 0 or at least `min_size`; and one group holding everyone is the practice figure again, so it is not shown.
A practice of 8 sees its whole-practice figure only.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

# Beyond this many candidate groups the search below would be slow; a small practice never gets near it.
MAX_GROUPS = 12


def practice_visible(total: int, min_size: int) -> bool:
    return total >= min_size


def visible_groups(total: int, sizes: Mapping[str, int], min_size: int) -> list[str]:
    """The most groups that may be shown together (ties: the larger ones, then by name); sorted by name."""
    if not practice_visible(total, min_size):
        return []
    candidates = sorted((name for name, size in sizes.items() if size >= min_size),
                        key=lambda name: (-sizes[name], name))[:MAX_GROUPS]
    for count in range(len(candidates), 0, -1):
        for chosen in combinations(candidates, count):
            if leaves_nobody_exposed(total, [sizes[name] for name in chosen], min_size):
                return sorted(chosen)
    return []


def leaves_nobody_exposed(total: int, shown: list[int], min_size: int) -> bool:
    rest = total - sum(shown)
    if rest == 0:
        return len(shown) >= 2
    return rest >= min_size
