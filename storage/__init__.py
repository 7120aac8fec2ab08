"""State: SQLAlchemy models, engine and session helpers, Alembic migrations."""
