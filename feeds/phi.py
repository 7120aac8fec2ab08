"""Patient data hiding in a feed's text cells: the shapes of an SSN, a member id, a phone number, a date of birth
and an email address. Pure; every ingest path asks `phi_shape` (the streamed one through the segment rule, feeds.rules).

A feed carries aggregate KPIs, so its free text is a few names (a payer, a location, a provider) and ids from the
configuration. The shapes are narrow enough that real segment names pass ('payer:Blue Cross 2024',
'provider:p00123', 'location:Suite 100', a provider's 10-digit NPI) and wide enough for what a hand-made export
lets slip: 'payer:John Smith SSN 123-45-6789'. An error about such a cell never repeats it.
"""

from __future__ import annotations

import re

# Checked in this order; the first shape found names the problem ('W123456789' is a member id, not an SSN).
SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a member id", re.compile(r"\b[a-z]{1,3}\d{8,12}\b|(?<!\d)\d{11,}(?!\d)"
                               r"|\b(member|subscriber|insured|policy(holder)?)\s*(id|#|no\b|number)|\bmrn\b",
                               re.IGNORECASE)),
    ("an SSN", re.compile(r"(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])|(?<!\d)\d{9}(?!\d)|\bssn\b|social security",
                          re.IGNORECASE)),
    ("a phone number", re.compile(r"(?<![\d-])(\+?1[-. ]?)?(\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\d-])")),
    ("an email address", re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")),
)
DATE_OF_BIRTH = ("a date of birth", re.compile(
    r"(?<![\d/.-])(\d{1,2}[/.-]\d{1,2}[/.-](19|20)?\d{2}|(19|20)\d{2}[/.-]\d{1,2}[/.-]\d{1,2})(?![\d/.-])"
    r"|\b(dob|d\.o\.b|date of birth|birth ?date|born)\b", re.IGNORECASE))


def phi_shape(text: str, *, dates: bool = True) -> str | None:
    """What kind of patient data `text` looks like, or None. `dates=False` for a period cell, which is a date by
    right (a DOB-shaped period is judged as a period)."""
    shapes = (*SHAPES, DATE_OF_BIRTH) if dates else SHAPES
    return next((kind for kind, pattern in shapes if pattern.search(text)), None)


def phi_message(kind: str) -> str:
    return (f"looks like patient data ({kind}); feeds carry aggregate KPIs only, so the cell is not repeated here: "
            "remove it and send the file again")
