"""Engines and sessions. One engine per URL per process; sessions are short and explicit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from config.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def get_engine(url: str | None = None) -> Engine:
    return engine_for(url or get_settings().resolved_database_url())


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    engine = new_engine(url)
    _engines.append(engine)
    return engine


# Every engine this process made, so a forked child can let go of the pools it inherited.
_engines: list[Engine] = []


def forget_inherited_connections() -> None:
    """In a freshly forked process (a Celery pool child): start with empty pools. A pooled connection inherited
    from the parent shares its socket with the parent and with every sibling; two processes talking over one
    PostgreSQL connection corrupt each other's queries. close=False leaves the parent's sockets alone."""
    for engine in _engines:
        engine.dispose(close=False)


def new_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True)


def configure_sqlite(connection: object, _record: object) -> None:
    # WAL lets the demo's worker thread write while the CLI reads; foreign keys are off by default in SQLite.
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None) -> object:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", (url or get_settings().resolved_database_url()).replace("%", "%%")
    )
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)  # type: ignore[arg-type]


def downgrade(url: str | None = None, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)  # type: ignore[arg-type]


def schema_revision(url: str | None = None) -> str | None:
    """The migration the database's schema is at; None for a database `db upgrade` never ran on."""
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrations_between(lower: str | None, upper: str | None) -> list[str]:
    """The migrations that take a schema at `lower` (None: no schema) to `upper`, oldest first."""
    from alembic.script import ScriptDirectory

    if upper is None or upper == lower:
        return []
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [revision.revision for revision in script.iterate_revisions(upper, lower or "base")][::-1]


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
