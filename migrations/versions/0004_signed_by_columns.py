"""signed commands: the key that signed each processed command and each dead letter

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 22:40:00.000000

`processed_command` and `dead_letter` gain `signed_by`, the id of the key that signed the job
(contract version 3; for a dead letter whose signature was refused, the key id it claims). NULL
for unsigned jobs and for every row written before. Nullable, no default: adding the columns
rewrites no table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('processed_command', sa.Column('signed_by', sa.Text(), nullable=True))
    op.add_column('dead_letter', sa.Column('signed_by', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('dead_letter', 'signed_by')
    op.drop_column('processed_command', 'signed_by')
