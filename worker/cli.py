"""`vendorwatch`: the operator's command line. Exit codes: 0 ok, 1 failure, 2 usage error, 3 input rejected."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table
from typer.core import TyperGroup

from config import Config, ConfigError, load_config
from pulse.detect import SurveyTool

EXIT_FAILURE, EXIT_REJECTED = 1, 3
CONFIG_HELP = "Configuration directory (default $VENDORWATCH_CONFIG, else ./config)."
JSON_HELP = "Machine-readable output on stdout."


def config_given_after(ctx: typer.Context, value: Path | None) -> None:
    if value is not None:
        ctx.obj.use_config_dir(value)


def json_given_after(ctx: typer.Context, value: bool) -> None:
    if value:
        ctx.obj.as_json = True


def after_command_options(
    config: Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP, callback=config_given_after,
                                                expose_value=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP, callback=json_given_after,
                                          expose_value=False)] = False,
) -> None:
    """Only its signature counts: typer builds the two options from it."""


def shared_options() -> list[Any]:
    """Fresh --config and --json options, built by typer from `after_command_options`."""
    holder = typer.Typer(add_completion=False)
    holder.command()(after_command_options)
    return list(typer.main.get_command(holder).params)


class SharedOptionsGroup(TyperGroup):
    """The README promises --config and --json on every command, and operators type them where they think of
    them: `vendorwatch --json alerts list` and `vendorwatch alerts list --json` alike. The root reads them before
    the command (main_options); each command and sub-group of a SharedOptionsGroup also reads them after its name,
    with callbacks that set the same Options the root made (a click context inherits its parent's obj)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.commands.values():
            command.params.extend(shared_options())


cli = typer.Typer(
    cls=SharedOptionsGroup, pretty_exceptions_show_locals=False,
    add_completion=False, no_args_is_help=True, help="Watch outsourcing vendors: feeds, alerts, digests."
)
rerun_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True,
                        help="Enqueue the same Celery task the schedule uses.")
alerts_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True, help="Alert operations.")
db_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True, help="Database schema.")
notify_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True, help="Channel checks.")
feeds_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True, help="Feed freshness.")
history_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True,
                          help="What happened: files, revisions, deliveries, reruns, pulls, digests.")
vendors_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True, help="Vendors across practices.")
cli.add_typer(rerun_cli, name="rerun")
cli.add_typer(alerts_cli, name="alerts")
cli.add_typer(db_cli, name="db")
cli.add_typer(notify_cli, name="notify")
cli.add_typer(feeds_cli, name="feeds")
remits_cli = typer.Typer(cls=SharedOptionsGroup, no_args_is_help=True,  # remits (issue 16)
                         help="Figures recomputed from the payers' 835 remittances.")
cli.add_typer(remits_cli, name="remits")
cli.add_typer(history_cli, name="history")
cli.add_typer(vendors_cli, name="vendors")

PIPED_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """soft_wrap: an error line names a file, row and column; it must stay one line in CI and cron logs. Piped
    (a log, `| less`, a cron mail), rich would squeeze tables to 80 columns and cut every cell; give them room."""
    terminal = Console(stderr=stderr).is_terminal
    return Console(stderr=stderr, soft_wrap=True, width=None if terminal else PIPED_WIDTH)


out = make_console()
err = make_console(stderr=True)


@dataclass
class Options:
    config_dir: Path
    as_json: bool

    def use_config_dir(self, config_dir: Path) -> None:
        """Everything that reads the configuration (the CLI, tasks run in this process) asks the settings."""
        from config.settings import get_settings

        os.environ["VENDORWATCH_CONFIG"] = str(config_dir)
        get_settings.cache_clear()
        self.config_dir = get_settings().config

    def config(self) -> Config:
        try:
            return load_config(self.config_dir)
        except ConfigError as exc:
            raise config_failure(exc) from exc


def config_failure(exc: ConfigError) -> typer.Exit:
    """Print every problem (file, line, what) and give the exit that stops the command."""
    for problem in exc.problems:
        err.print(f"[red]config error[/red] {problem}", highlight=False, markup=True)
    return typer.Exit(EXIT_FAILURE)


def json_default(value: object) -> str:
    """Dates and times as ISO 8601 (2026-11-23T13:13:56+00:00), which every JSON consumer parses."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def emit(ctx: typer.Context, data: Any, human: str | Table | None = None) -> None:
    from config.secrets import redact

    if ctx.obj.as_json:
        sys.stdout.write(redact(json.dumps(data, indent=2, default=json_default)) + "\n")
    elif human is not None:
        out.print(redact(human) if isinstance(human, str) else human)


@cli.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help=CONFIG_HELP),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    logging.basicConfig(
        level=os.environ.get("VENDORWATCH_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from config import secrets

    secrets.install()  # before anything reads a URL: urllib3 logs request lines (a Teams `sig=`) at DEBUG
    from config.settings import get_settings

    get_settings.cache_clear()
    ctx.obj = Options(config_dir=get_settings().config, as_json=as_json)
    if config is not None:
        ctx.obj.use_config_dir(config)


def prepare_database() -> None:
    """The embedded SQLite database is created and migrated on first use; a server database is migrated by
    `db upgrade` alone (one deliberate step, see docker-compose.yml), so a command run before it stops here and
    says so, instead of a traceback about a missing table."""
    from config.settings import get_settings
    from storage.db import upgrade

    if get_settings().resolved_database_url().startswith("sqlite"):
        upgrade()
        return
    if (missing := missing_schema()) is not None:
        err.print(f"[red]error[/red] {missing}", highlight=False)
        raise typer.Exit(EXIT_FAILURE)


def missing_schema() -> str | None:
    """What is missing from the database's schema, or None when it has every migration this vendorwatch knows.
    A schema newer than this vendorwatch (a rollback) is let through: it may well still work."""
    from storage.db import head_revision, migrations_between, schema_revision

    current, head = schema_revision(), head_revision()
    if current is None:
        return "the database has no schema yet: run `vendorwatch db upgrade`"
    if current != head and current in migrations_between(None, head):
        return f"the database schema is at {current}, this vendorwatch needs {head}: run `vendorwatch db upgrade`"
    return None


@cli.command()
def demo(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the digests and alert copies go.")] = Path(
        "out"
    ),
) -> None:
    """Run the whole flow on bundled synthetic data: no servers needed."""
    from worker.demo.run import run_demo

    summary = run_demo(out_dir, console=err if ctx.obj.as_json else out)
    emit(ctx, summary)


@cli.command()
def worker(
    beat: Annotated[
        bool, typer.Option("--beat", help="Also run the beat scheduler in this process.")
    ] = False,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="Celery node name, e.g. billing@%h (default celery@<host>); give each worker on one "
        "host its own.")] = None,
) -> None:
    """Run the Celery worker."""
    load_worker_config()
    prepare_database()
    from alerts.delivery import load_channel_plugins
    from storage.db import get_engine
    from worker.app import app
    from worker.metrics import reset_multiprocess_dir

    reset_multiprocess_dir()

    get_engine().dispose()  # the schema check's connection: the prefork children must not inherit it
    load_channel_plugins()  # in the parent: every prefork child inherits the imported plugins
    exit_with(lambda: app.start(worker_argv(loglevel, concurrency, beat, name)))


def worker_argv(loglevel: str, concurrency: int, beat: bool, name: str | None) -> list[str]:
    """Celery's worker arguments. Two workers on one host named alike (Celery's default celery@host) are one node
    to Celery's control commands and the log: `--name` gives each its own. The default stays celery@host, which
    `vendorwatch status` and the compose healthcheck (`inspect ping --destination celery@$HOSTNAME`) address."""
    argv = ["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}"]
    if name:
        argv.append(f"--hostname={name}")
    return [*argv, "--beat"] if beat else argv


def load_worker_config() -> None:
    """An invalid configuration stops the start, naming file and line. Loaded here, in the parent, every prefork
    child inherits a valid configuration, and keeps it when a later edit is broken (tasks/context.py)."""
    from tasks.context import current_config

    try:
        current_config()
    except ConfigError as exc:
        raise config_failure(exc) from exc


@cli.command()
def beat(loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO") -> None:
    """Run the beat scheduler. On Redis a second one waits as a hot standby (celery-redbeat lock)."""
    from worker.app import app

    exit_with(lambda: app.start(["beat", f"--loglevel={loglevel}"]))


def exit_with(run: Any) -> None:
    """Pass Celery's exit code on, so a supervisor (systemd Restart=on-failure, compose restart: on-failure) sees a
    worker or beat that gave up as failed, not as done."""
    from worker.beat import BeatGaveUp

    try:
        code = run()
    except BeatGaveUp as error:
        err.print(f"beat: {error}; exiting")
        raise typer.Exit(1) from error
    raise typer.Exit(int(code or 0))


@cli.command()
def watch(
    settle: Annotated[float, typer.Option(help="Seconds a finished file must hold still.")] = 1.0,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Watch the inbox and enqueue each file that lands in it (event-driven ingestion)."""
    import signal
    import threading

    from config.settings import get_settings
    from intake.watch import watch_inbox
    from tasks.ingest import ingest_file
    from worker.app import app

    app.set_current()  # ingest_file is a shared task: it is sent through the current app, ours

    logging.getLogger().setLevel(loglevel.upper())
    log = logging.getLogger("vendorwatch.watch")
    inbox = get_settings().inbox
    inbox.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    # SIGTERM (docker stop) and SIGINT end the loop, so the observer thread is stopped and joined.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def enqueue(path: Path) -> None:
        # settled=True: the watcher saw the upload finish, so the worker skips its own stability wait.
        ingest_file.delay(str(path), settled=True)
        log.info("enqueued %s", path.name)  # the name only; the worker logs the ingest outcome

    watch_inbox(inbox, enqueue, settle_seconds=settle, stop=stop)


@cli.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="Feed files or staff pulse exports.", exists=True, dir_okay=False)
    ],
    practice: Annotated[str | None, typer.Option(help="Practice, for files that do not name it.")] = None,
    vendor: Annotated[str | None, typer.Option(help="Vendor, for files that do not name it (wide CSV).")] = None,
    evaluate: Annotated[
        bool, typer.Option(help="Evaluate rules for the practices whose data changed.")
    ] = True,
    survey_tool: Annotated[
        SurveyTool | None,
        typer.Option(help="Read the files as this tool's pulse export (detected from the header when omitted)."),
    ] = None,
) -> None:
    """Ingest files now; exit 3 if any file is rejected."""
    from intake.ingest import ingest_path

    config = ctx.obj.config()
    prepare_database()
    results = []
    show_progress = sys.stderr.isatty() and not ctx.obj.as_json and len(paths) > 1
    from remits.keys import RemitKeyMissing  # remits (issue 16)

    for path in track(paths, description="Ingesting", console=err) if show_progress else paths:
        try:
            results.append(ingest_path(path, config, source="cli", practice=practice, vendor=vendor,
                                       survey_tool=survey_tool.value if survey_tool else None))
        except RemitKeyMissing as exc:  # the operator's setting, not the file: exit 1, the file untouched
            err.print(f"error: {path}: {exc}", highlight=False)
            raise typer.Exit(1) from None
    changed = sorted({p for r in results if r.changed for p in r.practices})
    evaluations = run_evaluation(config, changed) if evaluate and changed else []
    emit(ctx, {"files": [r.as_dict() for r in results], "evaluations": evaluations})
    if not ctx.obj.as_json:
        print_ingest_results(results)
    if any(r.status == "rejected" for r in results):
        raise typer.Exit(EXIT_REJECTED)


def print_ingest_results(results: list[Any]) -> None:
    for result in results:
        colour = {"accepted": "green", "duplicate": "yellow", "rejected": "red"}[result.status]
        # A pulse export's rows are people and what it stores are scores: never count the two as one thing.
        rows, stored = ("responses", " scores") if result.kind == "pulse" else ("rows", "")
        rows = "claims" if result.kind == "remits" else rows  # remits (issue 16)
        detail = (
            f"{result.rows} {rows}" if result.status != "rejected" else f"{len(result.problems)} problem(s)"
        )
        if result.counts:
            detail += f", {result.counts.inserted} new{stored}, {result.counts.revised} revised{stored}"
        out.print(f"[{colour}]{result.status}[/{colour}] {result.path}: {detail}", highlight=False)
        for note in result.notes:
            out.print(f"  {result.path}: {note}", highlight=False, markup=False)
        for problem in result.problems:
            err.print(f"  {result.path}: {problem}", highlight=False, markup=False)


def deliver_now(config: Config, notification_id: int) -> dict[str, Any]:
    """Deliver one outbox row in this process, and the operator alert a permanent failure raises; transient
    failures stay in the outbox for the worker's retries."""
    from alerts.delivery import DeliveryIncomplete, deliver
    from config.settings import get_settings
    from storage.db import session_scope

    with session_scope() as session:
        try:
            report = deliver(session, config, notification_id, dry_run_dir=get_settings().data_dir / "dry-run")
        except DeliveryIncomplete as exc:
            return {"error": str(exc)}
    outcome = vars(report)
    if report.operator_notification_id is not None:
        outcome["operator_alert"] = deliver_now(config, report.operator_notification_id)
    return outcome


def run_evaluation(
    config: Config, practices: list[str] | None, as_of: dt.date | None = None
) -> list[dict[str, Any]]:
    """Evaluate, then deliver what the evaluation put in the outbox (failures stay there for the worker)."""
    from alerts.evaluate import evaluate_practices

    reports = []
    targets = practices if practices is not None else [None]
    for practice_id in targets:
        for result in evaluate_practices(config, practice_id=practice_id, as_of=as_of):
            entry = result.as_dict()
            if result.notification_id is not None:
                entry["delivery"] = deliver_now(config, result.notification_id)
            reports.append(entry)
    return reports


@cli.command()
def evaluate(
    ctx: typer.Context,
    practice: Annotated[str | None, typer.Option(help="Only this practice.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Evaluate as of this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Evaluate rules now and send what changed."""
    config = ctx.obj.config()
    prepare_database()
    day = parse_date(as_of)
    reports = run_evaluation(config, [practice] if practice else None, day)
    table = Table("practice", "event", "severity", "vendor", "KPI", "value", "period")
    for report in reports:
        for change in report["changes"]:
            table.add_row(
                report["practice"],
                change["event"],
                change["severity"],
                change["vendor"],
                change["kpi"],
                str(change["value"]),
                change["period"],
            )
    emit(ctx, reports, table if table.row_count else "no alert changed")


def parse_date(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from exc


@cli.command()
def digest(
    ctx: typer.Context,
    practice: Annotated[str | None, typer.Option(help="Only this practice.")] = None,
    region: Annotated[str | None, typer.Option(help="Only this region's roll-up.")] = None,
    week: Annotated[str | None, typer.Option(help="ISO week, YYYY-Www (default: this week).")] = None,
    preview: Annotated[
        Path | None, typer.Option(help="Write what would be sent (.html, .txt, .eml) to this folder instead.")
    ] = None,
    resend: Annotated[bool, typer.Option(help="Send again even if this week's digest went out.")] = False,
    all_: Annotated[
        bool, typer.Option("--all", help="Every practice's digest and every region's roll-up.")
    ] = False,
) -> None:
    """Build and send (or preview) the weekly digests: each practice's, and each region's roll-up."""
    from digest.send import preview as preview_practice
    from digest.send import preview_region, send_digest, send_region_digest
    from storage.db import session_scope

    require_digest_targets(practice, region, all_, preview)
    config = ctx.obj.config()
    prepare_database()
    week = digest_week(week)
    practices, regions = digest_targets(config, practice, region)
    if resend and preview is None:
        record_rerun("digest.resend", {"practice_id": practice, "region": region, "week": week, "all": all_})
    results: list[dict[str, Any]] = []
    with session_scope() as session:
        for item in practices:
            if preview is not None:
                results.append(files_result(item.id, week, preview_practice(session, config, item, week, preview)))
            else:
                results.append(sent_result(item.id, week, lambda: send_digest(
                    session, config, item, week, resend=resend)))  # noqa: B023 (called at once)
        for key in regions:
            if preview is not None:
                results.append(files_result(key, week, preview_region(session, config, key, week, preview)))
            else:
                results.append(sent_result(key, week, lambda: send_region_digest(
                    session, config, key, week, resend=resend)))  # noqa: B023 (called at once)
    emit(ctx, results, "\n".join(describe_digest(result) for result in results))
    if any(result.get("status") == "failed" for result in results):
        raise typer.Exit(EXIT_FAILURE)


def require_digest_targets(practice: str | None, region: str | None, all_: bool, preview: Path | None) -> None:
    """Email to every practice and region at once only when asked in so many words: a bare `vendorwatch digest`
    (a mistyped or half-remembered command) must not mail all leadership off schedule. A preview sends nothing."""
    chosen = practice is not None or region is not None
    if all_ and chosen:
        raise typer.BadParameter("--all sends every digest; leave out --practice and --region, or drop --all")
    if not (chosen or all_ or preview is not None):
        raise typer.BadParameter("say which digests to send: add --practice P, --region R, or --all for every "
                                 "practice and region (or --preview DIR to write them to disk instead)")


def digest_week(week: str | None) -> str:
    from digest.schedule import iso_week, parse_week

    try:
        return parse_week(week) if week else iso_week(dt.date.today())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--week") from exc


def digest_targets(config: Config, practice: str | None, region: str | None) -> tuple[list[Any], list[str]]:
    """--practice and/or --region pick one each; neither (--all, or a preview): every practice and every region
    with a leader."""
    from digest.region import regions_of

    regions = regions_of(config)
    if practice is not None and config.practice(practice) is None:
        raise typer.BadParameter(f"unknown practice {practice!r}", param_hint="--practice")
    if region is not None and region not in regions:
        raise typer.BadParameter(f"no region {region!r} in practices.yaml `regions:`", param_hint="--region")
    if practice is None and region is None:
        return list(config.practices), list(regions)
    return [p for p in config.practices if p.id == practice], [r for r in regions if r == region]


def files_result(key: str, week: str, files: list[Path]) -> dict[str, Any]:
    return {"key": key, "week": week, "files": [str(f) for f in files]}


def sent_result(key: str, week: str, send: Any) -> dict[str, Any]:
    """One digest's outcome; a refused email is reported and the others still go out."""
    from digest.mail import DigestNotSent

    try:
        return vars(send())
    except DigestNotSent as exc:
        return {"key": key, "week": week, "status": "failed", "error": str(exc)}


def describe_digest(result: dict[str, Any]) -> str:
    where = f"{result['key']} {result['week']}"
    if "files" in result:
        return f"{where}: wrote " + ", ".join(result["files"])
    detail = result.get("subject") or result.get("error") or ""
    return f"{where}: {result['status']}" + (f" ({detail})" if detail else "")


@rerun_cli.command("evaluate")
def rerun_evaluate(
    ctx: typer.Context,
    practice: Annotated[str | None, typer.Option(help="Only this practice.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD")] = None,
) -> None:
    """Enqueue alerts.evaluate."""
    parse_date(as_of)
    enqueue(ctx, "alerts.evaluate", {"practice_id": practice, "as_of": as_of})


@rerun_cli.command("digest")
def rerun_digest(
    ctx: typer.Context,
    practice: Annotated[str | None, typer.Option(help="The practice.")] = None,
    region: Annotated[str | None, typer.Option(help="Or the region (its roll-up).")] = None,
    week: Annotated[str | None, typer.Option(help="ISO week, YYYY-Www (default: this week).")] = None,
    resend: Annotated[bool, typer.Option(help="Send again even if it went out.")] = False,
) -> None:
    """Enqueue digest.weekly (a practice) or digest.region (a region's roll-up)."""
    if (practice is None) == (region is None):
        raise typer.BadParameter("give --practice or --region")
    config = ctx.obj.config()
    digest_targets(config, practice, region)
    week = digest_week(week)
    if practice is not None:
        enqueue(ctx, "digest.weekly", {"practice_id": practice, "week": week, "resend": resend})
    else:
        enqueue(ctx, "digest.region", {"region": region, "week": week, "resend": resend})


@rerun_cli.command("ingest")
def rerun_ingest(ctx: typer.Context) -> None:
    """Enqueue ingest.scan_inbox (every waiting inbox file)."""
    enqueue(ctx, "ingest.scan_inbox", {})


@rerun_cli.command("pull")
def rerun_pull(
    ctx: typer.Context,
    practice: Annotated[str | None, typer.Option(help="Only this practice's vendors.")] = None,
    vendor: Annotated[str | None, typer.Option(help="Only this vendor.")] = None,
) -> None:
    """Enqueue feeds.pull_all, or feeds.pull for the matching vendors with a pull: entry."""
    if practice is None and vendor is None:
        enqueue(ctx, "feeds.pull_all", {})
        return
    from feeds.pull import pull_targets

    targets = [
        (p.id, v.id) for p, v in pull_targets(ctx.obj.config()) if practice in (None, p.id) and vendor in (None, v.id)
    ]
    if not targets:
        raise typer.BadParameter(f"no vendor with a pull: entry matches practice={practice} vendor={vendor}")
    for practice_id, vendor_id in targets:
        enqueue(ctx, "feeds.pull", {"practice_id": practice_id, "vendor_id": vendor_id})


def record_rerun(task: str, arguments: dict[str, Any], task_id: str | None = None) -> None:
    """Who asked for what to run again, for `vendorwatch history reruns`."""
    from worker.reruns import record_rerun as record

    record(task, arguments, operator_name(), task_id)


def enqueue(ctx: typer.Context, task: str, arguments: dict[str, Any]) -> None:
    from worker.reruns import request_rerun

    prepare_database()
    task_id = request_rerun(task, arguments, operator_name())
    emit(
        ctx,
        {"task": task, "task_id": task_id, "arguments": arguments},
        f"enqueued {task} {json.dumps(arguments)} as {task_id}",
    )


@alerts_cli.command("list")
def alerts_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="pending, firing or resolved.")] = None,
) -> None:
    """List alerts with their rule, practice, vendor, KPI, segment, severity, state and times."""
    from sqlalchemy import select

    from alerts.decide import is_silenced
    from alerts.lifecycle import active_silences
    from storage.db import session_scope
    from storage.models import Alert, utcnow

    prepare_database()
    with session_scope() as session:
        query = select(Alert).order_by(Alert.practice_id, Alert.vendor_id, Alert.kpi, Alert.rule)
        silences = active_silences(session, utcnow())
        data = [alert_row(a, is_silenced(a.practice_id, a.vendor_id, a.kpi, silences, utcnow()))
                for a in session.scalars(query) if state in (None, a.state)]
    table = Table("id", "rule", "practice", "vendor", "KPI", "segment", "severity", "state", "value", "period",
                  "since", "note")
    for item in data:
        note = "acknowledged" if item["acknowledged_at"] else ("silenced" if item["silenced"] else "")
        table.add_row(*(str(item[key]) for key in ("id", "rule", "practice", "vendor", "kpi", "segment",
                                                    "severity", "state", "value", "period")),
                      f"{item['started_at']:%Y-%m-%d %H:%M}", note)
    emit(ctx, data, table)


def alert_row(alert: Any, silenced: bool) -> dict[str, Any]:
    fields = ("id", "rule", "kpi", "segment", "severity", "state", "value", "threshold", "period", "learning",
              "started_at", "updated_at", "resolved_at", "last_notified_at", "acknowledged_at", "acknowledged_by")
    row = {name: getattr(alert, name) for name in fields}
    return {**row, "practice": alert.practice_id, "vendor": alert.vendor_id, "silenced": silenced}


def operator_name() -> str:
    return os.environ.get("VENDORWATCH_OPERATOR") or getpass.getuser()


def run_operation(ctx: typer.Context, action: Any) -> Any:
    from alerts.operations import AlertOperationError
    from storage.db import session_scope

    prepare_database()
    try:
        with session_scope() as session:
            return action(session)
    except AlertOperationError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILURE) from exc


@alerts_cli.command("ack")
def alerts_ack(
    ctx: typer.Context,
    alert_id: Annotated[int, typer.Argument(help="The alert's id (vendorwatch alerts list).")],
) -> None:
    """Acknowledge a firing alert: no repeats until its severity changes."""
    from alerts.operations import acknowledge

    def act(session: Any) -> dict[str, Any]:
        alert = acknowledge(session, alert_id, operator_name())
        return {"id": alert.id, "acknowledged_at": alert.acknowledged_at, "acknowledged_by": alert.acknowledged_by}

    result = run_operation(ctx, act)
    emit(ctx, result, f"alert {alert_id} acknowledged by {result['acknowledged_by']}")


def parse_until(until: str | None, duration: str | None) -> dt.datetime:
    from storage.models import utcnow

    if (until is None) == (duration is None):
        raise typer.BadParameter("give exactly one of --until or --for")
    if duration is not None:
        units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
        if len(duration) < 2 or duration[-1] not in units or not duration[:-1].isdigit():
            raise typer.BadParameter(f"{duration!r}: use a number and m, h, d or w (e.g. 3d)")
        return utcnow() + dt.timedelta(seconds=int(duration[:-1]) * units[duration[-1]])
    try:
        moment = dt.datetime.fromisoformat(str(until))
    except ValueError as exc:
        raise typer.BadParameter(f"{until!r} is not a date or date-time (YYYY-MM-DD[THH:MM])") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@alerts_cli.command("silence")
def alerts_silence(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why: shown to whoever wonders later.")],
    practice: Annotated[str | None, typer.Option(help="Only this practice.")] = None,
    vendor: Annotated[str | None, typer.Option(help="Only this vendor.")] = None,
    kpi: Annotated[str | None, typer.Option(help="Only this KPI (or 'feed' for late-feed alerts).")] = None,
    until: Annotated[str | None, typer.Option(help="End, YYYY-MM-DD[THH:MM] (UTC unless an offset is given).")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Duration instead of --until: 30m, 12h, 3d, 2w.")] = None,
) -> None:
    """Mute notifications for matching alerts until a time; alerts still change state and show in the digest."""
    from alerts.operations import add_silence

    config = ctx.obj.config()
    if practice is not None and config.practice(practice) is None:
        raise typer.BadParameter(f"unknown practice {practice!r}")
    if kpi is not None and kpi != "feed" and config.kpi(kpi) is None:
        raise typer.BadParameter(f"unknown KPI {kpi!r}")
    ends_at = parse_until(until, for_)

    def act(session: Any) -> dict[str, Any]:
        silence = add_silence(session, practice=practice, vendor=vendor, kpi=kpi, ends_at=ends_at, reason=reason,
                              by=operator_name())
        return {"id": silence.id, "practice": practice, "vendor": vendor, "kpi": kpi, "ends_at": silence.ends_at,
                "reason": silence.reason, "created_by": silence.created_by}

    result = run_operation(ctx, act)
    emit(ctx, result, f"silence {result['id']} until {result['ends_at']:%Y-%m-%d %H:%M} UTC")


@alerts_cli.command("unsilence")
def alerts_unsilence(
    ctx: typer.Context,
    silence_id: Annotated[int, typer.Argument(help="The silence's id (vendorwatch alerts silences).")],
) -> None:
    """Lift a silence now."""
    from alerts.operations import lift_silence

    result = run_operation(ctx, lambda session: {"id": lift_silence(session, silence_id, operator_name()).id})
    emit(ctx, result, f"silence {silence_id} lifted")


@alerts_cli.command("silences")
def alerts_silences(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include ended and lifted silences.")] = False,
) -> None:
    """List silences."""
    from alerts.operations import list_silences

    def act(session: Any) -> list[dict[str, Any]]:
        return [{"id": s.id, "practice": s.practice_id, "vendor": s.vendor_id, "kpi": s.kpi,
                 "starts_at": s.starts_at, "ends_at": s.ends_at, "reason": s.reason, "created_by": s.created_by,
                 "lifted_at": s.lifted_at} for s in list_silences(session, include_ended=all_)]

    rows = run_operation(ctx, act)
    table = Table("id", "practice", "vendor", "KPI", "until", "reason", "by")
    for row in rows:
        table.add_row(str(row["id"]), row["practice"] or "any", row["vendor"] or "any", row["kpi"] or "any",
                      f"{row['ends_at']:%Y-%m-%d %H:%M}", row["reason"], row["created_by"])
    emit(ctx, rows, table)


@feeds_cli.command("status")
def feeds_status(ctx: typer.Context) -> None:
    """Per vendor: the newest period received, the last file, the next feed due, and late or not."""
    from rich.text import Text

    from feeds.status import feed_status
    from storage.db import session_scope

    config = ctx.obj.config()
    prepare_database()
    with session_scope() as session:
        rows = feed_status(session, config, dt.date.today())
    table = Table("practice", "vendor", "cadence", "latest period", "last file", "next due", "late")
    for row in rows:
        last_file = row["last_file_at"]
        if row["late"]:
            days, overdue = row["days_late"], row["periods_overdue"]
            late = Text(
                f"LATE {days} day{'s' if days != 1 else ''}"
                + (f" ({overdue} periods overdue)" if overdue > 1 else ""),
                style="red",
            )
        else:
            late = Text("on time", style="green")
        table.add_row(
            row["practice"],
            row["vendor"],
            row["cadence"],
            row["latest_period"] or "none",
            last_file.strftime("%Y-%m-%d %H:%M UTC") if last_file is not None else "never",
            f"{row['expected_period']} on {row['due_on'].isoformat()}",
            late,
        )
    emit(ctx, rows, table)


# --- remits (issue 16) ---------------------------------------------------------------------------------------------
@remits_cli.command("summary")
def remits_summary(
    ctx: typer.Context,
    practice: Annotated[str, typer.Option(help="Practice id.")],
    month: Annotated[str | None, typer.Option(help="Only this month of payment (YYYY-MM).")] = None,
    payer: Annotated[str | None, typer.Option(help="Only this payer (id or name, as in kpis.yaml).")] = None,
) -> None:
    """Per month of payment and payer: claims, denials, first-pass denial rate, payments, days to payment."""
    from remits.summary import payer_id_of, summary
    from storage.db import session_scope

    config = ctx.obj.config()
    if config.practice(practice) is None:
        raise usage_error(f"unknown practice {practice!r}")
    payer_id = payer_id_of(config, payer) if payer else None
    if payer and payer_id is None:
        raise usage_error(f"unknown payer {payer!r} (kpis.yaml remits.payers)")
    prepare_database()
    with session_scope() as session:
        figures = summary(session, config, practice, parse_month(month), payer_id)
    rows = [f.as_dict() for f in figures]
    emit(ctx, {"practice": practice, "months": rows}, remits_table(rows) if rows else "no remittances stored")


def parse_month(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise usage_error(f"--month {text!r}: use YYYY-MM") from None


def usage_error(message: str) -> typer.Exit:
    err.print(f"error: {message}", highlight=False)
    return typer.Exit(2)


def remits_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("month", "payer", "claims", "denied", "1st-pass denial", "by $", "payments", "PLB",
                  "patient resp.", "contractual", "days median", "days p90", "top denial reasons")

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    for row in rows:
        reasons = ", ".join(f"{name} {count}" for name, count in list(row["denial_categories"].items())[:3])
        table.add_row(row["month"], row["payer"], f"{row['claims_adjudicated']:,}", f"{row['claims_denied']:,}",
                      rate(row["first_pass_denial_rate"]), rate(row["first_pass_denial_rate_dollars"]),
                      f"${row['payments']:,.2f}", f"${row['provider_adjustments']:,.2f}",
                      f"${row['patient_responsibility']:,.2f}", f"${row['contractual_adjustments']:,.2f}",
                      "-" if row["days_to_payment_median"] is None else f"{row['days_to_payment_median']:g}",
                      "-" if row["days_to_payment_p90"] is None else str(row["days_to_payment_p90"]),
                      reasons or "-")
    return table
# --- end remits -----------------------------------------------------------------------------------------------------
@vendors_cli.command("compare")
def vendors_compare(
    ctx: typer.Context,
    vendor: Annotated[str, typer.Option(help="Vendor id as in practices.yaml.")],
    kpi: Annotated[str | None, typer.Option(help="One KPI (default: every KPI the vendor reports).")] = None,
    month: Annotated[str | None, typer.Option(help="YYYY-MM (default: the vendor's newest period).")] = None,
) -> None:
    """One vendor's KPIs across the practices it serves: median, best, worst and each practice's rank.

    The operator's view, every practice by name. A practice's own digest shows such figures only when at least
    `peer_minimum` (practices.yaml) practices it may not name report the KPI."""
    from digest.peers import fields_for, latest_period, served_by
    from digest.portfolio import compare
    from storage.db import session_scope

    config = ctx.obj.config()
    names = {p.id: p.name for p in config.practices}
    vendor_names = {v.id: v.name for p in config.practices for v in p.vendors}
    if vendor not in vendor_names:
        raise typer.BadParameter(f"no practice in practices.yaml names vendor '{vendor}'", param_hint="--vendor")
    if month is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise typer.BadParameter(f"'{month}' is not a month: use YYYY-MM", param_hint="--month")
    if kpi is not None and config.kpi(kpi) is None:
        raise typer.BadParameter(f"'{kpi}' is not in the KPI catalog (kpis.yaml)", param_hint="--kpi")
    prepare_database()
    with session_scope() as session:
        period = latest_period(session, vendor, month)
        fields = {} if period is None else fields_for(session, config, vendor, *period)
    comparisons = [compare(found, vendor_names[vendor], names) for key, found in sorted(fields.items())
                   if kpi in (None, key)]
    data = [dict(asdict(c), practices=c.practices) for c in comparisons]
    table = Table("KPI", "period", "median", "best", "worst", "practice", "value", "rank")
    for c in comparisons:
        for index, standing in enumerate(c.standings):
            head = (c.kpi_label, c.period, f"{c.median:g}", f"{c.best:g}", f"{c.worst:g}") if index == 0 else ("",) * 5
            table.add_row(*head, standing.practice_name, f"{standing.value:g}", f"{standing.rank} of {c.practices}")
    emit(ctx, data, table if comparisons else f"no figures for {vendor} ({len(served_by(config).get(vendor, ()))} "
                                               f"practices) {'in ' + month if month else 'yet'}")


@cli.command()
def review(
    ctx: typer.Context,
    vendor: Annotated[str, typer.Option(help="Vendor id as in practices.yaml.")],
    quarter: Annotated[str, typer.Option(help="YYYY-Qn, e.g. 2026-Q4.")],
    out: Annotated[Path, typer.Option(help="Folder for the HTML, PDF and CSV.")],
    practice: Annotated[str | None, typer.Option(help="One practice (default: every practice it serves).")] = None,
) -> None:
    """The quarterly review pack for a vendor: HTML, its PDF (headless Chromium) and a CSV of every figure."""
    from digest.review import build_review, parse_quarter, write_pack
    from storage.db import session_scope

    config = ctx.obj.config()
    try:
        parse_quarter(quarter)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quarter") from exc
    prepare_database()
    try:
        with session_scope() as session:
            built = build_review(session, config, vendor, quarter, practice)
        files = write_pack(built, out)
    except (ValueError, RuntimeError) as exc:
        err.print(f"[red]review not written[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(EXIT_FAILURE) from exc
    emit(ctx, {"vendor": vendor, "quarter": quarter, "files": [str(path) for path in files]},
         "\n".join(f"wrote {path}" for path in files))


@notify_cli.command("test")
def notify_test(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="Only channels with this tag.")] = None,
) -> None:
    """Send a test message to the channels."""
    from alerts.delivery import send_one
    from alerts.messages import Rendered

    config = ctx.obj.config()
    message = Rendered(
        "vendorwatch test message", "If you can read this, vendorwatch can reach this channel.", "text"
    )
    results = []
    for channel in config.channels:
        if tag is not None and tag not in channel.tags:
            continue
        error = None if config.dry_run else send_one(channel, message, "info")
        results.append(
            {"channel": channel.label, "ok": error is None, "error": error, "dry_run": config.dry_run}
        )
    emit(
        ctx,
        results,
        "\n".join(
            f"{'ok  ' if r['ok'] else 'FAIL'} {r['channel']}"
            f"{' (dry run)' if r['dry_run'] else ''} {r['error'] or ''}"
            for r in results
        ),
    )
    if any(not r["ok"] for r in results):
        raise typer.Exit(EXIT_FAILURE)


@cli.command()
def status(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None,
        typer.Option("--check", help="Only these checks (repeatable): broker, database, workers, beat, outbox, "
                     "inbox. For container healthchecks."),
    ] = None,
) -> None:
    """Is vendorwatch doing its job? Broker, database, workers, beat, outbox and inbox; exit 1 when unhealthy."""
    from config.settings import get_settings
    from worker.status import CHECK_NAMES, is_healthy, system_status

    unknown = sorted(set(only or ()) - set(CHECK_NAMES))
    if unknown:
        raise typer.BadParameter(f"no check {', '.join(unknown)}; the checks are {', '.join(CHECK_NAMES)}")
    checks = [check for check in system_status(get_settings()) if not only or check.name in only]
    healthy = is_healthy(checks)
    table = Table("check", "state", "detail")
    for check in checks:
        state = {True: "[green]ok[/green]", False: "[red]UNHEALTHY[/red]", None: "[yellow]unknown[/yellow]"}
        table.add_row(check.name, state[check.healthy], check.detail)
    emit(ctx, {"healthy": healthy, "checks": [check.as_dict() for check in checks]}, table)
    if not healthy:
        raise typer.Exit(EXIT_FAILURE)


@cli.command()
def purge(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be removed.")] = False,
) -> None:
    """Remove archive and quarantine files, delivery attempts and resolved alerts' events older than their
    configured ages (VENDORWATCH_RETAIN_*_DAYS); observations and revisions are kept."""
    from config.settings import get_settings
    from storage.retention import purge as run_purge

    prepare_database()
    report = run_purge(get_settings(), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    cutoffs = report.cutoffs
    lines = [f"{verb} {report.files} files ({report.file_bytes} bytes) filed before {cutoffs.files:%Y-%m-%d}",
             f"{verb} {report.delivery_attempts} delivery attempts made before {cutoffs.attempts:%Y-%m-%d}",
             f"{verb} {report.alert_events} events of alerts resolved before {cutoffs.alert_events:%Y-%m-%d}"]
    if dry_run:
        lines += [f"  {name}" for name in report.file_names]
    emit(ctx, report.as_dict(), "\n".join(lines))


@cli.command()
def metrics(ctx: typer.Context) -> None:
    """Print the Prometheus metrics once (what `serve` answers on /metrics), e.g. for a node exporter's textfile
    collector."""
    from config.settings import get_settings
    from worker.metrics import exposition

    config = ctx.obj.config()
    prepare_database()
    sys.stdout.write(exposition(get_settings(), lambda: config).decode())


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    threads: Annotated[int, typer.Option(help="Requests served at once.")] = 4,
) -> None:
    """Run the web console: feed status, open alerts (acknowledge, silence), files, outbox, reruns; /metrics,
    /healthz, /readyz. Users from VENDORWATCH_CONSOLE_USERS or VENDORWATCH_CONSOLE_USERS_FILE."""
    import waitress

    from config.settings import get_settings
    from tasks.context import current_config
    from worker.console.app import create_console
    from worker.console.users import UsersError, load_users

    load_worker_config()
    prepare_database()
    settings = get_settings()
    try:
        users = load_users(settings)
    except UsersError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILURE) from exc
    if not users:
        err.print("[red]error[/red] no console users: set VENDORWATCH_CONSOLE_USERS or VENDORWATCH_CONSOLE_USERS_FILE "
                  "(entries from `vendorwatch console-user NAME`)", highlight=False)
        raise typer.Exit(EXIT_FAILURE)
    console = create_console(settings, users, current_config)
    err.print(f"console on http://{host}:{port}/ for {len(users)} user(s)", highlight=False)
    waitress.serve(console, host=host, port=port, threads=threads, ident="vendorwatch")


@cli.command("console-user")
def console_user(
    name: Annotated[str, typer.Argument(help="The user name.")],
) -> None:
    """Print a `name:password-hash` entry for VENDORWATCH_CONSOLE_USERS(_FILE); asks for the password twice."""
    from worker.console.users import UsersError, user_entry

    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        sys.stdout.write(user_entry(name, password) + "\n")
    except UsersError as exc:
        raise typer.BadParameter(str(exc)) from exc


@db_cli.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply migrations."""
    from storage.db import migrations_between, schema_revision, upgrade

    before = schema_revision()
    upgrade()
    after = schema_revision()
    applied = migrations_between(before, after)
    if not applied:
        emit(ctx, {"status": "up to date", "revision": after, "applied": []},
             f"database schema is up to date ({after}): nothing to apply")
        return
    steps = f"{applied[0]} -> {applied[-1]}" if len(applied) > 1 else applied[0]
    emit(ctx, {"status": "upgraded", "from": before, "to": after, "applied": applied},
         f"database schema upgraded: applied {steps}" + (f" (it was at {before})" if before else ""))


HISTORY_HELP = {
    "feeds": "Files received: accepted, and rejected with every problem (row, column, message).",
    "revisions": "Corrected values: old and new value, and the file behind each.",
    "deliveries": "Outbox messages with every attempt per target and its error.",
    "reruns": "Who reran what and when (rerun commands, digest --resend, the console).",
    "pulls": "HTTPS pulls of vendor feeds and their outcome.",
    "digests": "Weekly digest runs: claimed, sent or failed.",
}


def history_command(kind: str) -> None:
    """One `history` sub-command per kind, with the same filters; each kind ignores a filter it cannot apply
    (a digest run names no vendor)."""

    def command(
        ctx: typer.Context,
        practice: Annotated[str | None, typer.Option(help="Only this practice.")] = None,
        vendor: Annotated[str | None, typer.Option(help="Only this vendor.")] = None,
        kpi: Annotated[str | None, typer.Option(help="Only this KPI.")] = None,
        since: Annotated[str | None, typer.Option(help="From this date or date-time (UTC unless an offset).")] = None,
        limit: Annotated[int, typer.Option(help="At most this many entries, newest first.", min=1)] = 200,
    ) -> None:
        from storage.db import session_scope
        from storage.history import Filters, history

        prepare_database()
        filters = Filters(practice=practice, vendor=vendor, kpi=kpi, since=parse_since(since), limit=limit)
        with session_scope() as session:
            rows = history(session, kind, filters)
        emit(ctx, rows, history_table(kind, rows))

    command.__doc__ = HISTORY_HELP[kind]
    history_cli.command(kind)(command)


def parse_since(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a date or date-time (YYYY-MM-DD[THH:MM])",
                                 param_hint="--since") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def history_table(kind: str, rows: list[dict[str, Any]]) -> Table | str:
    from worker.history_view import history_table as table_of

    return table_of(kind, rows) if rows else f"no {kind} recorded for these filters"


for _kind in HISTORY_HELP:
    history_command(_kind)


def main() -> None:
    cli()
