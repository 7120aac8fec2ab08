"""observation.feed_file_id without a foreign key: a million-row feed paid 5 s for a million key checks

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 16:20:00.000000
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# 0001 left the constraint unnamed: PostgreSQL named it; SQLite's batch mode needs a name to find it by.
POSTGRESQL_NAME = 'observation_feed_file_id_fkey'
SQLITE_NAMING = {'fk': 'fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s'}
SQLITE_NAME = 'fk_observation_feed_file_id_feed_file'


def upgrade() -> None:
    # PostgreSQL checks a foreign key with one trigger call per inserted row (a lookup and a row lock on feed_file):
    # in bench.ingest that was 5 of the merge's 13 s. The only writer, feeds.store.merge, sets feed_file_id to the
    # feed_file row inserted earlier in the same transaction, and feed_file rows are never deleted, so the check
    # could never fail; tests/test_feeds.py asserts the invariant after every kind of ingest.
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(POSTGRESQL_NAME, 'observation', type_='foreignkey')
        return
    with op.batch_alter_table('observation', naming_convention=SQLITE_NAMING) as batch:
        batch.drop_constraint(SQLITE_NAME, type_='foreignkey')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.create_foreign_key(POSTGRESQL_NAME, 'observation', 'feed_file', ['feed_file_id'], ['id'])
        return
    with op.batch_alter_table('observation', naming_convention=SQLITE_NAMING) as batch:
        batch.create_foreign_key(SQLITE_NAME, 'feed_file', ['feed_file_id'], ['id'])
