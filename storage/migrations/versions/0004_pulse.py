"""staff pulse: survey identity (first response day), shown groups, source file; check-in reminders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pulse_survey', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opened_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('groups', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('feed_file_id', sa.Integer(), nullable=True))
    # Surveys stored before this revision knew only their closing day; it is the best stand-in for the first.
    op.execute("UPDATE pulse_survey SET opened_on = closed_on")
    with op.batch_alter_table('pulse_survey', schema=None) as batch_op:
        batch_op.alter_column('opened_on', existing_type=sa.Date(), nullable=False)
        batch_op.create_foreign_key('fk_pulse_survey_feed_file_id', 'feed_file', ['feed_file_id'], ['id'])
        batch_op.create_unique_constraint('uq_pulse_survey_opened', ['practice_id', 'opened_on'])
    op.create_table('pulse_reminder',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('practice_id', sa.String(length=100), nullable=False),
    sa.Column('checkin', sa.String(length=200), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('notification_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('practice_id', 'checkin', name='uq_pulse_reminder_checkin')
    )


def downgrade() -> None:
    op.drop_table('pulse_reminder')
    with op.batch_alter_table('pulse_survey', schema=None) as batch_op:
        batch_op.drop_constraint('uq_pulse_survey_opened', type_='unique')
        batch_op.drop_constraint('fk_pulse_survey_feed_file_id', type_='foreignkey')
        batch_op.drop_column('feed_file_id')
        batch_op.drop_column('groups')
        batch_op.drop_column('opened_on')
