"""The worker seen from outside: /metrics, /healthz and /readyz on its own port."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.integration.harness import (
    Process,
    produce_lines,
    topic_env,
    wait_until,
    worker_probe,
)

pytestmark = pytest.mark.integration


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_running_worker_reports_partitions_lag_events_dead_letters_and_readiness(
        bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(bootstrap, tmp_path, partitions=4)
    env["PACESETTER_KAFKA_FETCH_MAX_WAIT_MS"] = "37"  # not the default: proves it is applied
    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: worker.readyz()[0] == 200, 90, what="/readyz 200")
        assert worker_probe(worker.metrics_port, "/healthz")[0] == 200
        metrics = worker.metrics()
        assert metrics["pacesetter_worker_partitions_owned"] == 4
        assert metrics["pacesetter_worker_partitions_rebuilding"] == 0
        assert metrics["pacesetter_worker_broker_connected"] == 1
        assert metrics["pacesetter_worker_ready"] == 1
        # the running group consumer fetches with the configured wait (streams/app.py)
        assert metrics["pacesetter_worker_fetch_max_wait_ms"] == 37
        applied_before = metrics["pacesetter_worker_events_applied_total"]

        now = time.time()
        good = [{"v": 1, "id": f"e{i}", "type": "call.offered", "room": "north",
                 "at": _at(now - 60 + i), "call": f"c{i}", "line": "999"} for i in range(5)]
        produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"],
                      [orjson.dumps(e) for e in good] + [b"{not json"])

        def counted() -> bool:
            seen = worker.metrics()
            return (seen.get("pacesetter_worker_events_applied_total", 0) >= applied_before + 2
                    and seen.get('pacesetter_worker_dead_letters_total{reason="malformed"}', 0)
                    >= 1)

        wait_until(counted, 60, interval=0.5, what="the events and the dead letter counted")
        # the room's live state went out timed by stage (services/contract/freshness.py)
        wait_until(lambda: all(worker.metrics().get(
            f'pacesetter_worker_freshness_seconds_count{{stage="{stage}"}}', 0) >= 1
            for stage in ("fetch", "apply", "publish")), 30, interval=0.5,
                   what="the freshness stages counted")
        # caught up: nothing waits, so no partition lags, in messages or seconds
        wait_until(lambda: all(v == 0 for k, v in worker.metrics().items()
                               if k.startswith("pacesetter_worker_lag_")), 30, interval=0.5,
                   what="no lag")
        seen = worker.metrics()
        assert seen["pacesetter_worker_event_loop_stall_seconds"] < 5
        # Faust commits every second: the age stays small while the worker works
        wait_until(lambda: worker.metrics().get("pacesetter_worker_last_commit_age_seconds",
                                                99) < 5, 30, interval=0.5,
                   what="a recent commit")
        assert seen['pacesetter_worker_rebuilds_total{partition="0"}'] == 1
    finally:
        worker.stop()


def test_a_taken_metrics_port_stops_the_worker_naming_the_setting(
        bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(bootstrap, tmp_path, partitions=1)
    first = Process(["worker"], env, tmp_path / "first.log")
    try:
        wait_until(lambda: first.readyz()[0] != 0, 60, what="the first worker's /readyz")
        env["PACESETTER_WORKER_METRICS_PORT"] = str(first.metrics_port)
        second = Process(["worker"], env, tmp_path / "second.log")
        try:
            assert second.proc.wait(60) != 0
        finally:
            second.stop()
        assert "PACESETTER_WORKER_METRICS_PORT" in second.text()
    finally:
        first.stop()
