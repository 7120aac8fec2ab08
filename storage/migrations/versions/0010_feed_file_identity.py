"""a feed file is its bytes for the practice and vendor it was delivered for, not its bytes alone

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# feed_file.sha256 alone was unique, so the same one-row file dropped in a second practice's inbox folder was
# archived as a duplicate and none of its values stored. The key is now (sha256, practice_key, vendor_key): the
# practice and vendor the delivery named ('' when the file names them itself), never NULL, since a unique key
# treats NULLs as all different. pulse_survey follows (practice_id, sha256), and a rejection records what the
# delivery named. Existing rows keep the names they were stored with.
# SQLite reports 0001's unnamed unique constraint without a name; batch mode finds it under this convention.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
# SQLite checks views when batch mode renames the rebuilt table, and `observation` reads feed_file: it is dropped
# and made again around the rebuild (the same SQL as 0009's, copied so this migration never changes).
VIEW = (
    "CREATE VIEW observation AS SELECT o.series_id, s.practice_id, s.vendor_id, s.kpi,"
    " coalesce(p.label, CAST(o.period_start AS VARCHAR) || '..' || CAST(o.period_end AS VARCHAR)) AS period,"
    " o.period_start, o.period_end, s.segment, o.value, o.feed_file_id, f.received_at AS updated_at"
    " FROM observation_value o JOIN series s ON s.id = o.series_id"
    " LEFT JOIN period_label p ON p.period_start = o.period_start AND p.period_end = o.period_end"
    " LEFT JOIN feed_file f ON f.id = o.feed_file_id"
)


def old_sha256_key() -> str:
    return 'feed_file_sha256_key' if op.get_bind().dialect.name == 'postgresql' else 'uq_feed_file_sha256'


def upgrade() -> None:
    op.execute('DROP VIEW observation')
    with op.batch_alter_table('feed_file', naming_convention=SQLITE_NAMES) as batch:
        batch.add_column(sa.Column('practice_key', sa.String(length=100), server_default='', nullable=False))
        batch.add_column(sa.Column('vendor_key', sa.String(length=100), server_default='', nullable=False))
        batch.drop_constraint(old_sha256_key(), type_='unique')
    op.execute("UPDATE feed_file SET practice_key = coalesce(practice_id, ''), vendor_key = coalesce(vendor_id, '')")
    with op.batch_alter_table('feed_file') as batch:
        batch.create_unique_constraint('uq_feed_file_identity', ['sha256', 'practice_key', 'vendor_key'])
    op.execute(VIEW)
    with op.batch_alter_table('pulse_survey') as batch:
        batch.drop_constraint('uq_pulse_survey_sha256', type_='unique')
        batch.create_unique_constraint('uq_pulse_survey_practice_sha256', ['practice_id', 'sha256'])
    with op.batch_alter_table('feed_rejection') as batch:
        batch.add_column(sa.Column('practice_id', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('vendor_id', sa.String(length=100), nullable=True))


def refuse_shared_bytes(table: str) -> None:
    """The old key cannot hold the same bytes stored for two practices: say so rather than drop data."""
    shared = op.get_bind().execute(sa.text(
        f'SELECT count(*) FROM (SELECT sha256 FROM {table} GROUP BY sha256 HAVING count(*) > 1) s')).scalar_one()
    if shared:
        raise RuntimeError(f'{shared} file(s) in {table} are stored for more than one practice or vendor; '
                           'revision 0009 keys files on their bytes alone and cannot hold them')


def downgrade() -> None:
    refuse_shared_bytes('feed_file')
    refuse_shared_bytes('pulse_survey')
    with op.batch_alter_table('feed_rejection') as batch:
        batch.drop_column('vendor_id')
        batch.drop_column('practice_id')
    with op.batch_alter_table('pulse_survey') as batch:
        batch.drop_constraint('uq_pulse_survey_practice_sha256', type_='unique')
        batch.create_unique_constraint('uq_pulse_survey_sha256', ['sha256'])
    op.execute('DROP VIEW observation')
    with op.batch_alter_table('feed_file') as batch:
        batch.drop_constraint('uq_feed_file_identity', type_='unique')
        batch.drop_column('vendor_key')
        batch.drop_column('practice_key')
        batch.create_unique_constraint(old_sha256_key(), ['sha256'])
    op.execute(VIEW)
