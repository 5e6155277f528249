"""bench_api.py and soak.py on a Kafka cluster given by ``--bootstrap`` instead of the embedded
broker: no broker of their own, the worker's PACESETTER_* security settings for their clients,
a wrong setting stopping them at start, and the feed's linger chosen per broker."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from benchmarks import soak as soak_module
from services.contract.errors import PacesetterError
from services.contract.settings import SettingsError
from services.kafka.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    return soak_module  # a dataclass inside: imported, not loaded


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return sys.modules["bench_api"]  # the one soak.py runs with (benchmarks/ on its path)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PACESETTER_"):
            monkeypatch.delenv(name)


def test_without_bootstrap_the_embedded_broker_is_used_and_the_feed_lingers(
        bench: ModuleType, soak: ModuleType, tmp_path: Path) -> None:
    stack = bench.Stack(tmp_path)
    assert stack.broker is not None and stack.bootstrap == stack.broker.bootstrap
    args = soak_args(soak, [])
    assert args.bootstrap is None
    linger = bench.feed_linger_ms(args.bootstrap, args.linger_ms)
    assert linger == bench.EMBEDDED_FEED_LINGER_MS > bench.EXTERNAL_FEED_LINGER_MS
    assert bench.broker_description(None, linger)["kind"] == "embedded"


def test_with_bootstrap_no_broker_is_started_and_its_process_is_not_watched(
        bench: ModuleType, soak: ModuleType, tmp_path: Path) -> None:
    args = soak_args(soak, ["--bootstrap", "kafka-1:9093,kafka-2:9093", "--linger-ms", "7"])
    stack = bench.Stack(tmp_path, bootstrap=args.bootstrap)
    assert stack.broker is None and stack.broker_pid is None
    assert stack.bootstrap == "kafka-1:9093,kafka-2:9093"
    assert bench.feed_linger_ms(args.bootstrap, args.linger_ms) == 7
    assert bench.feed_linger_ms(args.bootstrap, None) == bench.EXTERNAL_FEED_LINGER_MS
    described = bench.broker_description(args.bootstrap, 7)
    assert described["kind"] == "external" and described["bootstrap"] == args.bootstrap
    stack.close()  # nothing of its own to stop


def test_a_wrong_security_setting_stops_the_start_naming_the_variable(
        bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")  # and no username
    stack = bench.Stack(tmp_path, bootstrap="127.0.0.1:1")
    with pytest.raises(SettingsError) as info:
        stack.start()
    assert "PACESETTER_KAFKA_SASL_USERNAME" in str(info.value)
    assert stack.worker is None and stack.api is None  # nothing was started


def test_the_security_settings_become_the_bench_clients_options(
        bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("PACESETTER_KAFKA_SASL_USERNAME", "bench")
    monkeypatch.setenv("PACESETTER_KAFKA_SASL_PASSWORD", "secret")
    stack = bench.Stack(tmp_path, bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens
                        connect_timeout=1)
    with pytest.raises(PacesetterError):  # no broker answers: after the settings were read
        stack.start()
    assert stack.worker is None
    assert stack.kafka_options["security_protocol"] == "SASL_PLAINTEXT"
    assert stack.kafka_options["sasl_plain_username"] == "bench"
    assert stack.kafka_options["sasl_plain_password"] == "secret"


@pytest.mark.slow
def test_worker_and_api_run_on_the_cluster_given(bench: ModuleType, tmp_path: Path) -> None:
    """A broker started apart stands for a force's cluster: the stack starts none of its own,
    and an event produced there reaches the API."""
    with EmbeddedBroker("127.0.0.1", free_port()) as cluster:
        stack = bench.Stack(tmp_path, bootstrap=cluster.bootstrap)
        try:
            stack.start()
            assert stack.broker is None
            assert stack.env["PACESETTER_BOOTSTRAP_SERVERS"] == cluster.bootstrap
            asyncio.run(produce_and_wait(bench, stack))
        finally:
            stack.close()


async def produce_and_wait(bench: ModuleType, stack: object) -> None:
    from aiokafka import AIOKafkaProducer

    room = bench.LiveRoom("elsewhere")
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap,  # type: ignore[attr-defined]
                                **stack.kafka_options)  # type: ignore[attr-defined]
    await producer.start()
    try:
        await producer.send_and_wait(stack.env["PACESETTER_TOPIC_EVENTS"],  # type: ignore[attr-defined]
                                     orjson.dumps(room.next()), key=room.name.encode())
    finally:
        await producer.stop()
    await bench.wait_for_room(stack, room.name, 60)


def soak_args(soak: ModuleType, argv: list[str]) -> Any:
    """The soak's parsed command line (its own parser, without running it)."""
    return soak.build_parser().parse_args(argv)
