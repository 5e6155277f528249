"""National memory: one real ``pacesetter worker`` process holding a simulated national week.

43 control rooms at about 30 million calls a year (the simulator's ``scale`` is worked out from
the calls it makes per room and day at scale 1), 7 days, the simulator's full mix (calls,
callbacks, incidents, handler states), produced to the embedded broker while they are generated
(200-event messages keyed by room, as bench_stream.py sends them: the benchmark's own memory
stays small). A worker started on the empty topic consumes everything live; then a second one
starts and rebuilds that week from the events topic (a rebuild holds the week too).

The resident memory of each worker process is read from ``/proc/PID/status`` (``VmRSS`` every
0.5 s, ``VmHWM`` the kernel's peak) until the worker's /metrics count every message applied
(``pacesetter_worker_events_applied``, plus ``pacesetter_worker_rebuild_messages_replayed``
for the rebuild); the broker's is read the same way and reported apart (it holds the topic, a
real deployment's broker is elsewhere).

Prints one JSON object: ``peak_rss_mb`` (the larger VmHWM of the two workers: the goal's
figure), ``days``, ``rooms``, ``calls``, ``events``, ``complete``, and per phase ``live`` /
``rebuild``: ``peak_rss_mb``, ``end_rss_mb``, ``seconds``, ``events_per_second``.
Run: `.venv/bin/python benchmarks/bench_national.py [--quick]` (--quick: 1 day).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.kafka.broker import EmbeddedBroker, ensure_topics, free_port  # noqa: E402
from services.simulation.simulator import simulate_events  # noqa: E402
from tests.integration.harness import Process, topic_env  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))  # bench_stream, as mypy sees it (no package)
from bench_stream import (  # noqa: E402
    checkpoints_saved,
    end_offsets,
    wait_checkpointed,
)
from bench_stream import wait_ready as wait_rebuilt  # noqa: E402

CALLS_PER_YEAR = 30_000_000
ROOMS = 43
BATCH = 200
APPLIED = "pacesetter_worker_events_applied_total"
REPLAYED = "pacesetter_worker_rebuild_messages_replayed_total"


def calls_per_room_day(seed: int) -> float:
    """Calls (``call.offered``) the simulator makes per room and day at scale 1."""
    rooms = 4
    offered = sum(1 for e in simulate_events(rooms=rooms, days=1, seed=seed, scale=1.0)
                  if e["type"] == "call.offered")
    return offered / rooms


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of a process in MB (empty once it has gone)."""
    out: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


class Sampler:
    """Samples the memory of a set of processes every ``interval`` s in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5):
        self.pids = pids
        self.interval = interval
        self.peak_rss: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.last: dict[str, dict[str, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            figures = memory_mb(pid)
            if figures:
                self.last[name] = figures
                self.peak_rss[name] = max(self.peak_rss[name], figures["VmRSS"])

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sample()


def produce_week(bootstrap: str, topic: str, rooms: int, days: float, seed: int,
                 scale: float) -> tuple[int, int, Counter[str], float]:
    """Generate and produce at once; (messages, events, events by type, seconds)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             batch_size=1 << 20, max_request_size=8 << 20)
    pending: dict[str, list[bytes]] = {}
    kinds: Counter[str] = Counter()
    messages = events = 0
    started = time.monotonic()
    for event in simulate_events(rooms=rooms, days=days, seed=seed, scale=scale):
        room = event["room"]
        kinds[event["type"]] += 1
        events += 1
        items = pending.setdefault(room, [])
        items.append(orjson.dumps(event))
        if len(items) == BATCH:
            producer.send(topic, key=room.encode(), value=b"[" + b",".join(items) + b"]")
            messages += 1
            del pending[room]
    for room, items in pending.items():
        producer.send(topic, key=room.encode(), value=b"[" + b",".join(items) + b"]")
        messages += 1
    producer.flush()
    producer.close()
    return messages, events, kinds, time.monotonic() - started


def counted(worker: Process, names: tuple[str, ...]) -> int:
    metrics = worker.metrics()
    return int(sum(metrics.get(name, 0) for name in names))


def wait_all(worker: Process, messages: int, names: tuple[str, ...], timeout: float) -> float:
    """Until the worker's /metrics count every message (and it is ready); when that was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError("worker exited:\n" + worker.text()[-3000:])
        if counted(worker, names) >= messages and worker.readyz()[0] == 200:
            return time.monotonic()
        time.sleep(0.25)
    raise TimeoutError(f"worker counted {counted(worker, names)} of {messages} messages in "
                       f"{timeout:g} s:\n" + worker.text()[-2000:])


def wait_ready(worker: Process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError("worker exited:\n" + worker.text()[-3000:])
        if worker.readyz()[0] == 200:
            return
        time.sleep(0.2)
    raise TimeoutError("worker not ready:\n" + worker.text()[-3000:])


def phase(sampler: Sampler, name: str, seconds: float, events: int) -> dict[str, Any]:
    last = sampler.last.get(name, {})
    return {"peak_rss_mb": round(last.get("VmHWM", 0.0)),
            "peak_rss_sampled_mb": round(sampler.peak_rss[name]),
            "end_rss_mb": round(last.get("VmRSS", 0.0)),
            "seconds": round(seconds, 1),
            "events_per_second": round(events / seconds) if seconds > 0 else None}


def deep_size(root: Any, counted: set[int]) -> int:
    """Bytes of ``root`` and everything it reaches that ``counted`` does not hold yet (then
    added): each object is charged to the first kind of state that reaches it."""
    import gc
    import types

    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in counted or isinstance(obj, skip):
            continue
        counted.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


#: kind of state -> (object, attribute path) per room, in the order objects are charged
STATE_KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("seen ids", ("seen",)), ("seen ids", ("seen_before",)),
    ("calls", ("calls", "calls")), ("callers", ("calls", "callers")),
    ("call buckets and interval figures", ("calls",)),
    ("incidents", ("incidents",)), ("handler timelines", ("handlers",)),
    ("children waiting for their parent", ("pending",)),
    ("children waiting for their parent", ("pending_heaps",)),
    ("records not published yet", ("out",)),
]


def breakdown(rooms: int, days: float, seed: int, scale: float) -> dict[str, Any]:
    """The engine alone fed the same events as the worker (200-event messages per room,
    flushed every 50 messages as the worker's timer would): bytes per kind of state."""
    import gc

    from services.contract.settings import Settings
    from services.figures.engine import Engine

    engine = Engine(Settings())
    pending: dict[str, list[bytes]] = {}
    wall = int(time.time() * 1e6)
    messages = events = 0
    for event in simulate_events(rooms=rooms, days=days, seed=seed, scale=scale):
        events += 1
        items = pending.setdefault(event["room"], [])
        items.append(orjson.dumps(event))
        if len(items) == BATCH:
            engine.process(b"[" + b",".join(pending.pop(event["room"])) + b"]", wall,
                           event["room"].encode())
            messages += 1
            if messages % 50 == 0:
                engine.flush()
    for name, items in pending.items():
        engine.process(b"[" + b",".join(items) + b"]", wall, name.encode())
    engine.flush()
    gc.collect()
    rss = memory_mb(os.getpid()).get("VmRSS", 0.0)  # before the counting's own set grows
    counted: set[int] = set()
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for held in engine.rooms.values():
        room: Any = held
        counts["seen ids"] += len(room.seen) + len(room.seen_before)
        counts["calls"] += len(room.calls.calls)
        counts["callers"] += len(room.calls.callers)
        counts["incidents"] += len(room.incidents.incidents)
        counts["handler timelines"] += sum(len(t) for t in room.handlers.timelines.values())
        for kind, path in STATE_KINDS:
            obj: Any = room
            for name in path:
                obj = getattr(obj, name)
            sizes[kind] += deep_size(obj, counted)
        sizes["rest of the rooms"] += deep_size(room, counted)
    return {"events": events, "rooms": len(engine.rooms),
            "state_mb": {k: round(v / 2**20, 1) for k, v in sizes.most_common()},
            "total_mb": round(sum(sizes.values()) / 2**20, 1),
            "held": dict(counts),
            "rss_mb": round(rss),
            "what": "the engine alone in this process fed the same events: bytes reached from "
                    "each kind of state of every room (sys.getsizeof over gc referents, each "
                    "object charged once, to the first kind that reaches it)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 simulated day, not 7")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--rooms", type=int, default=ROOMS)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--timeout", type=float, default=1500,
                        help="seconds allowed to each worker to apply everything")
    parser.add_argument("--breakdown", action="store_true",
                        help="no broker, no worker: the engine alone in this process, and the "
                             "bytes each kind of state holds")
    args = parser.parse_args()
    days = 1.0 if args.quick else args.days
    per_room_day = calls_per_room_day(args.seed)
    scale = CALLS_PER_YEAR / 365 / ROOMS / per_room_day
    if args.breakdown:
        print(json.dumps(breakdown(args.rooms, days, args.seed, scale), indent=2))
        return
    out: dict[str, Any] = {"days": days, "rooms": args.rooms, "scale": round(scale, 4),
                           "calls_per_room_day_at_scale_1": round(per_room_day)}
    with tempfile.TemporaryDirectory() as tmp_dir, EmbeddedBroker(
            "127.0.0.1", free_port()).start() as broker:
        tmp = Path(tmp_dir)
        assert broker.process is not None
        env = topic_env(broker.bootstrap, tmp)
        topic = env["PACESETTER_TOPIC_EVENTS"]
        ensure_topics(broker.bootstrap, [topic], int(env["PACESETTER_PARTITIONS"]))
        # live: a worker on the empty topic consumes the week as it is produced
        worker = Process(["worker"], env, tmp / "live.log")
        try:
            wait_ready(worker)
            pids = {"worker": worker.proc.pid, "broker": broker.process.pid}
            with Sampler(pids) as sampler:
                started = time.monotonic()
                messages, events, kinds, produced = produce_week(
                    broker.bootstrap, topic, args.rooms, days, args.seed, scale)
                print(f"produced {events} events ({kinds['call.offered']} calls) in "
                      f"{messages} messages in {produced:.0f} s", file=sys.stderr, flush=True)
                done = wait_all(worker, messages, (APPLIED,), args.timeout)
                time.sleep(2)  # the last flush's records
            out.update({"calls": kinds["call.offered"], "events": events, "messages": messages,
                        "calls_per_year_equivalent": round(kinds["call.offered"] * 365 / days),
                        "events_by_type": dict(kinds.most_common()),
                        "produce_seconds": round(produced, 1)})
            out["live"] = phase(sampler, "worker", done - started, events)
            out["live"]["what"] = ("a worker started on the empty topic, consuming the week "
                                   "while it was generated and produced: from the first event "
                                   "produced to its /metrics counting every message")
            out["broker_after_live"] = {"rss_mb": round(sampler.last["broker"]["VmRSS"])}
        finally:
            worker.stop()
        # rebuild: a new worker (same group) replays the week from the events topic (the live
        # worker took no checkpoint: none was due yet), then checkpoints every partition, as a
        # worker holding the week does every PACESETTER_CHECKPOINT_SECONDS: taking one copies
        # the partition's state, a peak of its own
        ckpt_env = {**env, "PACESETTER_CHECKPOINT_SECONDS": "1",
                    "PACESETTER_CHECKPOINT_LOOP_SHARE": "1"}
        ends = asyncio.run(end_offsets(broker.bootstrap, topic))
        rebuilder = Process(["worker"], ckpt_env, tmp / "rebuild.log")
        try:
            pids = {"worker": rebuilder.proc.pid, "broker": broker.process.pid}
            with Sampler(pids) as sampler:
                started = time.monotonic()
                done = wait_all(rebuilder, messages, (APPLIED, REPLAYED), args.timeout)
                time.sleep(2)
                rebuilt_peak = sampler.last["worker"].get("VmHWM", 0.0)
                wait_checkpointed(rebuilder, ends, args.timeout)
                saved = checkpoints_saved(rebuilder.text())
            out["rebuild"] = phase(sampler, "worker", done - started, events)
            out["rebuild"]["peak_rss_mb_before_checkpoints"] = round(rebuilt_peak)
            out["rebuild"]["checkpoints"] = {
                "partitions": len(saved),
                "megabytes": round(sum(mb for _o, mb, _p in saved.values()), 1),
                "loop_pause_seconds_max": max((p for _o, _mb, p in saved.values()),
                                              default=None)}
            out["rebuild"]["what"] = ("a second worker started after the first stopped, "
                                      "rebuilding every partition from the events topic: from "
                                      "its process start to every message replayed and ready; "
                                      "then it checkpointed every partition (peak_rss_mb "
                                      "includes them)")
        finally:
            rebuilder.stop()
        # restore: a third worker rebuilds every partition from those checkpoints
        restorer = Process(["worker"], env, tmp / "restore.log")
        try:
            pids = {"worker": restorer.proc.pid, "broker": broker.process.pid}
            with Sampler(pids) as sampler:
                started = time.monotonic()
                wait_rebuilt(restorer, int(env["PACESETTER_PARTITIONS"]), args.timeout)
                done = time.monotonic()
                time.sleep(2)
            out["restore"] = phase(sampler, "worker", done - started, events)
            out["restore"]["what"] = ("a third worker rebuilding every partition from the "
                                      "second's checkpoints: from its process start to ready")
            out["broker"] = {"rss_mb": round(sampler.last["broker"]["VmRSS"]),
                             "peak_rss_mb": round(sampler.last["broker"]["VmHWM"]),
                             "what": "the embedded tansu broker holding the events topic in "
                                     "memory (not part of the goal)"}
        finally:
            restorer.stop()
    out["complete"] = True
    out["peak_rss_mb"] = max(out["live"]["peak_rss_mb"], out["rebuild"]["peak_rss_mb"],
                             out["restore"]["peak_rss_mb"])
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["what"] = (f"{days:g} days of {args.rooms} simulated rooms at {CALLS_PER_YEAR:,} calls "
                   "a year, the simulator's full mix, through real `pacesetter worker` "
                   "processes: peak_rss_mb is the largest VmHWM of the live worker, the "
                   "rebuilding one (its checkpoints included) and the one restoring them")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
