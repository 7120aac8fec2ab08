"""remit_claim: where each claim was counted, so a reversal in a later 835 can take it back (issue 16)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 15:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

# A payer often reverses (CLP02 = 22) in a later 835 a claim it paid in an earlier one. Undoing its counts needs
# what the claim added to its month: the month of payment, days from service to payment, denied and the main
# CARC, first pass or not. Still no claim id, patient, date of service or amount: the billed dollars to take back
# are the reversal's own (CLP03, the original's negated). Claims stored before this migration have no month: a
# later reversal of one is counted as unmatched.


def upgrade() -> None:
    with op.batch_alter_table('remit_claim') as batch:
        batch.add_column(sa.Column('month', sa.Date(), nullable=True))
        batch.add_column(sa.Column('days', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('denied', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('carc', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('first_pass', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('remit_month') as batch:
        batch.add_column(sa.Column('reversed_later', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('unmatched_reversals', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('remit_month') as batch:
        batch.drop_column('unmatched_reversals')
        batch.drop_column('reversed_later')
    with op.batch_alter_table('remit_claim') as batch:
        for column in ('first_pass', 'carc', 'denied', 'days', 'month'):
            batch.drop_column(column)
