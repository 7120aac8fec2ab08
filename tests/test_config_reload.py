"""An edited configuration reaches running workers without a restart: validated first, a broken edit refused with
its file and line (the configuration in use stays), the operator told once, and the fix picked up."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from config import Config, load_config
from config.reload import CHECK_SECONDS, SETTLE_SECONDS, ConfigWatch, Refusal
from config.secrets import redact
from storage.db import session_scope
from storage.models import Alert, Notification
from tests.conftest import TEST_CONFIG, stack_env
from tests.support.smtp_capture import CapturedMessage, CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import card_text, drop_in_inbox, recent_months
from tests.worker_process import Worker, started_worker, vendorwatch

ORIGINAL = "denial_rate: {warn: 9.5, crit: 10}"
TIGHTER = "denial_rate: {warn: 8.5, crit: 9}"
BROKEN = "denial_rate: {warn: 8.5, crit: 9}}"  # one brace too many: not YAML
# Its own token, in the shape Apprise accepts: the secret registry is per process, and a token another test
# registered would be masked before the edit and prove nothing.
SLACK_TOKEN = "RlDkq8vWzPa3nT6yHbE0cXuJ"


def copy_config(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(TEST_CONFIG, directory)
    return directory


def edit(path: Path, old: str, new: str) -> int:
    """Replace `old` with `new` in the file; the (1-based) line where it sits."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def settle(path: Path) -> None:
    """As if the edit were a few seconds old: a file is read once it has held still for SETTLE_SECONDS."""
    past = time.time() - SETTLE_SECONDS - 5
    os.utime(path, (past, past))


def edit_settled(path: Path, old: str, new: str) -> int:
    line = edit(path, old, new)
    settle(path)
    return line


def denial_override(config: Config) -> tuple[float | None, float | None]:
    practice = config.practice("maple-clinic")
    assert practice is not None
    override = practice.overrides["denial_rate"]
    return override.warn, override.crit


@pytest.fixture
def channel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test channels.yaml expands these; nothing is sent in the in-process tests."""
    monkeypatch.setenv("TEST_TEAMS_URL", "workflows://127.0.0.1:9/abc123def456/sigABC123xyz")
    monkeypatch.setenv("TEST_ALERT_EMAIL_URL", "mailto://127.0.0.1:9?from=vw@localhost&to=ops@maple.example")
    monkeypatch.setenv("TEST_DIGEST_EMAIL_URL", "mailto://127.0.0.1:9?from=vw@localhost")


def checked(watch: ConfigWatch) -> Refusal | None:
    """A check now, as at a task's start after the minimum interval."""
    watch.checked_at = 0.0
    return watch.check()


@pytest.mark.usefixtures("channel_variables")
def test_an_edited_threshold_is_in_use_at_the_next_check_and_a_touch_reloads_nothing(tmp_path: Path) -> None:
    directory = copy_config(tmp_path)
    watch = ConfigWatch(lambda: directory)
    before = watch()
    assert denial_override(before) == (9.5, 10)

    settle(directory / "practices.yaml")  # a touch: the stat moves, the contents do not
    assert checked(watch) is None
    assert watch() is before, "the same contents were loaded again"

    edit_settled(directory / "practices.yaml", ORIGINAL, TIGHTER)
    assert checked(watch) is None
    assert denial_override(watch()) == (8.5, 9)


@pytest.mark.usefixtures("channel_variables")
def test_a_file_still_being_written_is_left_for_a_later_check(tmp_path: Path) -> None:
    """Half a file (an editor saving in place) must be neither refused to the operator nor taken."""
    directory = copy_config(tmp_path)
    practices = directory / "practices.yaml"
    watch = ConfigWatch(lambda: directory)
    before = watch()
    whole = practices.read_text()
    practices.write_text(whole[: whole.index("overrides:")] + "overrides: {denial_rate: {warn: 8")

    assert checked(watch) is None
    assert watch() is before
    practices.write_text(whole.replace(ORIGINAL, TIGHTER))
    assert checked(watch) is None and watch() is before, "taken before it held still"
    settle(practices)
    assert checked(watch) is None
    assert denial_override(watch()) == (8.5, 9)


@pytest.mark.usefixtures("channel_variables")
def test_an_edit_that_keeps_the_size_and_the_modification_time_is_not_missed(tmp_path: Path) -> None:
    """A copy that keeps the time (rsync -t, cp -p) of a same-size file: the inode's change time tells."""
    directory = copy_config(tmp_path)
    practices = directory / "practices.yaml"
    watch = ConfigWatch(lambda: directory)
    watch()
    edit_settled(practices, ORIGINAL, "denial_rate: {warn: 8.5, crit: 9.1}")
    checked(watch)
    stat = practices.stat()
    edit(practices, "crit: 9.1", "crit: 9.2")
    os.utime(practices, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert practices.stat().st_size == stat.st_size
    assert checked(watch) is None
    assert denial_override(watch()) == (8.5, 9.2)


@pytest.mark.usefixtures("channel_variables")
@pytest.mark.parametrize(
    ("file", "old", "new", "says", "fixed"),
    [
        ("practices.yaml", ORIGINAL, BROKEN, "not valid YAML", TIGHTER),
        ("practices.yaml", ORIGINAL, "denial_rat: {warn: 8.5, crit: 9}", "did you mean denial_rate?", TIGHTER),
        ("channels.yaml", "tags: [email]", "tags: [pager]", "no channel has the tag 'pager'", "tags: [teams]"),
        ("channels.yaml", '"${TEST_DIGEST_EMAIL_URL}"', '"${TEST_UNSET_URL}"', "TEST_UNSET_URL is not set",
         '"${TEST_DIGEST_EMAIL_URL}?name=fixed"'),
    ],
)
def test_a_broken_edit_is_refused_once_with_its_file_and_line_and_the_configuration_in_use_stays(
    tmp_path: Path, file: str, old: str, new: str, says: str, fixed: str
) -> None:
    directory = copy_config(tmp_path)
    watch = ConfigWatch(lambda: directory)
    before = watch()
    line = edit_settled(directory / file, old, new)

    refusal = checked(watch)
    assert refusal is not None
    assert any(problem.startswith(f"{directory / file}:{line}: ") and says in problem
               for problem in refusal.problems), refusal.problems
    assert watch() is before
    assert checked(watch) is None, "the same broken version is reported once per process"

    edit_settled(directory / file, new, fixed)
    assert checked(watch) is None
    assert watch() == load_config(directory) != before, "the fix was not taken"


@pytest.mark.usefixtures("channel_variables")
def test_a_channel_added_by_an_edit_has_its_secrets_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = copy_config(tmp_path)
    watch = ConfigWatch(lambda: directory)
    watch()
    monkeypatch.setenv("TEST_SLACK_URL", f"slack://T1JJ3T3L2/A1BRTD4JD/{SLACK_TOKEN}")
    assert SLACK_TOKEN in redact(f"posted with {SLACK_TOKEN}"), "masked before the edit: the test proves nothing"
    edit_settled(directory / "channels.yaml", "urls:\n", 'urls:\n  - "${TEST_SLACK_URL}":\n      - tag: slack\n')

    assert checked(watch) is None
    assert "slack" in {tag for channel in watch().channels for tag in channel.tags}
    assert redact(f"posted with {SLACK_TOKEN}") == "posted with ***"


def test_a_claim_is_won_by_the_first_caller_only_on_the_embedded_broker_and_on_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    from config.settings import get_settings
    from tasks.once import claim_once, release

    for broker in (None, redis_url):
        monkeypatch.setenv("VENDORWATCH_DATA_DIR", str(tmp_path / "var"))
        if broker:
            monkeypatch.setenv("VENDORWATCH_BROKER_URL", broker)
        else:
            monkeypatch.delenv("VENDORWATCH_BROKER_URL", raising=False)
        get_settings.cache_clear()
        assert [claim_once("config-refused-abc"), claim_once("config-refused-abc")] == [True, False], broker
        assert claim_once("config-refused-def"), "another name is its own claim"
        release("config-refused-abc")
        assert claim_once("config-refused-abc"), "a released claim can be taken again"
    get_settings.cache_clear()


def test_a_worker_refuses_to_start_on_an_invalid_configuration(
    tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    directory = copy_config(tmp_path)
    line = edit(directory / "practices.yaml", ORIGINAL, BROKEN)
    env = stack_env(tmp_path / "var", postgres_url, redis_url, teams_server, smtp_server, config_dir=directory)
    result = vendorwatch("worker", env=env, check=False, timeout=60)
    assert result.returncode == 1
    assert f"{directory / 'practices.yaml'}:{line}: not valid YAML" in result.stderr


# --- a real worker (two prefork children) on Redis and PostgreSQL --------------------------------------------------

TASK_DONE = re.compile(r"Task (\S+)\[[^\]]+\] (succeeded|raised|failed)")
REFUSED_WARNING = "configuration edit refused; the previous configuration stays in use"


def bytes_read(pid: int) -> int:
    """What the process has read so far (pipes and sockets too): an idle pool child reads nothing, one that runs a
    task reads the task and the database's answers. The worker's log does not say which child ran a task."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def wait_for(condition: Callable[[], object], worker: Worker, message: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}; worker log:\n{worker.tail()}")


def evaluate_on_both_children(worker: Worker, client: Celery) -> None:
    """Evaluations until each prefork child has run one from now on (so each has checked its files)."""
    children = worker.pool_children()
    assert len(children) == 2, children
    before = {pid: bytes_read(pid) for pid in children}
    since, sent = len(worker.log), 0
    deadline = time.monotonic() + 60
    while any(bytes_read(pid) == before[pid] for pid in children):
        assert time.monotonic() < deadline, "both children never ran a task:\n" + worker.tail()
        # A burst: a child busy with one hands the next to the other (one at a time, the first child takes all).
        for _ in range(4):
            client.send_task("alerts.evaluate", kwargs={"practice_id": "maple-clinic"}, queue="vendorwatch")
        sent += 4
        time.sleep(0.5)
    wait_for(lambda: len([line for line in worker.log[since:] if TASK_DONE.search(line)]) >= sent, worker,
             "the evaluations to finish")
    assert not [line for line in worker.log[since:] if re.search(r"Task \S+ (raised|failed)", line)], worker.tail()


def maple_alert(database_url: str) -> tuple[str, str]:
    with session_scope(database_url) as session:
        alert = session.scalars(select(Alert).where(Alert.rule == "threshold", Alert.kpi == "denial_rate")).one()
        return alert.state, alert.severity


def refusal_titles(database_url: str) -> list[str]:
    with session_scope(database_url) as session:
        titles = session.scalars(select(Notification.title).where(Notification.kind == "operator")).all()
    return [title for title in titles if title.startswith("Configuration edit refused")]


def refusal_mail(smtp: CapturingSMTPServer) -> list[CapturedMessage]:
    return [mail for mail in smtp.messages if "Configuration edit refused" in str(mail.message["Subject"])]


def test_a_running_worker_takes_an_edit_refuses_a_broken_one_telling_the_operator_once_then_takes_the_fix(
    tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
    smtp_server: CapturingSMTPServer,
) -> None:
    directory = copy_config(tmp_path)
    practices = directory / "practices.yaml"
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, postgres_url, redis_url, teams_server, smtp_server, config_dir=directory)
    month = recent_months(1)[0]
    feed = tmp_path / "claimright.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,{month},9.2\n")
    vendorwatch("ingest", str(feed), env=env)
    client = Celery(broker=redis_url)

    with started_worker(env) as worker:
        # 9.2% is inside the contract's 9.5% warning limit; both children load that configuration.
        evaluate_on_both_children(worker, client)
        assert teams_server.requests == []

        # The contract tightens to 9%: the next evaluation, in whichever child, finds 9.2% critical.
        edit(practices, ORIGINAL, TIGHTER)
        time.sleep(SETTLE_SECONDS + CHECK_SECONDS + 0.5)  # held still, then a check
        evaluate_on_both_children(worker, client)
        [card] = teams_server.wait_for(1, timeout=30)
        assert "9.2%" in card_text(card.json()) and "Critical" in card_text(card.json())
        assert maple_alert(postgres_url) == ("firing", "critical")

        # A broken edit: refused by every child, told once; the tightened limits stay in use, so a corrected
        # 8.7% is a warning (the original limits would resolve it).
        broken_since = len(worker.log)
        line = edit(practices, TIGHTER, BROKEN)
        time.sleep(SETTLE_SECONDS + CHECK_SECONDS + 0.5)  # held still, then a check
        client.send_task("ingest.file", args=[str(drop_in_inbox(data_dir / "inbox", "correction.csv",
                                                                f"kpi,period,value\ndenial_rate,{month},8.7\n"))],
                         queue="vendorwatch")
        wait_for(lambda: maple_alert(postgres_url) == ("firing", "warning"), worker, "the corrected value judged")
        evaluate_on_both_children(worker, client)
        evaluate_on_both_children(worker, client)
        where = f"{practices}:{line}"
        wait_for(lambda: refusal_titles(postgres_url), worker, "the operator alert")
        wait_for(lambda: refusal_mail(smtp_server), worker, "the operator's email")
        operator_mail = refusal_mail(smtp_server)
        assert len(operator_mail) == 1
        assert "practices.yaml:" + str(line) in str(operator_mail[0].message["Subject"])
        body = operator_mail[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"{where}: not valid YAML" in body
        warnings = [entry for entry in worker.log[broken_since:] if REFUSED_WARNING in entry]
        assert len(warnings) == 1, worker.tail()
        assert any(where in entry for entry in worker.log[broken_since:]), worker.tail()

        # The fix, back to the original limits: picked up, and 8.7% is inside them.
        edit(practices, BROKEN, ORIGINAL)
        time.sleep(SETTLE_SECONDS + CHECK_SECONDS + 0.5)  # held still, then a check
        evaluate_on_both_children(worker, client)
        wait_for(lambda: maple_alert(postgres_url)[0] == "resolved", worker, "the alert resolved under the fix")
        time.sleep(1)
        assert len(refusal_titles(postgres_url)) == 1, "the operator is told once, not once per child or task"
        assert len(refusal_mail(smtp_server)) == 1
