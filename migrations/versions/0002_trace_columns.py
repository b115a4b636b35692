"""trace: who applied each command, in which transaction, how many duplicates; task lookups

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 22:40:00.000000

`processed_command` gains the worker that applied the command (`worker_id`), the PostgreSQL
transaction it committed in (`transaction_id`, from pg_current_xact_id(); with `processed_at`,
which is the transaction's start time, it finds the commands that shared the transaction through
the existing processed_at index), how many deliveries of it were duplicates (`duplicates`), and an
index on `task_id` for a task's story. `dead_letter` gains the worker that wrote it. All new
columns are nullable or have a constant default: adding them rewrites no table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('processed_command', sa.Column('worker_id', sa.Text(), nullable=True))
    op.add_column('processed_command', sa.Column('transaction_id', sa.BigInteger(), nullable=True))
    op.add_column(
        'processed_command', sa.Column('duplicates', sa.Integer(), server_default=sa.text('0'), nullable=False)
    )
    op.create_index('ix_processed_command_task_id', 'processed_command', ['task_id'], unique=False)
    op.add_column('dead_letter', sa.Column('worker_id', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('dead_letter', 'worker_id')
    op.drop_index('ix_processed_command_task_id', table_name='processed_command')
    op.drop_column('processed_command', 'duplicates')
    op.drop_column('processed_command', 'transaction_id')
    op.drop_column('processed_command', 'worker_id')
