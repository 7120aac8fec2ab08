"""The staff as a 'vendor' of the alert lifecycle: pulse KPIs are observations of a synthetic vendor, so the rules,
the learning period, silences, acknowledgements and the outbox treat them exactly as vendor KPIs.

The staff vendor is never in practices.yaml: freshness ('feed late') and the vendor scorecards loop over the
configured vendors only, so a pulse never reads as a late feed; 'pulse overdue' has its own rule (pulse.schedule).
"""

from __future__ import annotations

import datetime as dt

from config import Practice, Vendor

STAFF_VENDOR_ID = "staff-pulse"
STAFF_VENDOR_NAME = "Staff pulse"
# Without a vendor there is no go-live to split 'before' from 'after': every pulse is judged, none is a baseline.
NO_GO_LIVE = dt.date(1970, 1, 1)


def first_go_live(practice: Practice) -> dt.date | None:
    return min((vendor.go_live for vendor in practice.vendors), default=None)


def staff_vendor(practice: Practice, vendor_id: str) -> Vendor | None:
    """The synthetic vendor of the staff's KPIs; None for any other vendor id. It goes live with the practice's
    first vendor: pulses before are the baseline, the learning period applies after, as for a vendor."""
    if vendor_id != STAFF_VENDOR_ID:
        return None
    # service picks a real vendor's KPI pack; the staff's KPIs are their own, so any value will do.
    return Vendor(id=STAFF_VENDOR_ID, name=STAFF_VENDOR_NAME, service="bundled",
                  go_live=first_go_live(practice) or NO_GO_LIVE)


def stale_after_days(practice: Practice, vendor_id: str) -> int | None:
    """A pulse is stale once two check-ins (and the grace) have passed without a new one, like a feed two periods
    late; None (the feed's own window) for a vendor, or a practice without a pulse cadence."""
    cadence = practice.pulse.cadence_days
    if vendor_id != STAFF_VENDOR_ID or cadence is None:
        return None
    return 2 * cadence + practice.pulse.grace_days


def baseline_min_periods(practice: Practice, vendor_id: str, default: int) -> int:
    """Pulses are few and each already an aggregate: the practice's pulse settings say how many make a baseline."""
    return practice.pulse.baseline_min_pulses if vendor_id == STAFF_VENDOR_ID else default
