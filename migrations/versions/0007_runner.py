"""the runner table: each runner's executor (local pool or Dask), workers, dashboard link
and problem, refreshed with its heartbeat

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 23:50:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'runner',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('executor', sa.String(length=20), nullable=False),
        sa.Column('address', sa.String(length=400), nullable=False),
        sa.Column('workers', sa.Integer(), nullable=False),
        sa.Column('dashboard_url', sa.String(length=400), nullable=True),
        sa.Column('problem', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_runner')),
        sa.UniqueConstraint('name', name=op.f('uq_runner_name')),
    )
    with op.batch_alter_table('runner', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runner_heartbeat_at'), ['heartbeat_at'], unique=False)


def downgrade():
    with op.batch_alter_table('runner', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runner_heartbeat_at'))
    op.drop_table('runner')
