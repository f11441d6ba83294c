"""cancel one trial: trial.cancel_requested, read with each epoch's write; and an index
on trial (search_id, status, index) for the runner's fair claims

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 00:10:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('trial', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_requested', sa.Boolean(), server_default='0', nullable=False))
        batch_op.create_index('ix_trial_search_id_status_index', ['search_id', 'status', 'index'], unique=False)


def downgrade():
    with op.batch_alter_table('trial', schema=None) as batch_op:
        batch_op.drop_index('ix_trial_search_id_status_index')
        batch_op.drop_column('cancel_requested')
