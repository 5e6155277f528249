"""Shared fixtures: one embedded broker per test session, settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.kafka.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The embedded tansu broker on a free loopback port, for the whole test session."""
    with EmbeddedBroker("127.0.0.1", free_port()) as running:
        yield running


@pytest.fixture(scope="session")
def bootstrap(broker: EmbeddedBroker) -> str:
    """``HOST:PORT`` of the session's broker."""
    return broker.bootstrap
