"""checkpoints stored uncompressed on PostgreSQL: its TOAST compression, tried on each 3 MB
checkpoint of float weights (which barely compress), made a 7 ms write take 60 ms

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 02:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE checkpoint ALTER COLUMN data SET STORAGE EXTERNAL')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE checkpoint ALTER COLUMN data SET STORAGE EXTENDED')
