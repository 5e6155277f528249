"""Prometheus exposition: values from the live state's totals, bounded labels, promtool-clean."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def exposition(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _samples(text):
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def test_counters_and_histogram_come_from_the_live_totals(exposition):
    s = _samples(exposition)
    assert _value(s, "pacesetter_calls_offered_total", room="north", line="999") == 1234
    assert _value(s, "pacesetter_calls_answered_total", room="north", line="999") == 1200
    assert _value(s, "pacesetter_calls_abandoned_total", room="north", line="101") == 30
    assert _value(s, "pacesetter_calls_callbacks_requested_total", room="south", line="999") == 4
    bucket = "pacesetter_answer_wait_seconds_bucket"
    assert _value(s, bucket, room="north", line="999", le="10.0") == 1000
    assert _value(s, bucket, room="north", line="999", le="60.0") == 1190
    assert _value(s, bucket, room="north", line="999", le="+Inf") == 1200
    assert _value(s, "pacesetter_answer_wait_seconds_count", room="north", line="999") == 1200
    assert _value(s, "pacesetter_answer_wait_seconds_sum", room="north", line="999") == 7000.5


def test_gauges_come_from_the_live_state(exposition):
    s = _samples(exposition)
    assert _value(s, "pacesetter_queue_calls", room="north", line="999") == 2
    assert _value(s, "pacesetter_queue_longest_wait_seconds", room="north", line="999") == 14.2
    for definition in ("answered", "offered", "excl_early_abandons"):
        assert 0 <= _value(s, "pacesetter_interval_service_level_ratio", room="north",
                           line="999", definition=definition) <= 1
    assert _value(s, "pacesetter_interval_abandonment_ratio", room="north", line="999") == 0.025
    assert _value(s, "pacesetter_failure_demand_ratio", room="north", line="101") == 0.1333
    assert _value(s, "pacesetter_staffing_required_handlers", room="north", line="999") == 9
    assert ("pacesetter_staffing_required_handlers",
            (("line", "101"), ("room", "north"))) not in s  # no plan, no sample
    assert _value(s, "pacesetter_handlers", room="north", state="on_call") == 6
    assert _value(s, "pacesetter_alerts_firing", room="north",
                  rule="service_level_below_target") == 1
    assert _value(s, "pacesetter_alerts_firing", room="north", rule="long_wait") == 0
    assert _value(s, "pacesetter_alerts_firing", room="south", rule="long_wait") == 1
    assert _value(s, "pacesetter_readmodel_ready") == 1


def test_pipeline_health_is_summed_over_rooms(exposition):
    s = _samples(exposition)
    assert _value(s, "pacesetter_events_total", type="call.offered") == 1234 + 100
    assert _value(s, "pacesetter_events_rejected_total", reason="duplicate") == 6
    assert _value(s, "pacesetter_event_lag_seconds") == 0.8


def test_label_sets_are_bounded(exposition):
    allowed = {"room", "line", "state", "rule", "grade", "definition", "type", "reason", "le",
               "severity", "acknowledged", "stage"}
    for family in text_string_to_metric_families(exposition):
        if family.name.startswith("pacesetter_"):
            for sample in family.samples:
                assert set(sample.labels) <= allowed, sample


def test_promtool_check_metrics_passes(exposition):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (Debian package 'prometheus'); CI needs it")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    result = subprocess.run([promtool, "check", "metrics"], input=exposition.encode(),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_staffing_plan_figures_are_exported_for_grafana():
    from api.metrics import build_registry
    from api.readmodel import ReadModel
    from services.contract.settings import Settings

    settings = Settings(bootstrap_servers="127.0.0.1:1", api_tokens="")
    model = ReadModel(settings)
    staffing = {"required_handlers": 9, "forecast_calls": 31.5, "forecast_calls_upper": 38.0}
    model.apply(settings.topic_live, {
        "room": "north", "now": "2026-11-21T22:20:00Z", "mode": "live",
        "lines": {"999": {"in_queue": 0, "longest_wait_seconds": None, "interval": None,
                          "rolling_60m": {}, "rolling_24h": {}, "staffing": staffing}},
        "handlers": {}, "incidents_awaiting_dispatch": {}, "alerts": [], "totals": {}})
    registry = build_registry(model)
    labels = {"room": "north", "line": "999"}
    assert registry.get_sample_value("pacesetter_staffing_required_handlers", labels) == 9
    assert registry.get_sample_value("pacesetter_forecast_calls", labels) == 31.5
    assert registry.get_sample_value("pacesetter_forecast_calls_upper", labels) == 38.0


def test_counters_never_go_down_when_recomputed_totals_drop():
    """A retention trim or a rebuild lowers the recomputed totals: the counters hold still,
    then go on rising with what arrives next (Prometheus' rate() would read a drop as a reset)."""
    from api.metrics import build_registry
    from api.readmodel import ReadModel
    from services.contract.settings import Settings

    settings = Settings(bootstrap_servers="127.0.0.1:1", api_tokens="")
    model = ReadModel(settings)

    def publish(offered: int, within_10s: int, answered: int, events: int) -> None:
        model.apply(settings.topic_live, {
            "room": "north", "now": "2026-11-21T22:20:00Z", "mode": "live", "lines": {},
            "handlers": {}, "incidents_awaiting_dispatch": {}, "alerts": [],
            "totals": {"lines": {"999": {
                "offered": offered, "answered": answered, "abandoned": 0,
                "callbacks_requested": 0,
                "answer_wait_buckets": {"10.0": within_10s, "+Inf": answered},
                "answer_wait_count": answered, "answer_wait_sum_seconds": 5.0 * answered}},
                "events": {"call.offered": events}, "rejected": {"invalid": events // 10}}})

    registry = build_registry(model)
    labels = {"room": "north", "line": "999"}

    def exported() -> tuple[float | None, ...]:
        return (registry.get_sample_value("pacesetter_calls_offered_total", labels),
                registry.get_sample_value("pacesetter_answer_wait_seconds_bucket",
                                          {**labels, "le": "10.0"}),
                registry.get_sample_value("pacesetter_answer_wait_seconds_bucket",
                                          {**labels, "le": "+Inf"}),
                registry.get_sample_value("pacesetter_answer_wait_seconds_sum", labels),
                registry.get_sample_value("pacesetter_events_total", {"type": "call.offered"}),
                registry.get_sample_value("pacesetter_events_rejected_total",
                                          {"reason": "invalid"}))

    publish(offered=100, within_10s=80, answered=90, events=200)
    assert exported() == (100, 80, 90, 450.0, 200, 20)
    publish(offered=60, within_10s=50, answered=55, events=120)  # a trim: less retained
    assert exported() == (100, 80, 90, 450.0, 200, 20)
    publish(offered=65, within_10s=53, answered=57, events=130)  # 5 calls, 10 events later
    assert exported() == (105, 83, 92, 460.0, 210, 21)
    low, high = exported()[1:3]
    assert low is not None and high is not None and low <= high  # buckets stay cumulative
