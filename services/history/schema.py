"""The history store's tables at the newest migration (SQLAlchemy Core).

Times are RFC 3339 UTC texts: interval starts are whole quarter hours (``…:15:00Z``), so text
order is time order; alert instants carry microseconds in a fixed width for the same reason.
Every record is kept whole as JSON next to the columns that queries filter on.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

intervals = sa.Table(
    "intervals", metadata,
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

plans = sa.Table(
    "plans", metadata,
    sa.Column("room", sa.Text, primary_key=True),
    sa.Column("line", sa.Text, primary_key=True),
    sa.Column("interval_start", sa.Text, primary_key=True),
    sa.Column("interval_end", sa.Text, nullable=False),
    sa.Column("calls", sa.Float),
    sa.Column("calls_lower", sa.Float),
    sa.Column("calls_upper", sa.Float),
    sa.Column("aht_seconds", sa.Float),
    sa.Column("required_handlers", sa.Integer),
    sa.Column("required_handlers_upper", sa.Integer),
    sa.Column("rostered_handlers", sa.Float),
    sa.Column("rostered_handlers_rounded", sa.Integer),
    sa.Column("service_level", sa.Float),
    sa.Column("asa_seconds", sa.Float),
    sa.Column("occupancy", sa.Float),
    sa.Column("abandonment", sa.Float),
    sa.Column("method", sa.Text),
    sa.Column("generated_at", sa.Text),
    sa.Column("row_json", sa.Text, nullable=False),
)

backtests = sa.Table(
    "backtests", metadata,
    sa.Column("room", sa.Text, primary_key=True),
    sa.Column("line", sa.Text, primary_key=True),
    sa.Column("history_end", sa.Text, nullable=False),
    sa.Column("computed_at", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
)

attendance = sa.Table(
    "attendance", metadata,
    sa.Column("room", sa.Text, primary_key=True),
    sa.Column("grade", sa.Text, primary_key=True),
    sa.Column("interval_start", sa.Text, primary_key=True),
    sa.Column("final", sa.Integer, nullable=False),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

handlers = sa.Table(
    "handlers", metadata,
    sa.Column("room", sa.Text, primary_key=True),
    sa.Column("interval_start", sa.Text, primary_key=True),
    sa.Column("final", sa.Integer, nullable=False),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

alert_episodes = sa.Table(
    "alert_episodes", metadata,
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
    sa.Index("alert_episodes_room_started", "room", "started_at"),
)

# The stream worker's room state per events partition (services/figures/checkpoint.py): the
# state after applying every message below ``next_offset``, so a rebuild replays only the rest.
checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("taken_at", sa.Text, nullable=False),
    sa.Column("format_version", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    # the newest message the state applied, by offset and digest: a rebuild checks the events
    # topic still holds it there (not a topic made again under the same name)
    sa.Column("anchor_offset", sa.BigInteger, nullable=False),
    sa.Column("anchor_digest", sa.Text, nullable=False),
    sa.Column("state", sa.LargeBinary, nullable=False),
)
