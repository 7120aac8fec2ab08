"""feed pull attempts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:10:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feed_pull',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('practice_id', sa.String(length=100), nullable=False),
    sa.Column('vendor_id', sa.String(length=100), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('file_name', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('feed_pull', schema=None) as batch_op:
        batch_op.create_index('ix_feed_pull_vendor', ['practice_id', 'vendor_id', 'attempted_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('feed_pull', schema=None) as batch_op:
        batch_op.drop_index('ix_feed_pull_vendor')

    op.drop_table('feed_pull')
