"""evaluation indexes: alerts by practice; one observation index instead of two

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:00:00.000000
"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every evaluation and every digest reads one practice's alerts; uq_alert_identity leads with rule, so without
    # this index each of those reads scans every alert ever raised.
    op.create_index('ix_alert_practice', 'alert', ['practice_id'], unique=False)
    # uq_observation_key (practice_id, vendor_id, kpi, period, segment) serves every observation query by the same
    # leading columns (EXPLAIN: per-practice reads use it with the same plan), so this second index only made
    # each ingested row cost one more btree insert.
    op.drop_index('ix_observation_series', table_name='observation')


def downgrade() -> None:
    op.create_index('ix_observation_series', 'observation',
                    ['practice_id', 'vendor_id', 'kpi', 'segment', 'period_start'], unique=False)
    op.drop_index('ix_alert_practice', table_name='alert')
