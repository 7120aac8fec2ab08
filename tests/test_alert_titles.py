"""Alert message titles, rendered from the payload by templates/alert_title.txt (issue 15 item 8): the worst change
still open and how many more, or how many resolved. Stored as plain text; each channel escapes it where shown."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.lifecycle import message_title

HOSTILE = "Acme <!here> [x](https://evil.example) *b* {{ x }}"


def change(event: str = "firing", severity: str = "critical", rule: str = "threshold", vendor: str = "Acme RCM",
           kpi_label: str = "Denial rate", segment: str = "all") -> dict[str, Any]:
    return {"event": event, "severity": severity, "rule": rule, "vendor_name": vendor, "kpi_label": kpi_label,
            "segment": segment}


def payload(*changes: dict[str, Any], practice: str = "Maple Clinic") -> dict[str, Any]:
    return {"practice": "maple-clinic", "practice_name": practice, "changes": list(changes)}


@pytest.mark.parametrize(("message", "title"), [
    pytest.param(payload(change()), "CRITICAL Maple Clinic: Acme RCM Denial rate", id="one firing"),
    pytest.param(payload(change(segment="payer:Aetna")), "CRITICAL Maple Clinic: Acme RCM Denial rate for Aetna "
                 "(payer)", id="a segment's alert names the segment"),
    pytest.param(payload(change(rule="freshness", severity="warning", kpi_label="Feed")),
                 "WARNING Maple Clinic: Acme RCM feed late", id="a late feed"),
    pytest.param(payload(change(rule="pulse_overdue", severity="warning", vendor="Staff pulse",
                                kpi_label="check-in overdue")),
                 "WARNING Maple Clinic: Staff pulse check-in overdue", id="an overdue check-in"),
    pytest.param(payload(change(severity="warning", kpi_label="A/R days"), change(kpi_label="Denial rate"),
                         change(event="resolved")),
                 "CRITICAL Maple Clinic: Acme RCM Denial rate (+2 more)", id="the worst open change, and the rest"),
    pytest.param(payload(change(kpi_label="First"), change(kpi_label="Second")),
                 "CRITICAL Maple Clinic: Acme RCM First (+1 more)", id="of equally bad changes, the first"),
    pytest.param(payload(change(event="repeat", severity="warning")), "WARNING Maple Clinic: Acme RCM Denial rate",
                 id="a repeat"),
    pytest.param(payload(change(event="resolved"), change(event="resolved")),
                 "Maple Clinic: 2 vendor alert(s) resolved", id="only resolved changes"),
    pytest.param(payload(change(vendor=HOSTILE), practice=HOSTILE),
                 f"CRITICAL {HOSTILE}: {HOSTILE} Denial rate", id="names printed as they are: escaped per channel"),
    pytest.param(payload(change(vendor="Acme\nRCM"), practice="Maple\r\nClinic"),
                 "CRITICAL Maple Clinic: Acme RCM Denial rate", id="a line break in a name cannot forge a line"),
])
def test_message_title(message: dict[str, Any], title: str) -> None:
    assert message_title(message) == title
