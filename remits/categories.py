"""Denial reasons grouped into categories of our own naming, by Claim Adjustment Reason Code (CARC) number.

Only the codes and our own category names are here: the CARC and RARC description texts are licensed, and are
not shipped.
"""

from __future__ import annotations

CATEGORIES = ("eligibility and coverage", "authorization", "coding and bundling", "timely filing", "duplicate",
              "medical necessity", "missing information", "other")

CARC_CATEGORY: dict[str, str] = {
    **dict.fromkeys(("22", "24", "26", "27", "31", "32", "33", "35", "96", "109", "177", "200", "204"),
                    "eligibility and coverage"),
    **dict.fromkeys(("15", "38", "39", "62", "197", "198", "243", "288"), "authorization"),
    **dict.fromkeys(("4", "5", "6", "7", "8", "9", "10", "11", "12", "97", "151", "181", "182", "231", "234",
                     "236"), "coding and bundling"),
    "29": "timely filing",
    **dict.fromkeys(("18", "B13"), "duplicate"),
    **dict.fromkeys(("50", "55", "56", "58", "150", "152", "167"), "medical necessity"),
    **dict.fromkeys(("16", "17", "125", "226", "227", "252"), "missing information"),
}

# Denial adjustments are the payer's or the contract's, not the patient's share: CAS01 group codes.
DENIAL_GROUPS = frozenset({"CO", "OA", "PI"})


def category_of(carc: str) -> str:
    return CARC_CATEGORY.get(carc.strip().upper(), "other")

# Seed 003: "a shift away from preventable front-end / coding denials" is what leadership looks for.
PREVENTABLE = frozenset({"eligibility and coverage", "authorization", "coding and bundling", "missing information"})
