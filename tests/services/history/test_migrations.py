"""Schema revisions: a behind schema is named, `pacesetter db upgrade` brings it up to date."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from pacesetter.cli import main
from services.history.database import SchemaBehind, create_engine, head_revision
from services.history.store import HistoryStore

LEGACY = """CREATE TABLE intervals (
    room TEXT NOT NULL, line TEXT NOT NULL, interval_start TEXT NOT NULL,
    interval_end TEXT NOT NULL, final INTEGER NOT NULL, offered INTEGER, answered INTEGER,
    abandoned INTEGER, aht_seconds DOUBLE PRECISION, asa_seconds DOUBLE PRECISION,
    queue_seconds DOUBLE PRECISION, record_json TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (room, line, interval_start))"""


def test_a_behind_postgresql_schema_stops_the_program_naming_the_fix(postgres, capsys):
    postgres.reset()
    store_url = postgres.url
    with pytest.raises(SchemaBehind, match="pacesetter db upgrade"):
        HistoryStore.open(store_url)
    assert main(["db", "status", "--store", store_url]) == 1
    assert "behind" in capsys.readouterr().out
    assert main(["db", "upgrade", "--store", store_url]) == 0
    assert f"to {head_revision()}" in capsys.readouterr().out
    assert main(["db", "status", "--store", store_url]) == 0
    with HistoryStore.open(store_url) as store:
        assert store.intervals("north") == []


def test_a_command_opening_a_behind_store_exits_with_the_fix(postgres, capsys):
    postgres.reset()
    code = main(["backtest", "--room", "north", "--line", "999", "--store", postgres.url])
    assert code == 2
    err = capsys.readouterr().err
    assert "schema is behind" in err and "pacesetter db upgrade" in err


def test_a_store_made_before_migrations_is_upgraded_keeping_its_intervals(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(LEGACY)
        conn.execute("INSERT INTO intervals VALUES ('north', '999', '2026-11-21T22:00:00Z', "
                     "'2026-11-21T22:15:00Z', 1, 4, 4, 0, 200.0, NULL, NULL, "
                     "'{\"room\":\"north\",\"offered\":4}', '2026-11-22T00:00:00Z')")
    url = f"sqlite:///{path}"
    with pytest.raises(SchemaBehind, match="revision 0001"):
        HistoryStore.open(url, upgrade=False)
    with HistoryStore.open(url) as store:  # a SQLite file is upgraded on open
        assert store.intervals("north") == [{"room": "north", "offered": 4}]
        assert store.attendance("north") == []
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == \
            head_revision()
    engine.dispose()


def test_the_migrations_make_the_tables_the_code_declares(store_url):
    from services.history import schema

    with HistoryStore.open(store_url, upgrade=True) as store:
        inspector = sa.inspect(store.engine)
        for table in schema.metadata.sorted_tables:
            assert {c["name"] for c in inspector.get_columns(table.name)} == \
                {c.name for c in table.columns}, table.name
