"""SASL/SCRAM and TLS settings reach every client library the worker builds.

tansu 0.6 verifies SCRAM logins (tests/services/kafka/test_clients.py sees it refuse them) but
cannot be given a user to log in as: ``tansu user create`` must itself log in to a broker with
``--authentication``, and without it the user lands in a memory store that the next start of
the broker forgets. So a SCRAM login that succeeds is proven up to what each library is given.
"""

from __future__ import annotations

import ssl

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from services.contract.settings import Settings
from streams.app import create_app
from streams.worker import StreamWorker
from tests.kafka_security import make_pki


@pytest.fixture(scope="module")
def scram(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("pki")
    pki = make_pki(folder)
    secret = folder / "password"
    secret.write_text("s3cret-from-a-file\n")
    return Settings(bootstrap_servers="kafka.example:9093", kafka_security_protocol="SASL_SSL",
                    kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="pacesetter",
                    kafka_sasl_password_file=str(secret), kafka_ssl_ca_file=str(pki.ca),
                    data_dir=str(folder / "data"))


def check(options: dict[str, object]) -> None:
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "pacesetter"
    assert options["sasl_plain_password"] == "s3cret-from-a-file"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_fausts_group_consumer_and_producer_get_the_login(scram: Settings) -> None:
    app = create_app(scram)
    check(dict(credentials_to_aiokafka_auth(app.conf.broker_credentials)))


def test_the_workers_own_aiokafka_clients_get_the_login(scram: Settings) -> None:
    check(StreamWorker(scram).kafka.aiokafka())


def test_kafka_python_clients_get_the_login(scram: Settings) -> None:
    from kafka import KafkaProducer

    from services.kafka.clients import security

    options = security(scram).kafka_python()
    check(options)
    # kafka-python accepts every option as given (it checks names at construction)
    producer_config = dict(KafkaProducer.DEFAULT_CONFIG)
    assert set(options) <= set(producer_config)
