"""Operator alerts: something an operator must look at (a rejected feed, an undeliverable notification), sent
through the operator route.

Each kind of message is a small class of facts below; its wording is the macros of the same name in
alerts/templates/_operator.txt. The outbox row carries the kind and the facts (plus the lines it quotes, such as a
file's problems), and each channel renders the wording in its own format at delivery, escaping every fact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from alerts.messages import operator_title
from alerts.routes import MessageFacts, select_tags
from config import Config
from config.reload import Refusal
from config.secrets import redact
from intake.ingest import unfollowed
from storage.models import Notification, utcnow
from storage.uploads import IngestResult

MAX_DETAILS = 10


@dataclass(frozen=True)
class OperatorFacts:
    """What one operator message states; `kind` names its macros in _operator.txt."""

    kind: ClassVar[str]

    def as_payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FeedRejected(OperatorFacts):
    kind = "feed_rejected"
    name: str  # <practice>/<vendor>/<file>, as the inbox names it
    problem_count: int
    moved_to: str  # its place in quarantine/


@dataclass(frozen=True)
class PulseRejected(OperatorFacts):
    """A staff pulse export refused: deleted, since it may name staff."""

    kind = "pulse_rejected"
    name: str
    problem_count: int


@dataclass(frozen=True)
class RemitRejected(OperatorFacts):
    """A payer's 835 refused: quarantined, since the operator must fix or replace it; its report gives segment
    numbers and element positions, never contents."""

    kind = "remit_rejected"
    name: str
    problem_count: int
    moved_to: str


@dataclass(frozen=True)
class RemitKeyUnset(OperatorFacts):
    """835s wait in the inbox: without the claim-id key a resubmission cannot be told from a first pass."""

    kind = "remit_key_missing"
    name: str  # the first file found waiting
    variable: str  # the environment variable to set


@dataclass(frozen=True)
class FileSetAside(OperatorFacts):
    """Something in the inbox that is not a regular file (a link, a pipe, a stale dot-named file)."""

    kind = "file_set_aside"
    name: str
    moved_to: str


@dataclass(frozen=True)
class ConfigRefused(OperatorFacts):
    kind = "config_refused"
    where: str  # the first problem's file and line, "practices.yaml:14"
    problem_count: int


@dataclass(frozen=True)
class DeliveryFailed(OperatorFacts):
    kind = "delivery_failed"
    title: str  # the title of the notification that could not be delivered


@dataclass(frozen=True)
class UnsentDigest(OperatorFacts):
    kind = "digest_not_sent"
    key: str  # a practice id, or region:<key> for a roll-up
    week: str
    region: str | None  # the region of a roll-up, else None


@dataclass(frozen=True)
class CheckinDue(OperatorFacts):
    """The first staff check-in after a vendor went live."""

    kind = "checkin_due"
    practice_id: str
    practice_name: str
    vendor_name: str
    go_live: str  # ISO dates
    due_on: str
    min_group_size: int


@dataclass(frozen=True)
class PulseDue(OperatorFacts):
    """A staff pulse survey due by the practice's cadence."""

    kind = "pulse_due"
    practice_id: str
    practice_name: str
    due_on: str
    cadence_days: int | None  # reminders are written only with a cadence
    min_group_size: int


KINDS: dict[str, type[OperatorFacts]] = {facts.kind: facts for facts in (
    FeedRejected, PulseRejected, RemitRejected, RemitKeyUnset, FileSetAside, ConfigRefused, DeliveryFailed,
    UnsentDigest, CheckinDue, PulseDue)}


def enqueue_operator_alert(session: Session, config: Config, facts: OperatorFacts, *, details: Sequence[str] = (),
                           practice_id: str | None = None, exclude_channels: Sequence[str] = ()) -> int | None:
    """Write an operator notification to the outbox; None when no channel would take it. `details` are the lines
    it quotes as they are (a file's problems, a target's error).

    exclude_channels (channel keys) are the targets that just failed: the alert must reach someone else."""
    practice = config.practice(practice_id) if practice_id else None
    routing = MessageFacts(kind="operator", severity="warning", practice=practice_id,
                           region=practice.region if practice else None)
    tags = select_tags(config.routes, routing)
    if not any(channel.tags & set(tags) and channel.key not in exclude_channels for channel in config.channels):
        return None
    payload = facts.as_payload()
    notification = Notification(kind="operator", practice_id=practice_id, severity="warning", tags=tags,
                                title=operator_title(facts.kind, payload), created_at=utcnow(),
                                payload={"kind": facts.kind, "facts": payload, "details": shown(details),
                                         "exclude_channels": list(exclude_channels)})
    session.add(notification)
    session.flush()
    return notification.id


def shown(details: Sequence[str]) -> list[str]:
    """At most MAX_DETAILS lines, and how many more there were."""
    lines = list(details[:MAX_DETAILS])
    if len(details) > MAX_DETAILS:
        lines.append(f"... and {len(details) - MAX_DETAILS} more")
    return lines


def tell_about_file(session: Session, config: Config, path: Path, inbox: Path, result: IngestResult) -> int | None:
    """A rejected inbox file, or something set aside unread, is an operator's job: say which file, where it went,
    and why. None: nothing to tell, or no channel takes it."""
    name = inbox_name(path, inbox)
    facts = file_facts(name, result)
    if facts is None:
        return None
    practice = name.split("/", 1)[0] if "/" in name else None
    return enqueue_operator_alert(session, config, facts, details=[str(problem) for problem in result.problems],
                                  practice_id=practice if practice and config.practice(practice) else None)


def inbox_name(path: Path, inbox: Path) -> str:
    """inbox/<practice>/<vendor>/<file> as "<practice>/<vendor>/<file>" (a link named, never followed)."""
    try:
        return str(unfollowed(path).relative_to(inbox.resolve()))
    except ValueError:
        return path.name


def file_facts(name: str, result: IngestResult) -> OperatorFacts | None:
    if result.status == "ignored":
        return FileSetAside(name, str(result.moved_to))
    if result.status != "rejected":
        return None
    count = max(result.problem_count, len(result.problems))
    if result.kind == "pulse":
        return PulseRejected(name, count)
    if result.kind == "remits":
        return RemitRejected(name, count, str(result.moved_to))
    return FeedRejected(name, count, str(result.moved_to))


def tell_remit_key_missing(session: Session, config: Config, path: Path, inbox: Path, variable: str) -> int | None:
    """An 835 cannot be read until the operator sets the key; it stays in the inbox and is read once it is set."""
    return enqueue_operator_alert(session, config, RemitKeyUnset(inbox_name(path, inbox), variable))


def tell_config_refused(session: Session, config: Config, refusal: Refusal) -> int | None:
    """A broken configuration edit: the configuration in use (`config`) stays; each problem names file and line."""
    where = Path(refusal.problems[0].split(": ", 1)[0]).name  # "practices.yaml:14"; the details give the paths
    return enqueue_operator_alert(session, config, ConfigRefused(where, len(refusal.problems)),
                                  details=[redact(problem) for problem in refusal.problems])
