"""command fingerprint: tell a redelivery from another command that reuses a command_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 22:40:00.000000

`processed_command` gains `fingerprint`, the SHA-256 of the command (function and fields) the row
recorded. A delivery whose command_id is recorded with another fingerprint is another command
reusing the id: a dead letter that says so, while a redelivery (same fingerprint) stays a no-op.
Rows recorded before have NULL, taken as matching. A nullable column: adding it rewrites nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('processed_command', sa.Column('fingerprint', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column('processed_command', 'fingerprint')
