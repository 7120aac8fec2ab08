"""Practices are evaluated many to a transaction (alerts.evaluate.PRACTICES_PER_TRANSACTION): the alerts, events and
results must be exactly those of evaluating them one at a time; a practice that fails must still roll back alone,
with the practices judged before it committed; and two evaluations of everyone at once must take turns, practice by
practice, without doubling an alert or an event. On the data of bench.evaluate (120 practices, SPC on every series,
about a tenth of series alerting), in real PostgreSQL databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import pytest
from sqlalchemy import text

import alerts.evaluate
from alerts import lifecycle
from alerts.evaluate import evaluate_practices
from bench.evaluate import AS_OF, NOW, load_observations, practice_id, write_config
from config import Config, load_config
from storage.db import engine_for, upgrade
from tests.support.services import drop_postgres_database, fresh_postgres_database

PRACTICES = 120  # two full batches of 50 and one of 20
FAILING = practice_id(56)  # p0057: the seventh practice of the second batch
ALERT_COLUMNS = "rule, practice_id, vendor_id, kpi, segment, state, severity, value, period, threshold, learning"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    directory = tmp_path_factory.mktemp("config")
    write_config(directory, PRACTICES)
    return load_config(directory)


@pytest.fixture
def loaded_url() -> Iterator[str]:
    url = fresh_postgres_database()
    upgrade(url)
    load_observations(url, PRACTICES, every_vendor=False)
    yield url
    engine_for(url).dispose()
    drop_postgres_database(url)


def alerts_and_events(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with engine_for(url).connect() as connection:
        alerts = connection.execute(text(f"SELECT {ALERT_COLUMNS} FROM alert ORDER BY practice_id, vendor_id, kpi, "
                                         "segment, rule")).all()
        events = connection.execute(text(
            "SELECT a.practice_id, a.vendor_id, a.kpi, a.segment, a.rule, e.event, e.severity, e.value, e.period "
            "FROM alert_event e JOIN alert a ON a.id = e.alert_id ORDER BY e.id")).all()
    return [tuple(row) for row in alerts], [tuple(row) for row in events]


def evaluate(config: Config, url: str, as_of: dt.date = AS_OF) -> list[dict[str, Any]]:
    results = evaluate_practices(config, as_of=as_of, now=NOW, database_url=url)
    return [{**asdict(result), "changes": [{**asdict(c), "alert_id": None} for c in result.changes]}
            for result in results]


@pytest.mark.parametrize("pieces", [None, (7, 3)], ids=["read-whole", "streamed-in-small-pieces"])
def test_many_practices_to_a_transaction_judge_as_one_at_a_time(config: Config, loaded_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   pieces: tuple[int, int] | None) -> None:
    """A batch's values and alerts come in one query each, or, past BATCH_*_AT_ONCE, streamed (here 7 values and 3
    alerts at a time, cutting series and practices in the middle)."""
    if pieces is not None:
        monkeypatch.setattr(lifecycle, "BATCH_VALUES_AT_ONCE", pieces[0])
        monkeypatch.setattr(lifecycle, "BATCH_ALERTS_AT_ONCE", pieces[1])
    together = evaluate(config, loaded_url)
    stored_together = alerts_and_events(loaded_url)
    with engine_for(loaded_url).begin() as connection:
        connection.execute(text("DELETE FROM alert_event; DELETE FROM alert; DELETE FROM pulse_tracking"))

    monkeypatch.undo()  # no small pieces: one practice at a time, read as a single practice always is
    monkeypatch.setattr(alerts.evaluate, "PRACTICES_PER_TRANSACTION", 1)
    one_at_a_time = evaluate(config, loaded_url)

    assert [r["practice"] for r in together] == [p.id for p in config.practices]
    assert sum(len(r["changes"]) for r in together) > PRACTICES  # the data alerts: the comparison is not empty
    assert together == one_at_a_time
    assert stored_together == alerts_and_events(loaded_url)


def test_a_practice_that_fails_rolls_back_alone(config: Config, loaded_url: str) -> None:
    """A trigger refuses the failing practice's first alert. Its batch is retried one practice at a time: those
    before it are committed, it raises as it always did (and stores nothing), and the run stops there."""
    with engine_for(loaded_url).begin() as connection:
        connection.execute(text(
            "CREATE FUNCTION refuse_alert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.practice_id = '{FAILING}' THEN RAISE EXCEPTION 'refused for the test'; END IF; "
            "RETURN NEW; END $$; "
            "CREATE TRIGGER refuse_alert BEFORE INSERT ON alert FOR EACH ROW EXECUTE FUNCTION refuse_alert()"))

    with pytest.raises(Exception, match="refused for the test"):
        evaluate(config, loaded_url)

    alerted = {row[1] for row in alerts_and_events(loaded_url)[0]}
    ids = [p.id for p in config.practices]
    failing = ids.index(FAILING)
    assert FAILING not in alerted
    assert not alerted & set(ids[failing + 1:])  # the run stopped at the failing practice, as it always has
    assert alerted & set(ids[50:failing])  # its batch's earlier practices alerted, and that was committed

    with engine_for(loaded_url).begin() as connection:
        connection.execute(text("DROP TRIGGER refuse_alert ON alert"))
    again = {result["practice"]: result["changes"] for result in evaluate(config, loaded_url)}
    assert not any(again[practice] for practice in ids[:failing])  # judged already: nothing new
    assert again[FAILING] and any(again[practice] for practice in ids[failing + 1:])


def test_two_evaluations_of_everyone_at_once_take_turns(config: Config, loaded_url: str) -> None:
    alone_url = fresh_postgres_database()
    try:
        upgrade(alone_url)
        load_observations(alone_url, PRACTICES, every_vendor=False)
        evaluate(config, alone_url)
        alone = alerts_and_events(alone_url)
    finally:
        engine_for(alone_url).dispose()
        drop_postgres_database(alone_url)

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: evaluate(config, loaded_url), range(2)))

    changes = [sum(len(result["changes"]) for result in run) for run in runs]
    assert sum(changes) == len(alone[1])  # every change told once, by one run or the other
    assert alerts_and_events(loaded_url)[0] == alone[0]
    assert sorted(alerts_and_events(loaded_url)[1]) == sorted(alone[1])
