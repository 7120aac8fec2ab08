"""What kind of X12 file this is, from its first bytes: the ISA header (fixed width, 106 characters, which declares
the delimiters) and the GS/ST that follow. Nothing here reads past the first segments, and no message quotes
the file."""

from __future__ import annotations

from dataclasses import dataclass

ISA_LENGTH = 106
HEAD_BYTES = 4096


@dataclass(frozen=True)
class EnvelopeProblem:
    segment: int  # 1-based: the ISA is segment 1
    element: str  # e.g. "ISA12"
    message: str


def strip_lead(head: bytes) -> bytes:
    """A BOM or blank lines before the ISA are tolerated, as clearinghouse downloads sometimes have them."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n\t ")


def is_x12(head: bytes) -> bool:
    """An interchange starts with 'ISA' followed by its element separator; a CSV or JSON feed never does."""
    lead = strip_lead(head)
    return len(lead) >= 4 and lead[:3] == b"ISA" and not lead[3:4].isalnum() and lead[3:4] not in b" \r\n"


def check_envelope(head: bytes) -> list[EnvelopeProblem]:
    """An 835 of version 005010X221A1: ISA12 00501, GS01 HP, GS08 005010X221*, ST01 835. A 004010 remittance or an
    837 claim file is told as such, by position, never by quoting it."""
    lead = strip_lead(head)
    if len(lead) < ISA_LENGTH:
        return [EnvelopeProblem(1, "ISA", "the interchange header is cut short (an ISA segment is 106 characters)")]
    element, terminator = lead[3:4], lead[105:106]
    isa = lead[:105].split(element)
    if len(isa) != 17:
        return [EnvelopeProblem(1, "ISA", f"the interchange header has {len(isa) - 1} elements, not 16")]
    problems = []
    if isa[12] != b"00501":
        problems.append(EnvelopeProblem(1, "ISA12", "not version 00501: only 005010X221A1 remittances are read "
                                                    "(a 004010 file must be converted by the clearinghouse)"))
    segments = [s.strip(b"\r\n") for s in lead[ISA_LENGTH:].split(terminator)[:2]]
    gs = segments[0].split(element) if segments else []
    st = segments[1].split(element) if len(segments) > 1 else []
    if len(gs) < 9 or gs[0] != b"GS":
        return [*problems, EnvelopeProblem(2, "GS", "a functional group header (GS) must follow the ISA")]
    if gs[1] != b"HP":
        problems.append(EnvelopeProblem(2, "GS01", "not a remittance group (HP): is this an 837 claim file?"))
    if not gs[8].startswith(b"005010X221"):
        problems.append(EnvelopeProblem(2, "GS08", "not implementation 005010X221A1 (835 remittance)"))
    if len(st) < 2 or st[0] != b"ST":
        problems.append(EnvelopeProblem(3, "ST", "a transaction set header (ST) must follow the GS"))
    elif st[1] != b"835":
        problems.append(EnvelopeProblem(3, "ST01", "not an 835 remittance transaction"))
    return problems
