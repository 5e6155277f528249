"""Kafka clients connect as the settings say; a refused certificate or login stops at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.contract.settings import Settings
from services.kafka.broker import ensure_topics, wait_for_kafka
from services.kafka.clients import KafkaAccessError, check_access, security
from services.kafka.ingest import Publisher
from tests.kafka_security import Pki, authenticating_broker, make_pki, tls_broker

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_bootstrap(pki: Pki) -> Iterator[str]:
    with tls_broker(pki) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def auth_bootstrap() -> Iterator[str]:
    with authenticating_broker() as bootstrap:
        yield bootstrap


def tls(bootstrap: str, pki: Pki, **more: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap, kafka_security_protocol="SSL",
                    kafka_ssl_ca_file=str(pki.ca), **more)  # type: ignore[arg-type]


def refused(settings: Settings, *named: str) -> float:
    """Seconds until ``check_access`` refused ``settings`` with a message naming ``named``."""
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as info:
        check_access(settings, timeout_seconds=25)
    for name in named:
        assert name in str(info.value)
    return time.monotonic() - started


def test_every_client_library_works_over_tls_with_the_ca(tls_bootstrap: str, pki: Pki) -> None:
    settings = tls(tls_bootstrap, pki)
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    wait_for_kafka(tls_bootstrap, 20, settings=settings)
    assert ensure_topics(tls_bootstrap, [topic], 1, settings=settings) == [topic]
    publisher = Publisher(tls_bootstrap, topic, settings=settings)  # kafka-python
    publisher.send_raw("room", b"[1]")
    publisher.close()
    assert publisher.acked == 1

    async def round_trip() -> list[bytes | None]:
        options = security(settings).aiokafka()
        producer = AIOKafkaProducer(bootstrap_servers=tls_bootstrap, **options)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"[2]", key=b"room")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=tls_bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **options)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got: list[bytes | None] = []
            for _ in range(50):
                batch = await consumer.getmany(tp, timeout_ms=200)
                got += [m.value for m in batch.get(tp, [])]
                if len(got) >= 2:
                    break
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == [b"[1]", b"[2]"]


def test_an_untrusted_broker_certificate_is_refused_naming_the_ca_setting(
        tls_bootstrap: str, pki: Pki) -> None:
    other = Settings(bootstrap_servers=tls_bootstrap, kafka_security_protocol="SSL",
                     kafka_ssl_ca_file=str(pki.other_ca))
    assert refused(other, "PACESETTER_KAFKA_SSL_CA_FILE") < 30
    system = Settings(bootstrap_servers=tls_bootstrap, kafka_security_protocol="SSL")
    assert refused(system, "PACESETTER_KAFKA_SSL_CA_FILE") < 30


def test_a_plaintext_client_of_a_tls_listener_is_told_to_set_the_protocol(
        tls_bootstrap: str) -> None:
    plain = Settings(bootstrap_servers=tls_bootstrap)
    assert refused(plain, "PACESETTER_KAFKA_SECURITY_PROTOCOL", "SSL") < 30


def test_mutual_tls_needs_the_client_certificate(pki: Pki) -> None:
    with tls_broker(pki, require_client_cert=True) as bootstrap:
        assert refused(tls(bootstrap, pki), "PACESETTER_KAFKA_SSL_CERT_FILE") < 30
        mutual = tls(bootstrap, pki, kafka_ssl_cert_file=str(pki.client_cert),
                     kafka_ssl_key_file=str(pki.client_key))
        check_access(mutual, timeout_seconds=20)
        wait_for_kafka(bootstrap, 20, settings=mutual)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_a_refused_login_stops_at_once_naming_the_sasl_settings(
        auth_bootstrap: str, mechanism: str) -> None:
    wrong = Settings(bootstrap_servers=auth_bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                     kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
                     kafka_sasl_username="pacesetter", kafka_sasl_password="wrong")
    assert refused(wrong, "PACESETTER_KAFKA_SASL_USERNAME", "PACESETTER_KAFKA_SASL_PASSWORD") < 30


def test_a_client_without_login_is_told_the_broker_wants_one(auth_bootstrap: str) -> None:
    assert refused(Settings(bootstrap_servers=auth_bootstrap),
                   "PACESETTER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL") < 30


@pytest.mark.parametrize("command", [["worker"], ["replay", "-"]])
def test_commands_exit_within_30_seconds_on_a_refused_login(
        auth_bootstrap: str, tmp_path: Path, command: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "PACESETTER_BOOTSTRAP_SERVERS": auth_bootstrap,
           "PACESETTER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "PACESETTER_KAFKA_SASL_USERNAME": "pacesetter",
           "PACESETTER_KAFKA_SASL_PASSWORD": "wrong", "PACESETTER_DATA_DIR": str(tmp_path),
           "PACESETTER_STORE_URL": f"sqlite:///{tmp_path}/h.db"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pacesetter.cli", *command], cwd=ROOT, env=env,
                          input=b"", capture_output=True, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode != 0
    assert b"PACESETTER_KAFKA_SASL_PASSWORD" in done.stderr
    assert b"wrong" not in done.stderr  # the password itself is never printed
