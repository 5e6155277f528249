"""Attendance and handler records and alert episodes (with acknowledgements) are kept too.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the attendance, handlers and alert_episodes tables."""
    op.create_table(
        "attendance",
        sa.Column("room", sa.Text, primary_key=True),
        sa.Column("grade", sa.Text, primary_key=True),
        sa.Column("interval_start", sa.Text, primary_key=True),
        sa.Column("final", sa.Integer, nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_table(
        "handlers",
        sa.Column("room", sa.Text, primary_key=True),
        sa.Column("interval_start", sa.Text, primary_key=True),
        sa.Column("final", sa.Integer, nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_table(
        "alert_episodes",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("started_at", sa.Text, primary_key=True),
        sa.Column("room", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("resolved_at", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.Column("acknowledged_by", sa.Text),
        sa.Column("acknowledged_at", sa.Text),
        sa.Column("note", sa.Text),
    )
    op.create_index("alert_episodes_room_started", "alert_episodes", ["room", "started_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("alert_episodes_room_started", table_name="alert_episodes")
    for table in ("alert_episodes", "handlers", "attendance"):
        op.drop_table(table)
