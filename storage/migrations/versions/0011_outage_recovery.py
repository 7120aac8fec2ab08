"""outage recovery: delivery rounds and claim token on notification, evaluation requests

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# notification.rounds counts every pass over the targets across task chains, so the total number of delivery tries
# is bounded in the database (a lost task chain no longer starts again at zero). notification.claim_token names the
# task that holds the claim, so that task's own retry (after a database outage) takes it back at once.
# evaluation_request records that a practice's data changed and an evaluation is owed, so a lost alerts.evaluate
# message (a broker restarted empty) is made up for by the next inbox scan instead of the next morning.


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rounds', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('claim_token', sa.String(length=64), nullable=True))
    op.create_table(
        'evaluation_request',
        sa.Column('practice_id', sa.String(length=100), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('practice_id'),
    )


def downgrade() -> None:
    op.drop_table('evaluation_request')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('claim_token')
        batch_op.drop_column('rounds')
