"""Hostile names through every template of every channel.

Names come from configuration (practice, vendor, region, KPI label) and from feeds (a vendor feed's segment, a staff
group named by a pulse survey's answers), and the same sentences are printed into HTML, Markdown, Slack's mrkdwn and
plain text. Each hostile string below is put into all of those names at once; the digest world of
tests/test_digest_seed.py is built with them through the real path (feeds ingested and evaluated on PostgreSQL), its
alerts are delivered to Teams (a real TLS server on loopback), Slack (the one mock: Slack's host, at the HTTP
boundary) and email (aiosmtpd), and its practice digest and regional roll-up are sent by email. Every message is
then read as its reader would see it: the name must be there, whole and on one line, and nothing of it may act as
markup (no tag, no mention, no link, no emphasis, no forged line or header).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import html
import json
import re
import shutil
import subprocess
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import responses
import yaml
from apprise.plugins.slack import NotifySlack
from jinja2 import nodes
from sqlalchemy import select

import config as config_package
from alerts.delivery import deliver
from alerts.formats import segment_label
from alerts.messages import operator_title, render_operator
from alerts.operator import KINDS as OPERATOR_KINDS
from alerts.operator import OperatorFacts, enqueue_operator_alert
from config import Config, load_config
from config.schema import Route, RouteMatch
from digest.send import preview, send_digest, send_region_digest
from storage.db import session_scope
from storage.models import Notification
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_digest_seed import (
    AFTER_SEND,
    PRACTICES,
    REGIONS,
    WEEK,
    billing_feed,
    evaluate_at,
    ingest_at,
    months,
    pulse_export,
)
from tests.test_slack import SLACK_URL, WEBHOOK

HOSTILE = {
    "html tag": "<b>x</b>",
    "script": "<script>alert(1)</script>",
    "slack here": "<!here>",
    "slack user": "<@U123>",
    "markdown link": "[click](https://evil.example)",
    "bold": "*bold*",
    "italic": "_it_",
    "line break and heading": "x\n# Heading",
    "html entity": "&amp;",
}
ROLE_QUESTION = "Which best describes your role?"
CHANNELS_YAML = """\
dry_run: false
urls:
  - "${TEST_TEAMS_URL}":
      - tag: teams
  - "${TEST_SLACK_URL}":
      - tag: slack
  - "${TEST_ALERT_EMAIL_URL}":
      - tag: email
  - "${TEST_DIGEST_EMAIL_URL}":
      - tag: digest
routes:
  - when: {kind: operator}
    tags: [email]
  - when: {severity: critical}
    tags: [teams, slack, email]
digest: digest
"""
INVISIBLE = dict.fromkeys(map(ord, "\u2060\u200b"))
# What a Slack reader sees for the look-alike characters a message may use instead of mrkdwn's formatting marks.
SLACK_LOOKS_LIKE = str.maketrans({"\u2217": "*", "\uff3f": "_", "\u223c": "~", "\u02cb": "`", "\u2216": "\\"})


@dataclass(frozen=True)
class Names:
    """The names that carry the hostile text, as configured (the segment and staff group arrive in feeds)."""

    practice: str
    other_practice: str
    vendor: str
    late_vendor: str
    region: str
    kpi: str
    segment: str
    staff_group: str


def one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text)


def names_with(hostile: str) -> Names:
    return Names(practice=f"Maple {hostile}", other_practice=f"Pine {hostile}", vendor=f"Acme {hostile} RCM",
                 late_vendor=f"Remindly {hostile}", region=f"Mountain {hostile}", kpi=f"Initial denial rate {hostile}",
                 segment=f"payer:Acme {one_line(hostile)}",  # feeds refuse a line break in a segment
                 staff_group=f"Front desk {hostile}")


def hostile_config(directory: Path, names: Names) -> Config:
    """The seed world's practices with hostile names, the KPI catalog with hostile labels, and Slack besides Teams
    and email for critical alerts."""
    practices = copy.deepcopy(PRACTICES)
    maple = practices[0]
    maple["name"] = names.practice
    maple["vendors"][0]["name"] = names.vendor  # type: ignore[index]
    maple["vendors"][1]["name"] = names.late_vendor  # type: ignore[index]
    practices[1]["name"] = names.other_practice
    regions = {key: {**region, "name": names.region} for key, region in REGIONS.items()}
    catalog = yaml.safe_load((Path(config_package.__file__).parent / "kpis.yaml").read_text(encoding="utf-8"))
    catalog["kpis"]["denial_rate"]["label"] = names.kpi
    directory.mkdir(parents=True)
    (directory / "practices.yaml").write_text(yaml.safe_dump({"regions": regions, "practices": practices},
                                                             sort_keys=False), encoding="utf-8")
    (directory / "kpis.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False, allow_unicode=True),
                                         encoding="utf-8")
    (directory / "channels.yaml").write_text(CHANNELS_YAML, encoding="utf-8")
    return load_config(directory)


def segment_row(path: Path, segment: str) -> Path:
    """A critical denial rate for one payer segment, its name quoted as CSV quotes a cell with a line break."""
    quoted = '"' + segment.replace('"', '""') + '"'
    path.write_text(f"practice,vendor,kpi,period,value,segment\nmaple-clinic,claimright,denial_rate,2026-10,12.5,"
                    f"{quoted}\n", encoding="utf-8")
    return path


def pulse_with_group(path: Path, group: str) -> Path:
    """The seed's 12-answer staff pulse export, half of it answering the role question with `group`: two groups of
    six, which the anonymity rule lets the digest show by name."""
    with pulse_export(path, 12).open(newline="", encoding="utf-8") as source:
        rows = list(csv.reader(source))
    role = rows[0].index(ROLE_QUESTION)
    for row in rows[1:7]:
        row[role] = group
    with path.open("w", newline="", encoding="utf-8") as target:
        csv.writer(target).writerows(rows)
    return path


def seed_hostile_world(tmp: Path, names: Names) -> Config:
    """tests/test_digest_seed.py's story (critical denials this week, a resolved charge lag, a late feed, a staff
    pulse), told with hostile names, plus a segmented alert and a staff group the digest shows by name."""
    config = hostile_config(tmp / "config", names)
    history = months("2024-07", "2026-09")
    ingest_at(dt.datetime(2026, 10, 12, 15, tzinfo=dt.UTC), billing_feed(tmp / "history.csv", history), config)
    evaluate_at(dt.datetime(2026, 10, 15, 12, tzinfo=dt.UTC), config)
    ingest_at(dt.datetime(2026, 11, 17, 15, tzinfo=dt.UTC),
              billing_feed(tmp / "2026-10.csv", ["2026-10"], offset=len(history)), config)
    ingest_at(dt.datetime(2026, 11, 17, 16, tzinfo=dt.UTC), segment_row(tmp / "segment.csv", names.segment), config)
    ingest_at(dt.datetime(2026, 11, 2, 15, tzinfo=dt.UTC), pulse_with_group(tmp / "pulse.csv", names.staff_group),
              config, practice="maple-clinic")
    evaluate_at(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC), config)
    return config


@pytest.fixture
def slack_http() -> Iterator[responses.RequestsMock]:
    """Slack's host answers 200; the Teams server on loopback is real, so requests to it pass through."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, WEBHOOK, status=200, body="ok")
        mock.add_passthru("https://127.0.0.1")
        yield mock


@pytest.fixture
def hostile_env(vw_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TEST_SLACK_URL", SLACK_URL)
    return vw_env


# What each reader sees ------------------------------------------------------------------------------------------


class VisibleHTML(HTMLParser):
    """The text a browser shows (character references decoded) and every element the markup makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.elements: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_html(source: str) -> tuple[str, list[str]]:
    parser = VisibleHTML()
    parser.feed(source)
    return " ".join(" ".join(parser.text).split()), parser.elements


def read_markdown(source: str) -> str:
    """CommonMark backslash escapes undone, as Teams shows them."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", source).translate(INVISIBLE)


def read_slack(source: str) -> str:
    """Slack's three entities decoded and its look-alike characters read as what they look like."""
    decoded = source.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return decoded.translate(INVISIBLE).translate(SLACK_LOOKS_LIKE)


# What must hold in each -----------------------------------------------------------------------------------------


def missing(seen: str, names: list[str], any_of: bool = False) -> list[str]:
    """The names a reader cannot find (in any case: a heading may be upper case); with any_of, none at all if one
    of them is there."""
    absent = [f"{name!r} is not readable" for name in names
              if " ".join(one_line(name).split()).casefold() not in seen.casefold()]
    return [] if any_of and len(absent) < len(names) else absent


def html_problems(source: str, hostile: str, names: list[str], template_elements: set[str]) -> list[str]:
    seen, elements = read_html(source)
    problems = missing(seen, names)
    problems += [f"element <{tag}> came from a name" for tag in set(elements) - template_elements]
    # An escaped "&amp;" still holds "&amp;": that one is proven by the reader seeing it.
    if "<" in hostile:
        problems += [f"raw {hostile!r} in the HTML"] if hostile in source else []
    return problems


def text_problems(source: str, hostile: str, names: list[str]) -> list[str]:
    problems = missing(" ".join(source.split()), names)
    if "\n" in hostile:
        forged = hostile.split("\n", 1)[1]
        problems += [f"forged line {line!r}" for line in source.splitlines() if line.lstrip().startswith(forged)]
    return problems


def markdown_problems(source: str, hostile: str, names: list[str]) -> list[str]:
    problems = missing(" ".join(read_markdown(source).split()), names)
    if re.search(r"(?<!\\)" + re.escape(one_line(hostile)), source):
        problems.append(f"{hostile!r} is live Markdown")
    problems += [f"link {link!r}" for link in re.findall(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", source)]
    problems += [f"mention {tag!r}" for tag in re.findall(r"<at>", source, re.IGNORECASE)]
    problems += [f"heading line {line!r}" for line in source.splitlines() if line.lstrip().startswith("#")]
    problems += [f"bare link in {line!r}" for line in source.splitlines() if "https://evil" in line]
    return problems


def slack_problems(source: str, hostile: str, names: list[str]) -> list[str]:
    problems = missing(" ".join(read_slack(source).split()), names)
    # The templates write no Slack link or mention, so any < or > is a name's.
    problems += [f"raw {mark!r} (mention or link)" for mark in "<>" if mark in source]
    core = re.sub(r"[*_~`]", "", hostile)
    if core != hostile and re.search(r"[*_~`]" + re.escape(core) + r"[*_~`]", source):
        problems.append(f"{hostile!r} formats in mrkdwn")
    problems += [f"bare link in {line!r}" for line in source.splitlines() if "https://evil" in line]
    if "\n" in hostile:
        heading = hostile.split("\n", 1)[1].lstrip("# ")
        problems += [f"forged line {line!r}" for line in source.splitlines()
                     if line.lstrip("*# ").startswith(heading)]
    return problems


def slack_title_problems(source: str, hostile: str) -> list[str]:
    """A Slack attachment title is plain text (no mrkdwn): only <, > and & act, and Slack may link a bare URL."""
    problems = [f"raw {mark!r} (mention or link)" for mark in "<>" if mark in source]
    problems += [f"bare link in {source!r}"] if "https://evil" in source else []
    return problems + text_problems(source, hostile, [])


# Delivery --------------------------------------------------------------------------------------------------------


def deliver_alerts(config: Config) -> int:
    with session_scope() as session:
        ids = session.scalars(select(Notification.id).where(Notification.kind == "alert")).all()
        for notification_id in ids:
            report = deliver(session, config, notification_id)
            assert report.claimed and not report.failed and not report.rejected, report
    return len(ids)


def teams_blocks(server: CapturingHTTPSServer) -> list[tuple[str, str, dict[str, Any]]]:
    """(title, body, msteams metadata) of each card Teams received."""
    cards = []
    for request in server.requests:
        content = request.json()["attachments"][0]["content"]
        texts = {block.get("id"): block["text"] for block in content["body"] if block["type"] == "TextBlock"}
        cards.append((texts["title"], texts["body"], content["msteams"]))
    return cards


def slack_messages(mock: responses.RequestsMock) -> list[tuple[str, str]]:
    messages = []
    for call in mock.calls:
        if call.request.url != WEBHOOK:
            continue
        body = call.request.body
        [attachment] = json.loads(body.decode() if isinstance(body, bytes) else str(body))["attachments"]
        messages.append((str(attachment["title"]), str(attachment["text"])))
    return messages


def parts_of(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}


def template_elements(directory: Path) -> set[str]:
    """Every element an HTML template of ours writes."""
    return {tag.lower() for path in directory.glob("*.html")
            for tag in re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", path.read_text(encoding="utf-8"))}


ALERT_ELEMENTS = template_elements(Path(__file__).parents[1] / "alerts" / "templates")
DIGEST_ELEMENTS = template_elements(Path(__file__).parents[1] / "digest" / "templates")


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_name_is_escaped_for_every_channel_and_still_readable(
    hostile: str, hostile_env: dict[str, str], tmp_path: Path, slack_http: responses.RequestsMock,
    teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer,
) -> None:
    names = names_with(hostile)
    config = seed_hostile_world(tmp_path, names)
    sent = deliver_alerts(config)
    with session_scope() as session:
        assert send_digest(session, config, config.practice("maple-clinic"), WEEK,  # type: ignore[arg-type]
                           now=AFTER_SEND).status == "sent"
        assert send_region_digest(session, config, "mountain", WEEK, now=AFTER_SEND).status == "sent"

    problems: list[str] = []
    cards, slack = teams_blocks(teams_server), slack_messages(slack_http)
    assert len(cards) == len(slack) == sent >= 2, (len(cards), len(slack), sent)
    alert_names = [names.practice, names.vendor, names.kpi, segment_label(names.segment)]  # as readers name it
    teams_bodies = " ".join(body for _, body, _ in cards)
    slack_bodies = " ".join(body for _, body in slack)
    problems += [f"Teams: {p}" for p in markdown_problems(teams_bodies, hostile, alert_names)]
    problems += [f"Teams: mention entities {meta['entities']}" for *_, meta in cards if "entities" in meta]
    practices = [names.practice, names.other_practice]
    problems += [f"Teams title: {p}" for title, _, _ in cards for p in markdown_problems(title, hostile, [])]
    problems += [f"Teams title: {p}" for title, _, _ in cards
                 for p in missing(" ".join(read_markdown(title).split()), practices, any_of=True)]
    problems += [f"Slack: {p}" for p in slack_problems(slack_bodies, hostile, alert_names)]
    problems += [f"Slack title: {p}" for title, _ in slack for p in slack_title_problems(title, hostile)]
    problems += [f"Slack title: {p}" for title, _ in slack
                 for p in missing(" ".join(read_slack(title).split()), practices, any_of=True)]

    mails = smtp_server.wait_for(sent + 2)
    for mail in mails:
        subject = str(mail.message["Subject"])
        problems += [f"subject {subject!r}: {p}" for p in text_problems(subject, hostile, [])]
        problems += [f"subject {subject!r}: {p}" for p in missing(" ".join(subject.split()),
                                                                  [*practices, names.region], any_of=True)]
        problems += [f"subject {subject!r} has a line break"] if re.search(r"[\r\n]", subject) else []
    digests = [mail for mail in mails if "week " + WEEK in str(mail.message["Subject"])]
    region = [mail for mail in digests if "roll-up" in parts_of(mail.message)["text/plain"]]
    assert len(digests) == 2 and len(region) == 1, [str(mail.message["Subject"]) for mail in mails]
    alert_mails = [mail for mail in mails if mail not in digests]
    alert_html = " ".join(parts_of(mail.message)["text/html"] for mail in alert_mails)
    problems += [f"email alert: {p}" for p in html_problems(alert_html, hostile, alert_names, ALERT_ELEMENTS)]
    alert_text = "\n".join(parts_of(mail.message)["text/plain"] for mail in alert_mails)
    problems += [f"email alert text: {p}" for p in text_problems(alert_text, hostile, [])]

    [practice_digest] = [mail for mail in digests if mail not in region]
    digest_names = [names.practice, names.vendor, names.kpi, names.late_vendor, names.staff_group,
                    segment_label(names.segment)]
    for kind, mail, shown in (("digest", practice_digest, digest_names),
                              ("region roll-up", region[0], [names.region, *practices, names.vendor])):
        parts = parts_of(mail.message)
        problems += [f"{kind} HTML: {p}" for p in html_problems(parts["text/html"], hostile, shown, DIGEST_ELEMENTS)]
        problems += [f"{kind} text: {p}" for p in text_problems(parts["text/plain"], hostile, shown)]

    assert not problems, "\n".join(problems)


# The browser -----------------------------------------------------------------------------------------------------

BROWSER_NAME = "Acme <!here> <b>RCM</b> <script>document.title='pwned'</script><img src=x onerror=alert(1)>"


def test_a_hostile_digest_in_chromium_has_no_injected_element(
    hostile_env: dict[str, str], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is required for this test (apt-get install chromium)"
    names = names_with(BROWSER_NAME)
    config = seed_hostile_world(tmp_path, names)
    with session_scope() as session:
        [page] = [path for path in preview(session, config, config.practice("maple-clinic"),  # type: ignore[arg-type]
                                           WEEK, tmp_path / "preview", now=AFTER_SEND) if path.suffix == ".html"]

    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=2000",
                             "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    seen, elements = read_html(result.stdout)
    injected = {"script", "img"} & set(elements)
    assert not injected, f"the browser built {injected} from a name"
    assert "<b>RCM</b>" not in result.stdout, "the name's <b> became an element"
    title = re.search(r"<title>(.*?)</title>", result.stdout, re.S)
    assert title and html.unescape(title.group(1)).startswith("Action needed"), "a script rewrote the title"
    assert " ".join(names.vendor.split()) in seen, "the vendor's name is not shown as written"


# A template line nobody has written yet --------------------------------------------------------------------------

def as_slack_receives(markdown: str) -> str:
    """Apprise's own step from the Markdown we hand it to the mrkdwn Slack is sent (as delivery does)."""
    return str(NotifySlack._commonmark_to_slack(markdown))


NEW_LINE = '{% import "_macros.txt" as m %}New line: {{ name }}; next step: {{ m.next_step(c) }}'
READERS = {"html": lambda source: read_html(source)[0], "markdown": read_markdown, "slack": read_slack,
           "text": lambda source: source}


@pytest.mark.parametrize("output_format", READERS)
@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_new_template_line_escapes_names_without_being_told(output_format: str, hostile: str) -> None:
    """Escaping belongs to the format's environment: a line that prints a name, directly or through a shared
    macro, with no filter at all, is escaped for its format and the name stays readable."""
    from alerts.messages import environment

    name = f"Acme {hostile} RCM"
    change = {"vendor": "acme", "vendor_name": name, "event": "opened", "severity": "critical", "learning": False}
    source = environment(output_format).from_string(NEW_LINE).render(name=name, c=change)
    if output_format == "slack":
        source = as_slack_receives(source)

    seen = " ".join(READERS[output_format](source).split())
    assert seen.count(" ".join(one_line(name).split())) == 2, f"the name is not readable twice in {seen!r}"
    check = {"html": lambda: html_problems(source, hostile, [], {"p"}),
             "markdown": lambda: markdown_problems(source, hostile, []),
             "slack": lambda: slack_problems(source, hostile, []),
             "text": lambda: text_problems(source, hostile, [])}[output_format]
    assert not check(), check()
    assert "\n" not in source, "a name forged a line"


@pytest.mark.parametrize("output_format", ["markdown", "slack"])
def test_an_underscore_inside_a_word_stays_as_typed_in_chat(output_format: str) -> None:
    """Only a mark that could format is neutralised: payer:blue_cross and claims_denied.csv read as written."""
    from alerts.messages import environment

    name = "payer:blue_cross claims_denied.csv"
    source = environment(output_format).from_string("{{ name }}").render(name=name)
    if output_format == "slack":
        source = as_slack_receives(source)
    assert name in source, source


# Operator messages ----------------------------------------------------------------------------------------------

def hostile_facts(kind: type[OperatorFacts], hostile: str) -> OperatorFacts:
    """Every text fact of an operator message carries the hostile string (each its own, to find it again); numbers
    are numbers."""
    values: dict[str, object] = {}
    for name, hint in typing.get_type_hints(kind).items():
        if name == "kind":
            continue
        values[name] = f"{name} {hostile} end" if hint is str or str in typing.get_args(hint) else 2
    return kind(**values)


def shown_facts(facts: OperatorFacts) -> list[str]:
    return [value for value in facts.as_payload().values() if isinstance(value, str)]


def operator_payload(facts: OperatorFacts, hostile: str) -> dict[str, Any]:
    return {"kind": facts.kind, "facts": facts.as_payload(), "details": [f"row 2 of {hostile}.csv: bad value"]}


def operator_problems(family: str, title: str, body: str, hostile: str, names: list[str]) -> list[str]:
    """What is wrong with an operator message as its channel's reader sees it. The title is checked apart: Slack
    and email show it as plain text (the plugin escapes Slack's), Teams as a Markdown heading."""
    if family == "teams":
        return markdown_problems(body, hostile, names) + markdown_problems(title, hostile, [])
    if family == "slack":
        # The title's < > & are the plugin's to escape (the delivery test reads them in Slack's payload).
        return (slack_problems(body, hostile, names) + text_problems(title.translate(INVISIBLE), hostile, [])
                + (["bare link in the title"] if "https://evil" in title else []))
    if family == "email":
        return (html_problems(body, hostile, names, {"div", "p", "ul", "li"}) + text_problems(title, hostile, [])
                + (["line break in the title"] if "\n" in title else []))
    return text_problems(body, hostile, names) + text_problems(title, hostile, [])


@pytest.mark.parametrize("family", ["teams", "slack", "email", "text"])
@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("kind", OPERATOR_KINDS.values(), ids=OPERATOR_KINDS.keys())
def test_every_operator_message_quoting_hostile_facts_is_escaped_for_its_channel(
    kind: type[OperatorFacts], hostile: str, family: str
) -> None:
    """Operator messages quote file names, paths, titles, names and errors; in chat they are Markdown like any
    message, and every fact (and the detail lines) must be readable and act as nothing."""
    facts = hostile_facts(kind, hostile)
    title = operator_title(facts.kind, facts.as_payload())
    message = render_operator(operator_payload(facts, hostile), title, family)

    body = as_slack_receives(message.body) if family == "slack" else message.body
    names = [*shown_facts(facts), f"row 2 of {hostile}.csv: bad value"]
    problems = operator_problems(family, message.title, body, hostile, names)
    assert not problems, problems


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_every_operator_message_is_delivered_escaped_to_teams_slack_and_email(
    hostile: str, hostile_env: dict[str, str], tmp_path: Path, slack_http: responses.RequestsMock,
    teams_server: CapturingHTTPSServer, smtp_server: CapturingSMTPServer,
) -> None:
    """Through the outbox and the real channels: what Teams, Slack and the mail server receive for each kind."""
    loaded = hostile_config(tmp_path / "config", names_with(hostile))
    config = dataclasses.replace(loaded, routes=[Route(when=RouteMatch(kind="operator"),
                                                       tags=["teams", "slack", "email"])])
    all_facts = [hostile_facts(kind, hostile) for kind in OPERATOR_KINDS.values()]
    detail = f"row 2 of {hostile}.csv: bad value"
    with session_scope() as session:
        for facts in all_facts:
            notification_id = enqueue_operator_alert(session, config, facts, details=[detail])
            assert notification_id is not None
            report = deliver(session, config, notification_id)
            assert report.claimed and not report.failed and not report.rejected, report

    cards, slack, mails = teams_blocks(teams_server), slack_messages(slack_http), smtp_server.wait_for(len(all_facts))
    assert len(cards) == len(slack) == len(mails) == len(all_facts)
    problems: list[str] = []
    for facts, (title, body, meta), (slack_title, slack_body), mail in zip(all_facts, cards, slack, mails,
                                                                           strict=True):
        names = [*shown_facts(facts), detail]
        problems += [f"Teams {facts.kind}: {p}" for p in markdown_problems(body, hostile, names)]
        problems += [f"Teams {facts.kind} title: {p}" for p in markdown_problems(title, hostile, [])]
        problems += [f"Teams {facts.kind}: mention entities"] if "entities" in meta else []
        problems += [f"Slack {facts.kind}: {p}" for p in slack_problems(slack_body, hostile, names)]
        problems += [f"Slack {facts.kind} title: {p}" for p in slack_title_problems(slack_title, hostile)]
        subject = str(mail.message["Subject"])
        problems += [f"subject {subject!r}: {p}" for p in text_problems(subject, hostile, [])]
        problems += [f"subject {subject!r} has a line break"] if re.search(r"[\r\n]", subject) else []
        parts = parts_of(mail.message)
        problems += [f"email {facts.kind}: {p}" for p in html_problems(parts["text/html"], hostile, names,
                                                                       {"div", "p", "ul", "li"})]
    assert not problems, "\n".join(problems)


# The one way to get around the escaping -------------------------------------------------------------------------

TEXT_LIKE_TEMPLATES = {
    Path(__file__).parents[1] / "alerts" / "templates": ("*.md", "*.slack", "*.txt"),
    Path(__file__).parents[1] / "digest" / "templates": ("*.txt",),
}


def concat_mixes(template: nodes.Template) -> list[str]:
    """`a ~ b` where one side is already escaped (a macro's output, a `{% set %}` block, wrap) and another is a raw
    value: Jinja then HTML-escapes the raw side and marks the whole as escaped, so a Markdown, Slack or text
    template would print that value unescaped for its format."""
    macros = {macro.name for macro in template.find_all(nodes.Macro)}
    macros |= {str(node.target) for node in template.find_all(nodes.Import)}
    blocks = {str(node.target.name) for node in template.find_all(nodes.AssignBlock)
              if isinstance(node.target, nodes.Name)}

    def escaped(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Call):
            callee = node.node
            return (isinstance(callee, nodes.Name) and callee.name in macros) or (
                isinstance(callee, nodes.Getattr) and isinstance(callee.node, nodes.Name)
                and callee.node.name in macros)
        return (isinstance(node, nodes.Name) and node.name in blocks) or (
            isinstance(node, nodes.Filter) and node.name == "wrap")

    mixes = []
    for concat in template.find_all(nodes.Concat):
        parts = concat.nodes
        if any(escaped(part) for part in parts) and any(
                not escaped(part) and not isinstance(part, nodes.Const) for part in parts):
            mixes.append(f"line {concat.lineno}")
    return mixes


def test_no_markdown_slack_or_text_template_joins_escaped_output_to_a_raw_value() -> None:
    from digest.render import environment

    env = environment("text")  # the digest's has the `do` extension its templates use; parsing is all it does here
    paths = sorted(path for directory, patterns in TEXT_LIKE_TEMPLATES.items() for pattern in patterns
                   for path in directory.glob(pattern))
    found = [f"{path.parent.parent.name}/templates/{path.name} {where}" for path in paths
             for where in concat_mixes(env.parse(path.read_text(encoding="utf-8")))]
    assert len(paths) >= 10, paths
    assert found == [], "write a {% set %} block instead: " + ", ".join(found)
