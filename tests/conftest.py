"""Shared fixtures: one embedded broker per test session, settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.kafka.broker import EmbeddedBroker, free_port
from tests.postgres import PostgresServer, start_or_skip


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The embedded tansu broker on a free loopback port, for the whole test session."""
    with EmbeddedBroker("127.0.0.1", free_port()) as running:
        yield running


@pytest.fixture(scope="session")
def bootstrap(broker: EmbeddedBroker) -> str:
    """``HOST:PORT`` of the session's broker."""
    return broker.bootstrap


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server started for the test session (tests/postgres.py)."""
    server = start_or_skip()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL: a SQLite file, then the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    server.reset()
    return server.url
