"""observations keyed by series: a narrow observation_value row per value, the names once in series

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 17:40:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# The old table repeated practice, vendor, KPI, period and segment on every row and kept them all in its unique
# key: PostgreSQL needed 11 s to insert a million rows into it (bench/README.md), nine times a bare COPY. Keyed
# by an integer series id and the period's two days, the same rows cost about twice a bare COPY. Readers keep
# the old shape through the `observation` view (the same SQL as storage.models.OBSERVATION_VIEW_SQL, copied here
# so this migration never changes with the models).
VIEW = (
    "CREATE VIEW observation AS SELECT o.series_id, s.practice_id, s.vendor_id, s.kpi, o.period, o.period_start,"
    " o.period_end, s.segment, o.value, o.feed_file_id, f.received_at AS updated_at"
    " FROM observation_value o JOIN series s ON s.id = o.series_id LEFT JOIN feed_file f ON f.id = o.feed_file_id"
)
SERIES_MATCH = ("s.practice_id = o.practice_id AND s.vendor_id = o.vendor_id AND s.kpi = o.kpi"
                " AND s.segment = o.segment")


def upgrade() -> None:
    op.create_table(
        'series',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('practice_id', sa.String(length=100), nullable=False),
        sa.Column('vendor_id', sa.String(length=100), nullable=False),
        sa.Column('kpi', sa.String(length=100), nullable=False),
        sa.Column('segment', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('practice_id', 'vendor_id', 'kpi', 'segment', name='uq_series_key'),
    )
    op.create_table(
        'observation_value',
        sa.Column('series_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('period_end', sa.Date(), nullable=False),
        sa.Column('period', sa.String(length=32), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('feed_file_id', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('series_id', 'period_start', 'period_end'),
    )
    op.create_table(
        'observation_revision_by_series',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('series_id', sa.Integer(), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('period_end', sa.Date(), nullable=False),
        sa.Column('old_value', sa.Float(), nullable=False),
        sa.Column('new_value', sa.Float(), nullable=False),
        sa.Column('old_feed_file_id', sa.Integer(), nullable=False),
        sa.Column('new_feed_file_id', sa.Integer(), nullable=False),
        sa.Column('revised_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['new_feed_file_id'], ['feed_file.id'], ),
        sa.ForeignKeyConstraint(['old_feed_file_id'], ['feed_file.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    # A period label names exactly one span (feeds.periods), so the old key and the new one pick the same rows.
    op.execute('INSERT INTO series (practice_id, vendor_id, kpi, segment)'
               ' SELECT DISTINCT practice_id, vendor_id, kpi, segment FROM observation')
    # updated_at was always the moment the value's feed file was ingested: the view reads it from feed_file.
    op.execute('INSERT INTO observation_value (series_id, period_start, period_end, period, value, feed_file_id)'
               ' SELECT s.id, o.period_start, o.period_end, o.period, o.value, o.feed_file_id'
               f' FROM observation o JOIN series s ON {SERIES_MATCH}')
    op.execute('INSERT INTO observation_revision_by_series (id, series_id, period_start, period_end, old_value,'
               ' new_value, old_feed_file_id, new_feed_file_id, revised_at)'
               ' SELECT r.id, s.id, o.period_start, o.period_end, r.old_value, r.new_value, r.old_feed_file_id,'
               ' r.new_feed_file_id, r.revised_at FROM observation_revision r'
               f' JOIN observation o ON o.id = r.observation_id JOIN series s ON {SERIES_MATCH}')
    op.drop_index('ix_observation_revision_observation_id', table_name='observation_revision')
    op.drop_table('observation_revision')
    op.drop_table('observation')
    op.rename_table('observation_revision_by_series', 'observation_revision')
    if op.get_bind().dialect.name == 'postgresql':
        # Renaming keeps the sequence behind id; the next revision must not reuse a copied id.
        op.execute("SELECT setval(pg_get_serial_sequence('observation_revision', 'id'),"
                   ' coalesce((SELECT max(id) FROM observation_revision), 0) + 1, false)')
    op.create_index('ix_observation_revision_key', 'observation_revision',
                    ['series_id', 'period_start', 'period_end'], unique=False)
    op.execute(VIEW)


def downgrade() -> None:
    op.execute('DROP VIEW observation')
    op.create_table(
        'observation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('practice_id', sa.String(length=100), nullable=False),
        sa.Column('vendor_id', sa.String(length=100), nullable=False),
        sa.Column('kpi', sa.String(length=100), nullable=False),
        sa.Column('period', sa.String(length=32), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('period_end', sa.Date(), nullable=False),
        sa.Column('segment', sa.String(length=200), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('feed_file_id', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('practice_id', 'vendor_id', 'kpi', 'period', 'segment', name='uq_observation_key',
                            postgresql_include=['period_start', 'period_end', 'value']),
    )
    op.execute('INSERT INTO observation (practice_id, vendor_id, kpi, period, period_start, period_end, segment,'
               ' value, feed_file_id, updated_at) SELECT s.practice_id, s.vendor_id, s.kpi, o.period, o.period_start,'
               ' o.period_end, s.segment, o.value, o.feed_file_id, f.received_at'
               ' FROM observation_value o JOIN series s ON s.id = o.series_id JOIN feed_file f ON f.id = o.feed_file_id')
    op.create_table(
        'observation_revision_by_id',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('observation_id', sa.Integer(), nullable=False),
        sa.Column('old_value', sa.Float(), nullable=False),
        sa.Column('new_value', sa.Float(), nullable=False),
        sa.Column('old_feed_file_id', sa.Integer(), nullable=False),
        sa.Column('new_feed_file_id', sa.Integer(), nullable=False),
        sa.Column('revised_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['new_feed_file_id'], ['feed_file.id'], ),
        sa.ForeignKeyConstraint(['observation_id'], ['observation.id'], ),
        sa.ForeignKeyConstraint(['old_feed_file_id'], ['feed_file.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    op.execute('INSERT INTO observation_revision_by_id (id, observation_id, old_value, new_value, old_feed_file_id,'
               ' new_feed_file_id, revised_at) SELECT r.id, o.id, r.old_value, r.new_value, r.old_feed_file_id,'
               ' r.new_feed_file_id, r.revised_at FROM observation_revision r JOIN series s ON s.id = r.series_id'
               f' JOIN observation o ON {SERIES_MATCH} AND o.period_start = r.period_start'
               ' AND o.period_end = r.period_end')
    op.drop_index('ix_observation_revision_key', table_name='observation_revision')
    op.drop_table('observation_revision')
    op.drop_table('observation_value')
    op.drop_table('series')
    op.rename_table('observation_revision_by_id', 'observation_revision')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("SELECT setval(pg_get_serial_sequence('observation_revision', 'id'),"
                   ' coalesce((SELECT max(id) FROM observation_revision), 0) + 1, false)')
    op.create_index('ix_observation_revision_observation_id', 'observation_revision', ['observation_id'],
                    unique=False)
