"""a search's early stopping: scheduler (none or asha), reduction factor, grace period,
brackets and the rung metric; searches made before keep "none"

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 15:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scheduler', sa.String(length=20), server_default='none', nullable=False))
        batch_op.add_column(sa.Column('reduction_factor', sa.Integer(), server_default='3', nullable=False))
        batch_op.add_column(sa.Column('grace_period', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('brackets', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('metric', sa.String(length=20), server_default='val_acc', nullable=False))


def downgrade():
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.drop_column('metric')
        batch_op.drop_column('brackets')
        batch_op.drop_column('grace_period')
        batch_op.drop_column('reduction_factor')
        batch_op.drop_column('scheduler')
