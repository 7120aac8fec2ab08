"""remits: aggregates of the payers' X12 835 remittances, per practice, payer and month (issue 16)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# Only aggregates and keyed hashes of claim ids: an 835 names patients, members and claims, none of which is kept.


def upgrade() -> None:
    op.create_table(
        'remit_file',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('practice_id', sa.String(length=100), nullable=False),
        sa.Column('filename', sa.String(length=500), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('claims', sa.Integer(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sha256', 'practice_id', name='uq_remit_file_identity'),
    )
    op.create_table(
        'remit_claim',
        sa.Column('practice_id', sa.String(length=100), nullable=False),
        sa.Column('digest', sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint('practice_id', 'digest'),
    )
    money = [sa.Column(name, sa.Numeric(16, 2), nullable=False) for name in (
        'billed', 'first_pass_billed', 'first_pass_denied_billed', 'payments', 'provider_adjustments',
        'patient_responsibility', 'contractual')]
    op.create_table(
        'remit_month',
        sa.Column('practice_id', sa.String(length=100), nullable=False),
        sa.Column('payer_id', sa.String(length=80), nullable=False),
        sa.Column('month', sa.Date(), nullable=False),
        sa.Column('claims', sa.Integer(), nullable=False),
        sa.Column('denied', sa.Integer(), nullable=False),
        sa.Column('first_pass_claims', sa.Integer(), nullable=False),
        sa.Column('first_pass_denied', sa.Integer(), nullable=False),
        *money,
        sa.Column('days', sa.JSON(), nullable=False),
        sa.Column('denial_categories', sa.JSON(), nullable=False),
        sa.Column('denial_carcs', sa.JSON(), nullable=False),
        sa.Column('files', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('practice_id', 'payer_id', 'month'),
    )


def downgrade() -> None:
    op.drop_table('remit_month')
    op.drop_table('remit_claim')
    op.drop_table('remit_file')
