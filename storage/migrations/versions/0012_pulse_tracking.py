"""pulse tracking: the day a practice's pulse schedule started to count

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 11:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

# A pulse schedule added to a practice live for a year used to owe the go-live check-in of a year ago at once
# ("364 days overdue"). pulse_tracking records the first evaluation that saw the schedule; no check-in falls due
# before that day (unless practices.yaml sets pulse.start).


def upgrade() -> None:
    op.create_table(
        'pulse_tracking',
        sa.Column('practice_id', sa.String(length=100), nullable=False),
        sa.Column('started_on', sa.Date(), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('practice_id'),
    )


def downgrade() -> None:
    op.drop_table('pulse_tracking')
