"""daily rollups for compliance reports, backfilled from the inspections

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:00:00
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

MEASURES = ('completed', 'passed', 'critical_failed', 'scored', 'score_tenths')


def _columns(place: str) -> list:
    return [
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column(place, sa.String(length=64), nullable=False),
        sa.Column('template_id', sa.String(length=64), nullable=False),
        sa.Column('inspector_id', sa.String(length=64), nullable=False),
        sa.Column('week', sa.String(length=8), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('completed', sa.Integer(), nullable=False),
        sa.Column('passed', sa.Integer(), nullable=False),
        sa.Column('critical_failed', sa.Integer(), nullable=False),
        sa.Column('scored', sa.Integer(), nullable=False),
        sa.Column('score_tenths', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('day', place, 'template_id', 'inspector_id'),
    ]


def upgrade() -> None:
    op.create_table('inspection_daily', *_columns('site_id'))
    with op.batch_alter_table('inspection_daily', schema=None) as batch_op:
        batch_op.create_index('ix_inspection_daily_site_day', ['site_id', 'day'], unique=False)
    op.create_table('region_daily', *_columns('region_id'))
    _backfill()


def downgrade() -> None:
    op.drop_table('region_daily')
    with op.batch_alter_table('inspection_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_inspection_daily_site_day')
    op.drop_table('inspection_daily')


def _backfill() -> None:
    # Self-contained (no application imports, so later code changes cannot break it); the
    # same statements as store/rollups.py rebuild().
    conn = op.get_bind()
    i = sa.table(
        'inspections',
        *(
            sa.column(c)
            for c in ('site_id', 'template_id', 'inspector_id', 'status', 'deleted_at', 'passed',
                      'critical_failed', 'score_percent')
        ),
        sa.column('completed_received_at', sa.DateTime(timezone=True)),
    )
    s = sa.table(
        'inspection_daily',
        sa.column('day', sa.Date()),
        *(sa.column(c) for c in ('site_id', 'template_id', 'inspector_id', 'week', 'month')),
        *(sa.column(m) for m in MEASURES),
    )
    r = sa.table(
        'region_daily',
        sa.column('day', sa.Date()),
        *(sa.column(c) for c in ('region_id', 'template_id', 'inspector_id', 'week', 'month')),
        *(sa.column(m) for m in MEASURES),
    )
    sites = sa.table('sites', sa.column('id'), sa.column('region_id'))
    when = i.c.completed_received_at
    if conn.dialect.name == 'postgresql':
        day = sa.cast(sa.func.timezone('UTC', when), sa.Date)
    else:
        day = sa.func.date(when)
    percent = i.c.score_percent
    counted = (
        sa.select(
            day,
            i.c.site_id,
            i.c.template_id,
            sa.func.coalesce(i.c.inspector_id, ''),
            sa.literal_column("''"),
            sa.literal_column("''"),
            sa.func.count(),
            sa.func.count().filter(i.c.passed.is_(True)),
            sa.func.count().filter(i.c.critical_failed.is_(True)),
            sa.func.count(percent),
            sa.cast(sa.func.coalesce(sa.func.sum(sa.func.round(percent * 10)), 0), sa.BigInteger),
        )
        .where(
            i.c.deleted_at.is_(None),
            i.c.status.in_(('completed', 'approved', 'archived')),
            when.is_not(None),
        )
        .group_by(day, i.c.site_id, i.c.template_id, i.c.inspector_id)
    )
    keys = ['day', 'site_id', 'template_id', 'inspector_id', 'week', 'month']
    conn.execute(sa.insert(s).from_select([*keys, *MEASURES], counted))
    days = list(conn.execute(sa.select(s.c.day).distinct()).scalars())
    if days:
        conn.execute(
            sa.update(s).where(s.c.day == sa.bindparam('d')),
            [{'d': d, 'week': _week(d), 'month': f'{d.year}-{d.month:02d}'} for d in days],
        )
    group = [s.c.day, sites.c.region_id, s.c.template_id, s.c.inspector_id, s.c.week, s.c.month]
    by_region = (
        sa.select(*group, *(sa.func.sum(s.c[m]) for m in MEASURES))
        .select_from(s.join(sites, sites.c.id == s.c.site_id))
        .group_by(*group)
    )
    conn.execute(
        sa.insert(r).from_select(
            ['day', 'region_id', 'template_id', 'inspector_id', 'week', 'month', *MEASURES],
            by_region,
        )
    )


def _week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f'{year}-W{week:02d}'
