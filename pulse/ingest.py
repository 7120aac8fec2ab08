"""Store one pulse export: aggregate scores only, once per exact file, in one transaction.

The practice-level KPIs become observations of the synthetic staff vendor (period: the day the survey closed), so
evaluation judges them with the same rules and lifecycle as vendor KPIs. A later export of the same survey (same
first-response day, more responses) replaces the stored figures, its KPI values being revisions, but only once no
figure would change by fewer than min_group_size people (pulse.anonymity): until then it is held back, and the
published figures stay.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Date, bindparam, select, text, update
from sqlalchemy.orm import Session

from config import Config, Practice
from config.schema import SurveysFile
from pulse.anonymity import RESPONSES, practice_visible, replacement_held_back, visible_groups
from pulse.forms import Respondent, Responses, SurveyRejected, parse_export
from pulse.scores import score, score_respondents
from pulse.staff import STAFF_VENDOR_ID
from storage.db import session_scope
from storage.models import ObservationRevision, ObservationValue, PulseSurvey, Series, utcnow
from storage.observations import (
    DuplicateFile,
    ObservationIn,
    Problem,
    StoreCounts,
    claim_file,
    merge,
    prepare_staging,
    quoted,
    stage,
)
from storage.periods import Period
from storage.uploads import FeedOrigin, IngestResult, Upload, record_rejection

log = logging.getLogger(__name__)
# In pulse_survey.scores beside the KPIs: the tally of people behind each figure, which a later export of the same
# survey is compared with (pulse.anonymity); not a KPI, so neither stored as an observation nor shown.
PEOPLE = "_people"


@dataclass(frozen=True)
class Summary:
    """What is kept of a survey: practice scores and the groups that may be shown."""

    scores: dict[str, float]
    groups: dict[str, Any] | None
    people: dict[str, int]  # pulse.anonymity tally: the people behind each practice figure (stored, never shown)


class OlderExport(Exception):
    """An earlier export of a survey whose later export (more responses) is already stored."""


def ingest_pulse_file(upload: Upload) -> IngestResult:
    """An export is read whole, so one over surveys.yaml's `max_export_mb` is refused before it is read (a 200 MB
    file with a survey's header once took 3 GB)."""
    fp, limit_mb = upload.fingerprint, upload.config.surveys.max_export_mb
    if fp.size > limit_mb * 1_000_000:
        return reject(upload, fp.sha256, [too_big(upload.path, fp.size, limit_mb)], upload.origin.practice_id)
    return ingest_pulse_export(upload, upload.path.read_bytes())


def too_big(path: Path, size: int, limit_mb: float) -> Problem:
    return Problem(1, None, None, f"{path.name} is {size / 1_000_000:,.1f} MB, over the {limit_mb:g} MB limit for a "
                                  "survey export (max_export_mb in surveys.yaml); a staff pulse export is a few "
                                  "kilobytes: is this the right file?")


def ingest_pulse_export(upload: Upload, data: bytes) -> IngestResult:
    """The export's bytes as read (hashed again: what is stored is what was read)."""
    path, config, practice_id = upload.path, upload.config, upload.origin.practice_id
    sha256 = hashlib.sha256(data).hexdigest()
    practice = config.practice(practice_id or "")
    if practice is None:
        where = practice_id or "(none: put the export in inbox/<practice>/ or pass --practice)"
        return reject(upload, sha256, [Problem(1, None, where, "unknown practice for this pulse survey")],
                      practice_id)
    try:
        responses = parse_export(data, config.surveys, upload.survey_tool)
    except SurveyRejected as exc:
        return reject(upload, sha256, exc.problems, practice.id)
    if responses.closed_on > upload.today + dt.timedelta(days=1):
        problem = Problem(1, None, responses.closed_on.isoformat(),
                          "the latest response is dated in the future: check the export's date format")
        return reject(upload, sha256, [problem], practice.id)
    notes = missing_notes(responses)
    try:
        with session_scope(upload.database_url) as session:
            feed = claim_file(session, sha256=sha256, filename=path.name, source=upload.source, practice_id=practice.id,
                              vendor_id=STAFF_VENDOR_ID)
            feed.rows = responses.count
            published = published_survey(session, practice.id, responses)
            summary = summarise(responses, practice, config.surveys, published)
            if published is not None and (why := held_back(published, summary, config.surveys.min_group_size)):
                notes.append(why)
                counts = StoreCounts(0, 0, 0)
            else:
                store_survey(session, practice, responses, summary, sha256, feed.id, published,
                             config.surveys.min_group_size)
                counts = store_observations(session, config, practice, responses.closed_on, summary.scores,
                                            feed.id)
    except DuplicateFile:
        return IngestResult(str(path), "duplicate", kind="pulse", rows=responses.count, practices=[practice.id])
    except OlderExport as exc:
        return reject(upload, sha256, [Problem(1, None, None, str(exc))], practice.id)
    if responses.unmapped_questions:
        # A count only: enough for an operator to look at surveys.yaml, nothing a respondent wrote.
        log.info("%s: %d question(s) not in surveys.yaml", path.name, len(responses.unmapped_questions))
    return IngestResult(str(path), "accepted", kind="pulse", rows=responses.count, counts=counts,
                        practices=[practice.id], notes=notes)


def missing_notes(responses: Responses) -> list[str]:
    """A question of surveys.yaml the export lacks is said, not dropped: a role question Qualtrics headed in a way
    we do not read would otherwise just mean 'no groups'. The texts are surveys.yaml's, never an answer."""
    notes = []
    for question in responses.missing_questions:
        name = quoted(question.text or question.id)
        effect = "results by group are not shown" if question.dimension == "group" else "it is not scored"
        notes.append(f"the question {name!r} of surveys.yaml ({question.dimension}) is not in this export, so "
                     f"{effect}; check its text or id")
    return notes


def reject(upload: Upload, sha256: str, problems: list[Problem], practice_id: str | None) -> IngestResult:
    record_rejection(upload.path, sha256, upload.source, problems, upload.database_url,
                     FeedOrigin(practice_id, STAFF_VENDOR_ID))
    return IngestResult(str(upload.path), "rejected", kind="pulse", problems=problems)


def summarise(responses: Responses, practice: Practice, surveys: SurveysFile,
              published: PulseSurvey | None = None) -> Summary:
    """Scores answered by at least min_group_size people (with fewer responses: participation only), and the
    groups that may be shown; smaller groups are dropped here, before anything is stored. A later export of a
    published survey shows only the groups first published (pulse.anonymity: across time)."""
    minimum = surveys.min_group_size
    members = group_members(responses.respondents)
    sizes = {name: len(people) for name, people in members.items()}
    if published is not None:
        first = {name.casefold() for name in published.groups or {}}
        sizes = {name: size for name, size in sizes.items() if name.casefold() in first}
    groups = {name: {"responses": len(members[name]), "scores": score_respondents(members[name], minimum),
                     "people": tally(members[name])}
              for name in visible_groups(responses.count, sizes, minimum)}
    grouped = bool(members) and (published is None or published.groups is not None)
    return Summary(score(responses, practice.staff_count, minimum), groups if grouped else None,
                   tally(responses.respondents))


def tally(respondents: list[Respondent]) -> dict[str, int]:
    """How many people stand behind each figure: the responses, and those who answered each dimension."""
    counts = {RESPONSES: len(respondents)}
    for respondent in respondents:
        for dimension in respondent.answers:
            counts[dimension] = counts.get(dimension, 0) + 1
    return counts


def held_back(published: PulseSurvey, summary: Summary, min_size: int) -> str | None:
    """Why this later export is not shown yet, in words for the operator; None when it may replace the published
    one. A survey stored before tallies were kept is compared by its responses alone; one too small to show
    showed no answers, so there is nothing to subtract from."""
    if not practice_visible(published.responses, min_size):
        return None
    kept = published.scores.get(PEOPLE)
    old_groups = {name.casefold(): group.get("people") or {RESPONSES: group["responses"]}
                  for name, group in (published.groups or {}).items()}
    new_practice = summary.people if kept else {RESPONSES: summary.people[RESPONSES]}
    new_groups = {name.casefold(): group["people"] if kept else {RESPONSES: group["responses"]}
                  for name, group in (summary.groups or {}).items()}
    why = replacement_held_back((kept or {RESPONSES: published.responses}, old_groups), (new_practice, new_groups),
                                min_size)
    if why is None:
        return None
    return (f"not shown yet: {why}, and the difference would expose them. The {published.responses} responses "
            f"published on {published.closed_on.isoformat()} stay shown until an export of this survey adds at "
            f"least {min_size} (min_group_size)")


def group_members(respondents: list[Respondent]) -> dict[str, list[Respondent]]:
    """Respondents per answer to the grouping question ('front desk' and 'Front Desk' are one group, named as
    first written); those who left it blank belong to no group."""
    names: dict[str, str] = {}
    members: dict[str, list[Respondent]] = {}
    for respondent in respondents:
        if respondent.group is None:
            continue
        name = names.setdefault(respondent.group.casefold(), respondent.group)
        members.setdefault(name, []).append(respondent)
    return members


def published_survey(session: Session, practice_id: str, responses: Responses) -> PulseSurvey | None:
    """The stored (published) export of the same survey, if any; OlderExport if it is later than this one."""
    stored = session.scalars(select(PulseSurvey).where(PulseSurvey.practice_id == practice_id,
                                                       PulseSurvey.opened_on == responses.opened_on)).first()
    if stored is not None and (responses.count < stored.responses or responses.closed_on < stored.closed_on):
        raise OlderExport(f"an export of this survey with more responses ({stored.responses}, the last on "
                          f"{stored.closed_on.isoformat()}) is already stored; this one is older")
    return stored


def store_survey(session: Session, practice: Practice, responses: Responses, summary: Summary, sha256: str,
                 feed_file_id: int, stored: PulseSurvey | None, minimum: int) -> None:
    if stored is None:
        stored = PulseSurvey(practice_id=practice.id, opened_on=responses.opened_on)
        session.add(stored)
    elif stored.closed_on != responses.closed_on:
        move_observations(session, practice.id, stored.closed_on, responses.closed_on)
    stored.sha256, stored.tool, stored.closed_on = sha256, responses.tool, responses.closed_on
    stored.responses, stored.staff_count = responses.count, practice.staff_count
    # The tally only of figures shown: a survey too small to show has nothing a later export could be subtracted from.
    shown = practice_visible(responses.count, minimum)
    stored.scores, stored.groups = {**summary.scores, **({PEOPLE: summary.people} if shown else {})}, summary.groups
    stored.feed_file_id = feed_file_id
    stored.received_at = utcnow()
    session.flush()


def move_observations(session: Session, practice_id: str, old: dt.date, new: dt.date) -> None:
    """A later export closes later: its values revise the same observations, now dated by the new closing day,
    and their revision history moves with them."""
    series = select(Series.id).where(Series.practice_id == practice_id, Series.vendor_id == STAFF_VENDOR_ID)
    label_new_day = text("INSERT INTO period_label (period_start, period_end, label) VALUES (:day, :day, :label)"
                         " ON CONFLICT (period_start, period_end) DO NOTHING")  # unless a value already has it
    session.execute(label_new_day.bindparams(bindparam("day", type_=Date())), {"day": new, "label": new.isoformat()})
    session.execute(update(ObservationValue)
                    .where(ObservationValue.series_id.in_(series), ObservationValue.period_start == old,
                           ObservationValue.period_end == old)
                    .values(period_start=new, period_end=new))
    session.execute(update(ObservationRevision)
                    .where(ObservationRevision.series_id.in_(series), ObservationRevision.period_start == old,
                           ObservationRevision.period_end == old)
                    .values(period_start=new, period_end=new))


def store_observations(session: Session, config: Config, practice: Practice, closed_on: dt.date,
                       scores: dict[str, float], feed_file_id: int) -> StoreCounts:
    period = Period(closed_on, closed_on, closed_on.isoformat())
    rows = [ObservationIn(practice.id, STAFF_VENDOR_ID, kpi, period, "all", value, 1)
            for kpi, value in scores.items() if config.kpi(kpi) is not None]
    connection = session.connection()
    prepare_staging(connection)
    stage(connection, rows)
    return merge(connection, feed_file_id, utcnow())
