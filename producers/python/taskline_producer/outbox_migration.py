"""An alembic migration step for the outbox table, for a service's own migrations.

In a revision of the service (`alembic revision -m "taskline outbox"`), call these from its
`upgrade()` and `downgrade()`:

    from taskline_producer.outbox_migration import create_outbox, drop_outbox

    def upgrade() -> None:
        create_outbox()

    def downgrade() -> None:
        drop_outbox()

`create_outbox` runs `taskline_producer/sql/outbox.sql` (idempotent), so a database that
already has the table is left as it is. Needs alembic and the `outbox` extra; docs/outbox.md.
"""

from __future__ import annotations

from taskline_producer.outbox import OUTBOX_TABLE, outbox_sql

__all__ = ["create_outbox", "drop_outbox"]


def create_outbox() -> None:
    """Create `taskline_outbox` and its indexes in the migration's connection."""
    from alembic import op

    op.execute(outbox_sql())


def drop_outbox() -> None:
    """Drop `taskline_outbox` (and every command still in it)."""
    from alembic import op

    op.execute(f"DROP TABLE IF EXISTS {OUTBOX_TABLE}")
