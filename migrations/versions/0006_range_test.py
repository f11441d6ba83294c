"""LR range tests: a search's kind (search or range_test) and iterations, and the
range_point table of each range test's batches; searches made before are of kind "search"

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 23:30:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), server_default='search', nullable=False))
        batch_op.add_column(sa.Column('iterations', sa.Integer(), server_default='100', nullable=False))
    op.create_table(
        'range_point',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('trial_id', sa.Integer(), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('lr', sa.Float(), nullable=False),
        sa.Column('loss', sa.Float(), nullable=False),
        sa.Column('smoothed', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['trial_id'], ['trial.id'], name=op.f('fk_range_point_trial_id_trial'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_range_point')),
        sa.UniqueConstraint('trial_id', 'step', name=op.f('uq_range_point_trial_id')),
    )


def downgrade():
    op.drop_table('range_point')
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.drop_column('iterations')
        batch_op.drop_column('kind')
