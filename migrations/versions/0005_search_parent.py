"""a search's parent: the search it refines around its best rate

A plain column, without a foreign key: adding one makes SQLite rebuild the search table,
and dropping the old table would cascade to every trial and epoch.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 15:10:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.drop_column('parent_id')
