"""observation key covers the series read: period_start, period_end and value in uq_observation_key

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 15:10:00.000000
"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

KEY = ['practice_id', 'vendor_id', 'kpi', 'period', 'segment']


def upgrade() -> None:
    # Evaluation reads a practice's whole series by the key's leading column. With the three columns it also needs
    # carried in the key's index, PostgreSQL answers from the index alone (an index-only scan) instead of visiting
    # heap pages that, feed by feed, scatter a practice's rows across the table. SQLite has no INCLUDE.
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_constraint('uq_observation_key', 'observation', type_='unique')
    # Raw DDL: Alembic's create_unique_constraint builds its table from the key columns alone and cannot name
    # INCLUDE columns.
    op.execute('ALTER TABLE observation ADD CONSTRAINT uq_observation_key UNIQUE'
               f" ({', '.join(KEY)}) INCLUDE (period_start, period_end, value)")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_constraint('uq_observation_key', 'observation', type_='unique')
    op.create_unique_constraint('uq_observation_key', 'observation', KEY)
