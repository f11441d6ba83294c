"""checkpoints: each trial's latest trainer state, to resume a re-run attempt and to export
a completed trial's model

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 00:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'checkpoint',
        sa.Column('trial_id', sa.Integer(), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('epoch', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['trial_id'], ['trial.id'], name=op.f('fk_checkpoint_trial_id_trial'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('trial_id', name=op.f('pk_checkpoint')),
    )


def downgrade():
    op.drop_table('checkpoint')
