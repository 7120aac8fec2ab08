"""Alembic environment: the URL comes from storage.db.alembic_config (the environment), never from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.db import get_engine
from storage.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")


def run_migrations_online() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table by copy, drop and rename; dropping a table that other rows refer to
            # (feed_file, migration 0010) fails while foreign keys are on, and SQLite ignores this pragma inside a
            # transaction: so off before the migration's transaction, on again after it.
            set_sqlite_foreign_keys(connection, on=False)
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if sqlite:
                set_sqlite_foreign_keys(connection, on=True)


def set_sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()  # end the transaction SQLAlchemy began, so Alembic begins (and commits) its own


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
