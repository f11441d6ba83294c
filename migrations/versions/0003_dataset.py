"""the dataset table: data sets fetched or uploaded once, converted in the data folder

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'dataset',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('source', sa.String(length=400), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('progress', sa.Float(), nullable=False),
        sa.Column('progress_note', sa.String(length=200), nullable=False),
        sa.Column('options', sa.Text(), nullable=False),
        sa.Column('samples', sa.Integer(), nullable=True),
        sa.Column('features', sa.Integer(), nullable=True),
        sa.Column('classes', sa.Integer(), nullable=True),
        sa.Column('val_samples', sa.Integer(), nullable=True),
        sa.Column('class_counts', sa.Text(), nullable=False),
        sa.Column('labels', sa.Text(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('disk_bytes', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset')),
        sa.UniqueConstraint('name', name=op.f('uq_dataset_name')),
    )
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_status'), ['status'], unique=False)


def downgrade():
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_status'))
    op.drop_table('dataset')
