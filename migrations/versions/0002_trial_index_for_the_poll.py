"""the trials' indexes: a page's poll finds the changed trials by (search_id, updated_at)

The poll asks for the trials of one search changed since its last look (search_id = ? AND
updated_at >= ?). It went through ix_trial_search_id and read every trial of the search;
the index on updated_at alone it did not use, yet each epoch's write moved the trial in it.
One index of both columns now serves the poll and every lookup by search, and costs an
epoch's write what the one on updated_at cost. ix_trial_search_id was the first column of
the unique (search_id, index) over again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 20:15:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('trial', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trial_search_id'))
        batch_op.drop_index(batch_op.f('ix_trial_updated_at'))
        batch_op.create_index(
            'ix_trial_search_id_updated_at', ['search_id', 'updated_at'], unique=False
        )


def downgrade():
    with op.batch_alter_table('trial', schema=None) as batch_op:
        batch_op.drop_index('ix_trial_search_id_updated_at')
        batch_op.create_index(batch_op.f('ix_trial_updated_at'), ['updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_trial_search_id'), ['search_id'], unique=False)
