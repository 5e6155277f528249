"""Intervals, staffing plans and backtests: the schema stores had before migrations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three original tables."""
    op.create_table(
        "intervals",
        sa.Column("room", sa.Text, primary_key=True),
        sa.Column("line", sa.Text, primary_key=True),
        sa.Column("interval_start", sa.Text, primary_key=True),
        sa.Column("interval_end", sa.Text, nullable=False),
        sa.Column("final", sa.Integer, nullable=False),
        sa.Column("offered", sa.Integer),
        sa.Column("answered", sa.Integer),
        sa.Column("abandoned", sa.Integer),
        sa.Column("aht_seconds", sa.Float),
        sa.Column("asa_seconds", sa.Float),
        sa.Column("queue_seconds", sa.Float),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_table(
        "plans",
        sa.Column("room", sa.Text, primary_key=True),
        sa.Column("line", sa.Text, primary_key=True),
        sa.Column("interval_start", sa.Text, primary_key=True),
        sa.Column("interval_end", sa.Text, nullable=False),
        *(sa.Column(name, sa.Float) for name in ("calls", "calls_lower", "calls_upper",
                                                 "aht_seconds")),
        sa.Column("required_handlers", sa.Integer),
        sa.Column("required_handlers_upper", sa.Integer),
        sa.Column("rostered_handlers", sa.Float),
        sa.Column("rostered_handlers_rounded", sa.Integer),
        *(sa.Column(name, sa.Float) for name in ("service_level", "asa_seconds", "occupancy",
                                                 "abandonment")),
        sa.Column("method", sa.Text),
        sa.Column("generated_at", sa.Text),
        sa.Column("row_json", sa.Text, nullable=False),
    )
    op.create_table(
        "backtests",
        sa.Column("room", sa.Text, primary_key=True),
        sa.Column("line", sa.Text, primary_key=True),
        sa.Column("history_end", sa.Text, nullable=False),
        sa.Column("computed_at", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    for table in ("backtests", "plans", "intervals"):
        op.drop_table(table)
