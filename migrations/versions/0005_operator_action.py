"""operator_action: who replayed, discarded, deleted, ran now, paused or resumed, and when

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 23:00:00.000000

A new table only (written by the page and the command lines, read by the page's Actions view);
nothing existing is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('operator_action',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('who', sa.Text(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('queue', sa.Text(), nullable=False),
    sa.Column('target', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_action'))
    )
    op.create_index('ix_operator_action_at', 'operator_action', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_operator_action_at', table_name='operator_action')
    op.drop_table('operator_action')
