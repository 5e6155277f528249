"""Rebalance benchmarks: a third worker joining two, then one of three killed.

8 rooms with simulated days of events on the embedded broker; workers are real ``pacesetter
worker`` processes and everything is read from their /metrics. While the group rebalances a
live event per room is published every 0.25 s, and each worker's
``pacesetter_worker_lag_seconds`` is sampled every 0.2 s on the partitions that stayed with it:
the freshness of rooms whose partition did not move.

Prints one JSON object. Run: `.venv/bin/python benchmarks/bench_rebalance.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.kafka.broker import EmbeddedBroker, ensure_topics, free_port  # noqa: E402
from services.kafka.ingest import Publisher  # noqa: E402
from services.simulation.simulator import simulate_events  # noqa: E402
from tests.integration.harness import Process, produce_lines, topic_env  # noqa: E402

PARTITIONS = 8
ROOMS = 8


def per_partition(metrics: dict[str, float], name: str) -> dict[int, float]:
    prefix = f'{name}{{partition="'
    return {int(k[len(prefix):-2]): v for k, v in metrics.items() if k.startswith(prefix)}


def settled(workers: list[Process]) -> bool:
    """Every partition owned by exactly one ready worker, none more than a few messages behind
    (the live feed keeps adding some)."""
    owned: list[int] = []
    for worker in workers:
        if worker.readyz()[0] != 200:
            return False
        metrics = worker.metrics()
        owned += [p for p, v in per_partition(metrics, "pacesetter_worker_partition_owned").items()
                  if v == 1]
        if any(v > 8 for v in per_partition(metrics, "pacesetter_worker_lag_messages").values()):
            return False
    return sorted(owned) == list(range(PARTITIONS))


def wait_settled(workers: list[Process], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if settled(workers):
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"workers not settled within {timeout:g} s")


def counter_sum(workers: list[Process], name: str) -> float:
    return sum(sum(per_partition(w.metrics(), name).values()) for w in workers)


class LiveFeed:
    """One offered call per room every 0.25 s, stamped now, until stopped."""

    def __init__(self, bootstrap: str, topic: str):
        self.publisher = Publisher(bootstrap, topic, batch_events=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.n = 0

    def run(self) -> None:
        while not self.stop.is_set():
            at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            for room in range(ROOMS):
                self.n += 1
                event = {"v": 1, "id": f"live-{self.n}", "type": "call.offered",
                         "room": f"room{room}", "at": at, "call": f"live-{self.n}", "line": "101"}
                self.publisher.send_raw(f"room{room}", orjson.dumps([event]))
            self.stop.wait(0.25)
        self.publisher.close()


def sample_unmoved_lag(workers: list[Process], before: dict[int, set[int]],
                       done: threading.Event, samples: list[float]) -> None:
    """Lag seconds of partitions each worker owned before and still owns, every 0.2 s."""
    while not done.is_set():
        for i, worker in enumerate(workers):
            metrics = worker.metrics()
            owned = {p for p, v in per_partition(
                metrics, "pacesetter_worker_partition_owned").items() if v == 1}
            lag = per_partition(metrics, "pacesetter_worker_lag_seconds")
            samples += [lag[p] for p in owned & before.get(i, set()) if p in lag]
        done.wait(0.2)


def owned_by(workers: list[Process]) -> dict[int, set[int]]:
    return {i: {p for p, v in per_partition(
        w.metrics(), "pacesetter_worker_partition_owned").items() if v == 1}
        for i, w in enumerate(workers)}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0, help="simulated days per room")
    parser.add_argument("--quick", action="store_true", help="6 simulated hours per room")
    args = parser.parse_args()
    days = 0.25 if args.quick else args.days
    out: dict[str, Any] = {"rooms": ROOMS, "partitions": PARTITIONS, "days_per_room": days}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(
            "127.0.0.1", free_port()).start() as broker:
        bootstrap = broker.bootstrap
        env = topic_env(bootstrap, Path(tmp), partitions=PARTITIONS)
        topic = env["PACESETTER_TOPIC_EVENTS"]
        ensure_topics(bootstrap, [topic], PARTITIONS)
        lines = [orjson.dumps(e) for e in simulate_events(rooms=ROOMS, days=days, seed=7)]
        out["events"] = len(lines)
        produce_lines(bootstrap, topic, lines)
        workers = [Process(["worker"], env, Path(tmp) / f"w{i}.log") for i in range(2)]
        try:
            out["two_workers_ready_seconds"] = round(wait_settled(workers, 900), 1)
            print("two workers ready", out, file=sys.stderr, flush=True)
            feed = LiveFeed(bootstrap, topic)
            feed.thread.start()
            time.sleep(2)
            before = owned_by(workers)
            rebuilt = counter_sum(workers, "pacesetter_worker_rebuilds_total")
            samples: list[float] = []
            done = threading.Event()
            sampler = threading.Thread(target=sample_unmoved_lag,
                                       args=(workers, before, done, samples), daemon=True)
            sampler.start()
            workers.append(Process(["worker"], env, Path(tmp) / "w2.log"))
            join_seconds = wait_settled(workers, 900)
            done.set()
            sampler.join()
            out["join"] = {
                "seconds_until_caught_up": round(join_seconds, 1),
                "partitions_rebuilt": int(counter_sum(workers, "pacesetter_worker_rebuilds_total")
                                          - rebuilt),
                "partitions_kept": int(counter_sum(workers,
                                                   "pacesetter_worker_partitions_kept_total")),
                "unmoved_lag_seconds_p99": percentile(samples, 0.99),
                "unmoved_lag_seconds_max": max(samples) if samples else None,
                "lag_samples": len(samples),
            }
            victim = workers.pop(0)
            rebuilt = counter_sum(workers, "pacesetter_worker_rebuilds_total")
            victim.kill(signal.SIGKILL)
            victim.proc.wait(10)
            victim.stop()
            loss_seconds = wait_settled(workers, 900)
            out["worker_loss"] = {
                "seconds_until_caught_up": round(loss_seconds, 1),
                "partitions_rebuilt": int(counter_sum(workers, "pacesetter_worker_rebuilds_total")
                                          - rebuilt),
            }
            feed.stop.set()
            feed.thread.join(30)
        finally:
            for worker in workers:
                worker.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
