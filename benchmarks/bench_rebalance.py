"""Rebalance benchmarks: a third worker joining two, then one of three killed.

8 rooms with simulated days of events (a week each by default) on the embedded broker; workers
are real ``pacesetter worker`` processes and everything is read from their /metrics and
topics. While the group rebalances a live call per room is published every 0.25 s, and each
worker's ``pacesetter_worker_lag_seconds`` is sampled every 0.2 s on the partitions that stayed
with it: the freshness of rooms whose partition did not move.

Worker loss: one of the three is killed (SIGKILL) and the last 30 simulated minutes of every
room are produced at once. Measured: seconds from the kill until every room of the killed
worker's partitions is exact again: the latest interval, attendance and handler records of
those rooms on the intervals topic (what their new owner publishes) equal tests/oracle.py's
over every event produced, each record counted from the moment it last changed (its
message's create time), not from when this benchmark looked. "Caught up" (lag 0) is beside it.

Prints one JSON object. Run: `.venv/bin/python benchmarks/bench_rebalance.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
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
from tests import oracle  # noqa: E402
from tests.integration.harness import Process, produce_lines, topic_env  # noqa: E402
from tests.streams.test_engine_vs_oracle import assert_same  # noqa: E402

PARTITIONS = 8
ROOMS = 8
#: record kind on the intervals topic -> the oracle's attribute
KINDS = {"interval": "intervals", "attendance": "attendance", "handlers": "handlers"}
#: simulated minutes per room held back and produced right after the kill
TAIL_MINUTES = 30
CHECKPOINT_SECONDS = 20  # how often the workers here checkpoint each partition


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
    """One live call per room every 0.25 s, stamped now and abandoned at once (no call left
    waiting, whose growing wait would have its record published at every flush), until
    stopped. Every message sent is kept for the oracle."""

    def __init__(self, bootstrap: str, topic: str):
        self.publisher = Publisher(bootstrap, topic, batch_events=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.n = 0
        self.sent: list[bytes] = []

    def run(self) -> None:
        while not self.stop.is_set():
            at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            for room in range(ROOMS):
                self.n += 1
                call = {"room": f"live{room}", "at": at, "call": f"live-{self.n}"}
                value = orjson.dumps([
                    {"v": 1, "id": f"live-{self.n}", "type": "call.offered", "line": "101",
                     **call},
                    {"v": 1, "id": f"live-{self.n}-a", "type": "call.abandoned", **call}])
                self.publisher.send_raw(f"live{room}", value)
                self.sent.append(value)
            self.stop.wait(0.25)
        self.publisher.close()


class RecordWatcher:
    """Follows the intervals topic from its start: per (kind, key) the latest record and the
    create time (ms) of the message that last changed it."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap, self.topic = bootstrap, topic
        self.latest: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=50)
        try:
            parts = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            while not self.stop.is_set():
                batches = consumer.poll(timeout_ms=100, max_records=20000)
                with self.lock:
                    for messages in batches.values():
                        for m in messages:
                            body = orjson.loads(m.value)
                            key = (body["kind"], m.key.decode())
                            old = self.latest.get(key)
                            if old is None or old[0] != body["record"]:
                                self.latest[key] = (body["record"], m.timestamp)
        finally:
            consumer.close()

    def snapshot(self) -> dict[tuple[str, str], tuple[dict[str, Any], int]]:
        with self.lock:
            return dict(self.latest)


def exact_since(watcher: RecordWatcher, want: oracle.OracleResult, rooms: set[str]
                ) -> tuple[int | None, str | None]:
    """(create time in ms since which every record of ``rooms`` equals the oracle's, None),
    or (None, the first difference)."""
    got = watcher.snapshot()
    since = 0
    for kind, attr in KINDS.items():
        theirs = {k: r for k, r in getattr(want, attr).items() if k.split("|", 1)[0] in rooms}
        mine = {key: v for (k, key), v in got.items()
                if k == kind and key.split("|", 1)[0] in rooms}
        if set(mine) != set(theirs):
            diff = sorted(set(mine) ^ set(theirs))
            return None, f"{kind}: {len(diff)} keys differ, e.g. {diff[:3]}"
        for key, record in theirs.items():
            try:
                assert_same(mine[key][0], record, f"{kind}[{key}]")
            except AssertionError as exc:
                return None, str(exc)
            since = max(since, mine[key][1])
    return since, None


def partition_of(room: str) -> int:
    """The partition of a room's messages: Kafka's default (murmur2) partitioner, as the
    producers here use."""
    from kafka.partitioner.default import murmur2

    return (murmur2(room.encode()) & 0x7FFFFFFF) % PARTITIONS


def split_tail(events: list[dict[str, Any]], days: float) -> int:
    """Index of the first event of the last ``TAIL_MINUTES`` simulated minutes (events are in
    event-time order)."""
    return len(events) - max(ROOMS, int(len(events) * TAIL_MINUTES / (days * 1440)))


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


def wait_checkpointed(worker: Process, partitions: set[int], timeout: float) -> bool:
    """Wait until the worker has saved a checkpoint of each of these partitions since they
    last moved (the partitions a killed worker leaves behind); whether it did in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = per_partition(worker.metrics(), "pacesetter_worker_checkpoint_offset")
        if all(saved.get(p, -1) >= 0 for p in partitions):
            return True
        time.sleep(0.5)
    return False


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
        # A deployment checkpoints every partition every few minutes (PACESETTER_CHECKPOINT_
        # SECONDS, 300 by default): a worker is lost at most that long after its last one.
        # Here they come sooner, so that the benchmark need not run five minutes first; the
        # new owners restore them and replay what follows (the tail and the live feed).
        env["PACESETTER_CHECKPOINT_SECONDS"] = str(CHECKPOINT_SECONDS)
        env["PACESETTER_CHECKPOINT_LOOP_SHARE"] = "1"  # not spaced out for freshness
        topic = env["PACESETTER_TOPIC_EVENTS"]
        ensure_topics(bootstrap, [topic], PARTITIONS)
        events = list(simulate_events(rooms=ROOMS, days=days, seed=7))
        cut = split_tail(events, days)
        lines = [orjson.dumps(e) for e in events[:cut]]
        tail = [orjson.dumps(e) for e in events[cut:]]
        sim_rooms = sorted({e["room"] for e in events})
        del events
        out["events"] = len(lines) + len(tail)
        produce_lines(bootstrap, topic, lines)
        watcher: RecordWatcher | None = None
        workers = [Process(["worker"], env, Path(tmp) / f"w{i}.log") for i in range(2)]
        try:
            out["two_workers_ready_seconds"] = round(wait_settled(workers, 900), 1)
            print("two workers ready", out, file=sys.stderr, flush=True)
            # the workers made the topics; from the start of the intervals topic
            watcher = RecordWatcher(bootstrap, env["PACESETTER_TOPIC_INTERVALS"])
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
            feed.stop.set()  # (a topic never quiet is never read to its end)
            feed.thread.join(30)
            started = time.monotonic()
            want = oracle.compute(lines + feed.sent + tail, wall_clock=datetime.now(UTC))
            out["oracle_seconds"] = round(time.monotonic() - started, 1)
            wait_settled(workers, 300)
            time.sleep(3)  # the last flush of what was applied
            victim = workers.pop(0)
            lost = owned_by([victim])[0]
            checkpointed = wait_checkpointed(victim, lost, 120)
            restored = sum(w.metrics().get(
                'pacesetter_worker_checkpoints_total{result="restored"}', 0) for w in workers)
            rooms = {r for r in [*sim_rooms, *(f"live{i}" for i in range(ROOMS))]
                     if partition_of(r) in lost}
            rebuilt = counter_sum(workers, "pacesetter_worker_rebuilds_total")
            killed_ms = time.time() * 1000
            victim.kill(signal.SIGKILL)
            killed = time.monotonic()
            produce_lines(bootstrap, topic, tail)
            victim.proc.wait(10)
            victim.stop()
            caught_up = wait_settled(workers, 900)
            first_exact = None
            difference: str | None = None
            while time.monotonic() - killed < 600:
                since, difference = exact_since(watcher, want, rooms)
                if since is not None:
                    first_exact = time.monotonic() - killed
                    break
                time.sleep(0.5)
            # the figure once nothing moves any more: a record exact at first sight and
            # changed later counts from its last change
            wait_settled(workers, 300)
            time.sleep(3)
            since, difference = exact_since(watcher, want, rooms)
            every_room, _ = exact_since(watcher, want, set(sim_rooms) | {
                f"live{i}" for i in range(ROOMS)})
            # where the time went: the new owners' rebuilds of what the killed worker had
            rebuild_seconds = {p: s for w in workers for p, s in per_partition(
                w.metrics(), "pacesetter_worker_rebuild_seconds").items() if p in lost}
            out["worker_loss"] = {
                "workers": 3,
                "seconds_until_exact": None if since is None
                else round(max(0.0, since - killed_ms) / 1000, 2),
                "exact": since is not None,
                "difference": difference,
                "seen_exact_after_seconds": None if first_exact is None
                else round(first_exact, 1),
                "every_room_exact": every_room is not None,
                "seconds_until_caught_up": round(caught_up, 1),
                "partitions_lost": sorted(lost),
                "rooms_lost": sorted(rooms),
                "partitions_rebuilt": int(counter_sum(workers, "pacesetter_worker_rebuilds_total")
                                          - rebuilt),
                "rebuild_seconds_by_partition": {str(p): round(s, 2)
                                                 for p, s in sorted(rebuild_seconds.items())},
                "events_after_kill": len(tail),
                "checkpoints_of_the_killed_worker": checkpointed,
                "checkpoints_restored": int(sum(w.metrics().get(
                    'pacesetter_worker_checkpoints_total{result="restored"}', 0)
                    for w in workers) - restored),
                "checkpoint_seconds": CHECKPOINT_SECONDS,
                "what": "one of three workers killed (SIGKILL), the last "
                        f"{TAIL_MINUTES} simulated minutes of every room produced at once: "
                        "from the kill until the interval, attendance and handler records of "
                        "every room of its partitions (latest per key on the intervals topic) "
                        "equal tests/oracle.py over every event produced (the simulated days, "
                        "the live feed, the tail), each record timed by the create time of the "
                        "message that last changed it; seen_exact_after_seconds is when this "
                        "benchmark first saw it so; caught up: every partition owned and "
                        "lag ≤ 8 messages",
            }
        finally:
            if watcher is not None:
                watcher.stop.set()
            for worker in workers:
                worker.stop()
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
