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


# -- across time: a later export of the same survey --------------------------------------------------------------
#
# A later export holds the earlier one's respondents and more. Shown after the earlier one, each figure of the two
# subtracts to the answers of the people added in between, so every part of the practice that a figure can be split
# into (each shown group, and everyone else) must gain nobody or at least `min_size` people, for each figure: a
# question only one newcomer answered would expose that newcomer even among ten. The groups stay those first
# published, since a group shown only later would split the earlier "everyone else" in two.

REST = ""  # the part of the practice in no shown group
RESPONSES = "responses"

Tally = Mapping[str, int]  # how many people stand behind each figure of one part: "responses" and each dimension


def parts(practice: Tally, groups: Mapping[str, Tally]) -> dict[str, Tally]:
    """The disjoint parts of the practice: each shown group, and the rest."""
    rest = {key: count - sum(group.get(key, 0) for group in groups.values()) for key, count in practice.items()}
    return {**groups, REST: rest}


def replacement_held_back(published: tuple[Tally, Mapping[str, Tally]], candidate: tuple[Tally, Mapping[str, Tally]],
                          min_size: int) -> str | None:
    """Why a later export may not yet replace the published one (None: it may). Each is (practice tally, tallies of
    the published groups)."""
    added = candidate[0].get(RESPONSES, 0) - published[0].get(RESPONSES, 0)
    if added < min_size:
        return f"it adds {added} response(s) to the {published[0].get(RESPONSES, 0)} already shown"
    before, after = parts(*published), parts(*candidate)
    for part in sorted(before.keys() | after.keys(), key=lambda part: (part == REST, part)):  # groups first
        if small_changes(before.get(part, {}), after.get(part, {}), min_size):
            whom = "a shown group" if part != REST else "the people in no shown group"
            return f"the figures of {whom} would change by the answers of fewer than {min_size} people"
    return None


def small_changes(old: Tally, new: Tally, min_size: int) -> list[str]:
    """The figures of one part that fewer than min_size people (but someone) would change."""
    return [key for key in sorted(old.keys() | new.keys()) if 0 < abs(new.get(key, 0) - old.get(key, 0)) < min_size]
