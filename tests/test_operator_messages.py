"""Every operator message kind has its wording in alerts/templates/_operator.txt and renders from the facts its
outbox row carries, in every channel; alerts and the digest share one Jinja setup. (Hostile facts through every
channel: tests/test_escaping.py.)"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from jinja2 import StrictUndefined, UndefinedError

from alerts.formats import SHARED_FILTERS
from alerts.messages import FAMILIES, environment, operator_title, render_operator
from alerts.operator import KINDS, FeedRejected, FileSetAside, OperatorFacts, PulseRejected, file_facts
from digest.render import environment as digest_environment
from feeds.validate import Problem
from storage.uploads import IngestResult

MACROS = Path(__file__).parents[1] / "alerts" / "templates" / "_operator.txt"


def sample_facts(kind: type[OperatorFacts]) -> OperatorFacts:
    """Each fact a value of its own (text 'f-<name>', numbers from 3 up), so the rendered text shows which it
    printed."""
    values: dict[str, object] = {}
    for number, (name, hint) in enumerate(typing.get_type_hints(kind).items(), start=3):
        if name != "kind":
            values[name] = f"f-{name}" if hint is str or str in typing.get_args(hint) else number
    return kind(**values)


def macro_names() -> set[str]:
    return set(re.findall(r"\{%-? macro (\w+)\(", MACROS.read_text(encoding="utf-8")))


def test_every_kind_has_a_title_and_a_message_and_every_wording_a_kind() -> None:
    macros = macro_names()
    for kind in KINDS:
        assert {kind, f"{kind}_title"} <= macros, kind
    shared = {"survey_steps"}  # the steps of both staff survey reminders
    orphans = {name for name in macros - shared if name.removesuffix("_title").removesuffix("_steps") not in KINDS}
    assert orphans == set(), "wording no kind uses"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_every_kind_renders_every_fact_it_carries_in_every_channel(kind: type[OperatorFacts], family: str) -> None:
    """StrictUndefined: a macro naming a fact the payload lacks would raise here. And a fact the payload carries
    is there to be said: each one shows (the region of a digest only for a roll-up, so it is given one)."""
    facts = sample_facts(kind)
    payload = {"kind": facts.kind, "facts": facts.as_payload(), "details": ["the one detail"]}
    title = operator_title(facts.kind, facts.as_payload())
    rendered = render_operator(payload, title, family)

    said = title + "\n" + rendered.body
    unsaid = [name for name, value in facts.as_payload().items() if str(value) not in said]
    assert unsaid == [], f"{facts.kind} never says {unsaid}"
    assert title.strip() and "\n" not in title
    assert "the one detail" in rendered.body


def test_a_missing_fact_is_an_error_not_an_empty_word() -> None:
    facts = FeedRejected("maple-clinic/claimright/x.csv", 2, "quarantine/x.csv").as_payload()
    del facts["moved_to"]
    with pytest.raises(UndefinedError):
        render_operator({"kind": "feed_rejected", "facts": facts, "details": []}, "t", "text")


def test_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(UndefinedError):
        operator_title("no_such_kind", {})


def test_a_notification_written_before_kinds_still_renders_its_own_wording() -> None:
    """An outbox row written by the previous release carries its words in `message`; it is delivered as it is."""
    rendered = render_operator({"message": "Nothing was stored <b>", "details": ["row 2: bad"],
                                "exclude_channels": []}, "Feed rejected: x.csv", "email")
    assert "<p>Nothing was stored &lt;b&gt;</p>" in rendered.body and "<li>row 2: bad</li>" in rendered.body


PROBLEM = Problem(2, "value", "abc", "not a number")


@pytest.mark.parametrize(("result", "expected"), [
    (IngestResult("p", "rejected", problems=[PROBLEM], problem_count=1, moved_to="q/x.csv"),
     FeedRejected("maple-clinic/claimright/x.csv", 1, "q/x.csv")),
    (IngestResult("p", "rejected", kind="pulse", problems=[PROBLEM] * 3, problem_count=40),
     PulseRejected("maple-clinic/claimright/x.csv", 40)),
    (IngestResult("p", "rejected", problems=[PROBLEM] * 3, problem_count=0, moved_to="q/x.csv"),
     FeedRejected("maple-clinic/claimright/x.csv", 3, "q/x.csv")),
    (IngestResult("p", "ignored", problems=[PROBLEM], problem_count=1, moved_to="q/ignored/x.csv"),
     FileSetAside("maple-clinic/claimright/x.csv", "q/ignored/x.csv")),
    (IngestResult("p", "accepted"), None),
    (IngestResult("p", "duplicate"), None),
], ids=["feed rejected", "pulse rejected", "count from the list", "set aside", "accepted", "duplicate"])
def test_what_the_operator_is_told_about_an_inbox_file(result: IngestResult, expected: OperatorFacts | None) -> None:
    assert file_facts("maple-clinic/claimright/x.csv", result) == expected


@pytest.mark.parametrize("output_format", ["html", "markdown", "slack", "text"])
def test_alerts_and_the_digest_share_one_jinja_setup(output_format: str) -> None:
    alerts, digest = environment(output_format), digest_environment(output_format)
    for env in (alerts, digest):
        assert env.undefined is StrictUndefined and env.autoescape is True
        assert all(env.filters[name] is shared for name, shared in SHARED_FILTERS.items())
    assert alerts.finalize is not None and digest.finalize is not None
    assert alerts.finalize("<b>x\ny</b>") == digest.finalize("<b>x\ny</b>")
