"""Fixtures of the API tests: a read model fed by real messages on the session broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from api.readmodel import ReadModel
from services.contract.settings import Settings
from tests.api.feeds import Feed, make_settings, make_topics, seed


@pytest.fixture(scope="module")
def settings(bootstrap: str) -> Settings:
    made = make_settings(bootstrap)
    make_topics(made)
    return made


@pytest.fixture(scope="module")
def feed(settings: Settings) -> Iterator[Feed]:
    publisher = Feed(settings)
    seed(publisher)
    yield publisher
    publisher.close()


@pytest.fixture(scope="module")
def model(settings: Settings, feed: Feed) -> Iterator[ReadModel]:
    read_model = ReadModel(settings).start()
    assert read_model.wait_ready(30), read_model.readiness().reason
    yield read_model
    read_model.stop()


@pytest.fixture(scope="module")
def client(settings: Settings, model: ReadModel) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings, read_model=model)) as test_client:
        yield test_client
