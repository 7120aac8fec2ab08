"""period labels once per period: observation_value without its label column, period_label beside it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 19:00:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# A period's label ("2026-03", "2026-W10", "2026-03-15", or "start..end") follows from its first and last day
# (feeds.periods), so each value row repeated one of a handful of texts. Without it the rows are narrower and a
# bare million-row COPY into observation_value costs PostgreSQL about an eighth less (bench/README.md). Readers
# keep the label through the `observation` view (the same SQL as storage.models.OBSERVATION_VIEW_SQL, copied here
# so this migration never changes with the models).
VIEW = (
    "CREATE VIEW observation AS SELECT o.series_id, s.practice_id, s.vendor_id, s.kpi,"
    " coalesce(p.label, CAST(o.period_start AS VARCHAR) || '..' || CAST(o.period_end AS VARCHAR)) AS period,"
    " o.period_start, o.period_end, s.segment, o.value, o.feed_file_id, f.received_at AS updated_at"
    " FROM observation_value o JOIN series s ON s.id = o.series_id"
    " LEFT JOIN period_label p ON p.period_start = o.period_start AND p.period_end = o.period_end"
    " LEFT JOIN feed_file f ON f.id = o.feed_file_id"
)
VIEW_0008 = (
    "CREATE VIEW observation AS SELECT o.series_id, s.practice_id, s.vendor_id, s.kpi, o.period, o.period_start,"
    " o.period_end, s.segment, o.value, o.feed_file_id, f.received_at AS updated_at"
    " FROM observation_value o JOIN series s ON s.id = o.series_id LEFT JOIN feed_file f ON f.id = o.feed_file_id"
)


def upgrade() -> None:
    op.create_table(
        'period_label',
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('period_end', sa.Date(), nullable=False),
        sa.Column('label', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('period_start', 'period_end'),
    )
    op.execute('INSERT INTO period_label (period_start, period_end, label) SELECT period_start, period_end,'
               ' min(period) FROM observation_value GROUP BY period_start, period_end')
    op.execute('DROP VIEW observation')
    with op.batch_alter_table('observation_value') as batch:
        batch.drop_column('period')
    op.execute(VIEW)


def downgrade() -> None:
    op.execute('DROP VIEW observation')
    with op.batch_alter_table('observation_value') as batch:
        batch.add_column(sa.Column('period', sa.String(length=32), nullable=True))
    op.execute('UPDATE observation_value SET period = (SELECT p.label FROM period_label p'
               ' WHERE p.period_start = observation_value.period_start'
               ' AND p.period_end = observation_value.period_end)')
    with op.batch_alter_table('observation_value') as batch:
        batch.alter_column('period', existing_type=sa.String(length=32), nullable=False)
    op.drop_table('period_label')
    op.execute(VIEW_0008)
