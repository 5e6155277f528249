"""The Faust app and its topics, configured from Pacesetter's settings only."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from services.contract.settings import Settings
from services.kafka.clients import KafkaSecurity, security

log = logging.getLogger(__name__)

# Faust fixes the consumer's fetch wait at 1,500 ms, and tansu holds each fetch for about half
# of it: events would take 0.4-3 s to show. PACESETTER_KAFKA_FETCH_MAX_WAIT_MS (10 ms by
# default) keeps p99 freshness well under a second. The worker's /metrics reports the wait
# its running consumer fetches with, so an upgrade that breaks this patch fails a test.
FETCH_WAIT_ATTRIBUTE = "pacesetter_fetch_max_wait_ms"
_original_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original_create_worker_consumer(self, transport)
    wait_ms = getattr(self.app, FETCH_WAIT_ATTRIBUTE, None)
    if wait_ms is not None:
        if getattr(consumer, "_fetcher", True) is not None or not hasattr(
                consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("this aiokafka no longer takes the fetch wait before start(): "
                               "PACESETTER_KAFKA_FETCH_MAX_WAIT_MS cannot be applied")
        consumer._fetch_max_wait_ms = wait_ms
    return consumer


faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


def live_fetch_wait_ms(app: faust.App) -> int | None:
    """The fetch wait of the worker's running group consumer, read from its fetcher.

    None while it is not running (or if aiokafka's internals moved: the metric then goes
    missing and the test reading it fails).
    """
    try:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        fetcher = thread._consumer._fetcher
        return int(fetcher._fetch_max_wait_ms)
    except (AttributeError, TypeError):
        return None


def faust_credentials(options: KafkaSecurity) -> Any:
    """Faust's ``broker_credentials`` for the same connection options as every other client."""
    if options.uses_sasl:
        return faust.SASLCredentials(username=options.username, password=options.password,
                                     ssl_context=options.ssl_context,
                                     mechanism=options.mechanism)
    if options.uses_ssl:
        return faust.SSLCredentials(options.ssl_context)
    return None


def create_app(settings: Settings) -> faust.App:
    """A Faust app for the worker.

    ``env={}`` stops Faust reading its own environment variables (``BROKER_URL`` …), which
    would otherwise override these arguments: Pacesetter is configured through
    ``PACESETTER_*`` only.
    """
    brokers = ";".join(f"kafka://{server}" for server in settings.bootstrap_list)
    app = faust.App(
        settings.worker_id,
        env={},
        broker=brokers,
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=f"{settings.data_dir}/faust",
        broker_commit_interval=1.0,
        # tansu drops a departed member (even one that left cleanly) only when its session
        # times out, and a joining worker waits for that: 10 s made a restart take ~20 s to
        # rejoin, 6 s takes ~3 s (heartbeats every second come from the consumer thread).
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_request_timeout=30.0,
        stream_wait_empty=False,
        producer_linger=0.005,
        broker_credentials=faust_credentials(security(settings)),
    )
    setattr(app, FETCH_WAIT_ATTRIBUTE, settings.kafka_fetch_max_wait_ms)
    return app


def events_topic(app: faust.App, settings: Settings) -> faust.TopicT:
    """The events topic (EVENTS.md), raw bytes: the engine decodes and validates."""
    return app.topic(
        settings.topic_events,
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
        partitions=settings.partitions,
    )
