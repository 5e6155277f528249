"""The API reads only the read model's horizon of the output topics, not their whole history."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from api.readmodel import ReadModel
from tests.api.feeds import BASE, interval_record, make_settings, make_topics


def test_records_published_before_the_horizon_are_not_read_at_start(bootstrap):
    from kafka import KafkaProducer

    settings = make_settings(bootstrap, read_model_days=3)
    make_topics(settings)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    now_ms = int(time.time() * 1000)
    day_ms = 86_400_000
    for age_days in (20, 10, 4, 2, 1, 0):  # published that many days ago
        start = BASE - timedelta(days=age_days)
        record = interval_record("north", "999", start, offered=age_days)
        producer.send(settings.topic_intervals, key=f"north|999|{start}".encode(),
                      value=json.dumps({"kind": "interval", "record": record}).encode(),
                      timestamp_ms=now_ms - age_days * day_ms - 60_000)
        producer.flush(10)
    producer.close(5)
    model = ReadModel(settings).start()
    try:
        assert model.wait_ready(30), model.readiness().reason
        assert sorted(r["offered"] for r in model.intervals("north")) == [0, 1, 2]
        assert model.messages_applied == 3
    finally:
        model.stop()


def test_output_topics_are_compacted_and_bounded_beyond_the_horizon():
    from services.contract.settings import Settings

    settings = Settings(read_model_days=8)
    configs = settings.output_topic_configs()
    assert set(configs) == {settings.topic_intervals, settings.topic_live, settings.topic_alerts}
    for config in configs.values():
        assert config["cleanup.policy"] == "compact,delete"
        assert int(config["retention.ms"]) >= 8 * 86_400_000
