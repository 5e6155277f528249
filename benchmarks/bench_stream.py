"""Stream benchmarks: worker throughput beside the raw ceiling, recovery time.

National memory is measured by bench_national.py, with real worker processes.

Prints one JSON object. Run: `.venv/bin/python benchmarks/bench_stream.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.kafka.broker import EmbeddedBroker, free_port  # noqa: E402
from services.simulation.simulator import simulate_events  # noqa: E402
from streams.runner import GC_THRESHOLDS  # noqa: E402
from tests.integration.harness import Process, produce_lines, read_topic, topic_env  # noqa: E402


def simulated_lines(rooms: int, days: float, seed: int, scale: float = 1.0) -> list[bytes]:
    return [orjson.dumps(e) for e in simulate_events(rooms=rooms, days=days, seed=seed,
                                                      scale=scale)]


@contextlib.contextmanager
def worker_gc(tuned: bool) -> Iterator[None]:
    """The worker's process tuning (``streams.runner``) for the length of a block.

    Its collector thresholds, and what was allocated before the block frozen, as the worker
    freezes its rebuilt state. Raising the thresholds alone makes the ceiling's loop 1.2-1.35
    times as fast: a ceiling run with Python's defaults would flatter the worker.
    """
    if not tuned:
        yield
        return
    saved = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


async def raw_ceiling(bootstrap: str, topic: str, expected: int,
                      tuned: bool = True) -> tuple[float, float]:
    """``ceiling_loop`` with the worker's process tuning (``tuned``) or Python's defaults.

    Returns:
        Events per second of wall time, and per CPU second of this process (a figure a
        machine shared with other work skews less).
    """
    with worker_gc(tuned):
        return await ceiling_loop(bootstrap, topic, expected)


async def ceiling_loop(bootstrap: str, topic: str, expected: int) -> tuple[float, float]:
    """aiokafka consuming the same messages, parsing them and updating the same figures in
    plain dicts: dedup by id, calls with exits and ends, repeat callers, incidents, handler
    timelines; no validation, no durability, nothing published.

    Timed from the first message received to the last event applied: the consumer's start-up
    and the broker's first fetch are no part of a ceiling."""
    from datetime import datetime

    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        intervals: dict[tuple[str, str, float], dict[str, Any]] = {}
        calls: dict[tuple[str, str], dict[str, Any]] = {}
        callers: dict[tuple[str, str], list[float]] = defaultdict(list)
        incidents: dict[tuple[str, str], dict[str, Any]] = {}
        handlers: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        seen: set[tuple[str, str]] = set()
        count = 0
        started = None
        while count < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            if started is None and batches:
                started = time.perf_counter()
                cpu = time.process_time()
            for messages in batches.values():
                for message in messages:
                    items = orjson.loads(message.value)
                    for e in items if isinstance(items, list) else [items]:
                        count += 1
                        room = e["room"]
                        key = (room, e["id"])
                        if key in seen:
                            continue
                        seen.add(key)
                        ts = datetime.fromisoformat(e["at"]).timestamp()
                        kind = e["type"]
                        if kind == "call.offered":
                            slot = (room, e["line"], ts - ts % 900)
                            figures = intervals.get(slot)
                            if figures is None:
                                figures = intervals[slot] = {"offered": 0, "waits": [],
                                                             "abandoned": 0, "repeat": 0}
                            figures["offered"] += 1
                            calls[(room, e["call"])] = {"slot": slot, "at": ts}
                            caller = e.get("caller")
                            if caller:
                                history = callers[(room, caller)]
                                if history and history[-1] > ts - 7 * 86400:
                                    figures["repeat"] += 1
                                history.append(ts)
                        elif kind in ("call.answered", "call.abandoned",
                                      "call.callback_requested", "call.ended",
                                      "callback.attempted"):
                            call = calls.get((room, e["call"]))
                            if call is not None:
                                figures = intervals[call["slot"]]
                                if kind == "call.answered":
                                    figures["waits"].append(ts - call["at"])
                                elif kind == "call.abandoned":
                                    figures["abandoned"] += 1
                                call[kind] = ts
                        elif kind == "handler.state":
                            handlers[(room, e["handler"])].append((ts, e["state"]))
                        else:
                            incidents.setdefault((room, e["incident"]), {})[kind] = ts
        assert started is not None
        return (count / (time.perf_counter() - started),
                count / (time.process_time() - cpu))
    finally:
        await consumer.stop()


def replay_seconds(log_text: str) -> tuple[int, float, float, float]:
    """(messages, replay seconds, start-up seconds, replay CPU seconds) of a worker's rebuild.

    From its log. Its partitions start rebuilding together and replay side by side: the
    replay runs from the first message any of them received to the last one's rooms
    published, and start-up (topics checked, consumer connected, offsets looked up) until
    that first message; the CPU seconds are the worker process's over the same span.
    """
    found = re.findall(r"rebuilt: (\d+) messages, \d+ rooms in [\d.]+ s \(committed offset \d+; "
                       r"start-up ([\d.]+) s, then replay and publication ([\d.]+) s; "
                       r"process CPU ([\d.]+) to ([\d.]+) s\)", log_text)
    busy = [(float(up), float(up) + float(replay), float(cpu0), float(cpu1))
            for m, up, replay, cpu0, cpu1 in found if int(m)]
    if not busy:
        return 0, 0.0, 0.0, 0.0
    first = min(b[0] for b in busy)
    cpu = max(b[3] for b in busy) - min(b[2] for b in busy)
    return sum(int(f[0]) for f in found), max(b[1] for b in busy) - first, first, cpu


def checkpoint_rebuild_seconds(log_text: str) -> tuple[int, float]:
    """(partitions restored, seconds) of a worker's rebuild from checkpoints, from its log.

    Per partition, from the moment it began reading its checkpoint to its rebuilt records
    queued for publication (restore and the replay of what followed the checkpoint); the
    partitions rebuild side by side, so from the first read to the last partition rebuilt.
    """
    found = re.findall(r"from the checkpoint at offset \d+: start-up ([\d.]+) s, then read and "
                       r"restored in [\d.]+ s, done ([\d.]+) s after the read began",
                       log_text)
    if not found:
        return 0, 0.0
    spans = [(float(up), float(up) + float(rebuilt)) for up, rebuilt in found]
    return len(found), max(end for _, end in spans) - min(start for start, _ in spans)


def checkpoints_saved(log_text: str) -> dict[int, tuple[int, float, float]]:
    """Per partition, the latest checkpoint a worker saved: (offset, MB, loop pause seconds)."""
    latest: dict[int, tuple[int, float, float]] = {}
    for partition, offset, size, pause in re.findall(
            r"partition (\d+): checkpoint at offset (\d+) saved \(\d+ rooms, ([\d.]+) MB; the "
            r"event loop paused ([\d.]+) s", log_text):
        latest[int(partition)] = (int(offset), float(size), float(pause))
    return latest


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)
                      or ()]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


def wait_checkpointed(worker: Process, ends: dict[int, int], timeout: float = 300) -> None:
    """Until the worker saved a checkpoint of every partition holding events, at its end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = checkpoints_saved(worker.text())
        # tansu's end offset can be the base offset of the last batch: at least that far
        if all(saved.get(p, (-1, 0, 0))[0] >= end for p, end in ends.items() if end):
            return
        if worker.proc.poll() is not None:
            raise RuntimeError(worker.text()[-3000:])
        time.sleep(0.5)
    raise TimeoutError("no checkpoint of every partition:\n" + worker.text()[-3000:])


def fresh_ceiling(bootstrap: str, topic: str, expected: int,
                  tuned: bool = True) -> tuple[float, float]:
    """``raw_ceiling`` in a new Python process (this file with ``--ceiling``)."""
    import subprocess

    result = subprocess.run(
        [sys.executable, __file__, "--ceiling", bootstrap, topic, str(expected)]
        + ([] if tuned else ["--default-gc"]),
        capture_output=True, text=True, check=True, timeout=600)
    wall, cpu = result.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live_totals(bootstrap: str, topic: str) -> int:
    latest: dict[bytes | None, dict[str, Any]] = {}
    for key, value, _p, _o in sorted(read_topic(bootstrap, topic, idle_seconds=0.3),
                                     key=lambda m: (m[2], m[3])):
        latest[key] = orjson.loads(value)
    return sum(sum(state["totals"]["events"].values()) + state["totals"]["rejected"].get(
        "duplicate", 0) for state in latest.values())


def wait_applied(bootstrap: str, env: dict[str, str], expected: int, timeout: float,
                 worker: Process) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(worker.text()[-3000:])
        if live_totals(bootstrap, env["PACESETTER_TOPIC_LIVE"]) >= expected:
            return time.monotonic()
        time.sleep(0.5)
    raise TimeoutError(f"worker did not apply {expected} events in {timeout} s")


async def produce_and_watch(bootstrap: str, env: dict[str, str], lines: list[bytes],
                            timeout: float = 600) -> tuple[float, float, int]:
    """Produce the lines as 200-event batches with aiokafka while watching the live topic;
    return (seconds to produce, seconds until every event was applied, messages)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    by_room: dict[str, list[bytes]] = defaultdict(list)
    messages: list[tuple[str, bytes]] = []
    for raw in lines:
        room = orjson.loads(raw)["room"]
        by_room[room].append(raw)
        if len(by_room[room]) == 200:
            messages.append((room, b"[" + b",".join(by_room.pop(room)) + b"]"))
    messages += [(room, b"[" + b",".join(items) + b"]") for room, items in by_room.items()]
    watcher = AIOKafkaConsumer(env["PACESETTER_TOPIC_LIVE"], bootstrap_servers=bootstrap,
                               enable_auto_commit=False, auto_offset_reset="latest",
                               fetch_max_wait_ms=10)
    await watcher.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_request_size=8 << 20, max_batch_size=1 << 20)
    await producer.start()
    try:
        await asyncio.sleep(1.0)  # let the watcher get its partitions
        started = time.monotonic()
        started_wall_ms = time.time() * 1000
        sends = [await producer.send(env["PACESETTER_TOPIC_EVENTS"], value, key=room.encode())
                 for room, value in messages]
        await asyncio.gather(*sends)
        produced = time.monotonic() - started
        # per room: events counted, and when the worker published the state that first
        # counted that many (the live message's create time, stamped by the worker's
        # producer on this machine's clock): the watcher's own polling is not the worker's
        applied: dict[bytes, tuple[int, int]] = {}
        deadline = started + timeout
        while time.monotonic() < deadline:
            batches = await watcher.getmany(timeout_ms=100)
            for batch in batches.values():
                for message in batch:
                    state = orjson.loads(message.value)
                    count = sum(state["totals"]["events"].values()) + state[
                        "totals"]["rejected"].get("duplicate", 0)
                    if count > applied.get(message.key, (0, 0))[0]:
                        applied[message.key] = (count, message.timestamp)
            if sum(count for count, _ in applied.values()) >= len(lines):
                last_ms = max(stamp for _, stamp in applied.values())
                return produced, (last_ms - started_wall_ms) / 1000, len(messages)
        raise TimeoutError(f"applied {sum(c for c, _ in applied.values())} of {len(lines)}")
    finally:
        await producer.stop()
        await watcher.stop()


def wait_ready(worker: Process, partitions: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.text().count("rebuilt") >= partitions:
            return
        if worker.proc.poll() is not None:
            raise RuntimeError(worker.text()[-3000:])
        time.sleep(0.1)
    raise TimeoutError("worker not ready:\n" + worker.text()[-3000:])


def throughput(bootstrap: str, tmp: Path, lines: list[bytes],
               ceiling_runs: int = 3) -> dict[str, Any]:
    env = topic_env(bootstrap, tmp)
    topic = env["PACESETTER_TOPIC_EVENTS"]
    partitions = int(env["PACESETTER_PARTITIONS"])
    # no checkpoint taken while its throughput is measured
    worker = Process(["worker"], {**env, "PACESETTER_CHECKPOINT_SECONDS": "0"},
                     tmp / "throughput.log")
    try:
        wait_ready(worker, partitions)
        cpu_before = cpu_seconds(worker.proc.pid)
        produced, applied, messages = asyncio.run(produce_and_watch(bootstrap, env, lines))
        worker_cpu = cpu_seconds(worker.proc.pid) - cpu_before
    finally:
        worker.stop()
    # The same worker's replay: a second one (same group) rebuilds every partition from the
    # events topic before it goes live (there is no checkpoint yet); then it saves one of each
    # partition a second after its rebuild.
    replayer = Process(["worker"], {**env, "PACESETTER_CHECKPOINT_SECONDS": "1",
                                       # every partition now, not spaced for freshness
                                       "PACESETTER_CHECKPOINT_LOOP_SHARE": "1"},
                       tmp / "throughput-replay.log")
    try:
        wait_ready(replayer, partitions, 300)
        replayed, replay_wall, replay_startup, replay_cpu = replay_seconds(replayer.text())
        wait_checkpointed(replayer, asyncio.run(end_offsets(bootstrap, topic)))
        saved = checkpoints_saved(replayer.text())
    finally:
        replayer.stop()
    # And a third one rebuilding from those checkpoints: restored, then only what followed
    # them replayed (nothing: they were taken at the end).
    restorer = Process(["worker"], env, tmp / "throughput-restore.log")
    try:
        wait_ready(restorer, partitions, 300)
        restored, restore_wall = checkpoint_rebuild_seconds(restorer.text())
    finally:
        restorer.stop()
    # The ceiling runs in a fresh process each time, as the worker does: in a process whose
    # heap an earlier step grew (the engine-memory run once here) the loop ran ~1.6 times as fast,
    # since its allocations no longer fault in new pages. That figure is reported beside it.
    # Each runs with the worker's process tuning (GC thresholds, frozen start-up heap); one
    # fresh run with Python's defaults is reported beside them, as earlier runs measured it.
    runs = [fresh_ceiling(bootstrap, topic, len(lines)) for _ in range(ceiling_runs)]
    ceilings = [wall for wall, _cpu in runs]
    ceiling = max(ceilings)
    ceiling_cpu = max(cpu for _wall, cpu in runs)
    default_gc, _ = fresh_ceiling(bootstrap, topic, len(lines), tuned=False)
    warm, _ = asyncio.run(raw_ceiling(bootstrap, topic, len(lines)))
    worker_rate = len(lines) / applied
    worker_cpu_rate = len(lines) / worker_cpu
    replay_rate = (round(len(lines) / replay_wall)
                   if replayed == messages and replay_wall else None)
    # every partition holding events restored (else the figure is not the whole history's)
    restore_rate = (round(len(lines) / restore_wall)
                    if restored == len(saved) and restored and restore_wall else None)
    return {
        "events": len(lines),
        "messages": messages,
        "produce_seconds": round(produced, 2),
        "worker_events_per_second": round(worker_rate),
        "raw_ceiling_events_per_second": round(ceiling),
        "raw_ceiling_runs": [round(c) for c in ceilings],
        "raw_ceiling_process_tuning": {"gc_thresholds": list(GC_THRESHOLDS),
                                       "gc_freeze": True, "as_the_worker": True},
        "ratio_to_ceiling": round(worker_rate / ceiling, 3),
        "worker_events_per_cpu_second": round(worker_cpu_rate),
        "raw_ceiling_events_per_cpu_second": round(ceiling_cpu),
        "ratio_to_ceiling_in_cpu_seconds": round(worker_cpu_rate / ceiling_cpu, 3),
        "raw_ceiling_default_gc_events_per_second": round(default_gc),
        "ratio_to_default_gc_ceiling": round(worker_rate / default_gc, 3),
        "raw_ceiling_in_a_warm_process_events_per_second": round(warm),
        "ratio_to_warm_ceiling": round(worker_rate / warm, 3),
        "worker_replay_events_per_second": replay_rate,
        "worker_replay_seconds": round(replay_wall, 3),
        "worker_replay_startup_seconds": round(replay_startup, 3),
        "worker_replay_events_per_cpu_second": (
            round(len(lines) / replay_cpu) if replay_rate and replay_cpu else None),
        "worker_rebuild_from_checkpoint_events_per_second": restore_rate,
        "worker_rebuild_from_checkpoint_seconds": round(restore_wall, 3),
        "checkpoint_partitions": len(saved),
        "checkpoint_megabytes": round(sum(mb for _, mb, _ in saved.values()), 1),
        "checkpoint_largest_megabytes": max((mb for _, mb, _ in saved.values()), default=0.0),
        "checkpoint_pause_seconds_max": max((p for _, _, p in saved.values()), default=0.0),
        "what": "worker: one running worker applying a simulated file sent as 200-event "
                "batches, from the first message produced to the worker publishing the live "
                "state that counts every event (the message's create time); ceiling: the best of "
                f"{ceiling_runs} runs, each in a fresh process as the worker is and with the "
                "worker's process tuning (streams.runner.GC_THRESHOLDS, start-up heap frozen "
                "as the worker freezes its rebuilt state), of aiokafka "
                "parsing the same messages and updating the same figures in dicts, from the "
                "first message received to the last event applied; default-GC ceiling: one such "
                "fresh run with Python's collector defaults (what earlier reports called the "
                "ceiling); warm ceiling: the tuned loop in this benchmark's process, which "
                "simulated and produced the events; worker_replay: a second worker of the same "
                "group rebuilding every partition from the events topic, from the first message "
                "any partition received to the last partition's rebuilt records queued for "
                "publication (its log lines), start-up (topics checked, consumer connected, "
                "offsets looked up) reported apart as worker_replay_startup_seconds; not part "
                "of the ratio; there is no checkpoint to read yet (the first worker takes none); "
                "worker_rebuild_from_checkpoint: a third worker of the group rebuilding every "
                "partition from the checkpoints the replayer saved after its rebuild, from "
                "the first checkpoint read to the last partition's rebuilt records queued, "
                "restore included, over every event of the history; checkpoint_*: the "
                "replayer's latest checkpoint of each partition (size, and the pause of its event "
                "loop to take it); *_per_cpu_second: the same events over the CPU seconds of the "
                "worker process (all its threads, the whole step) and of the ceiling's loop, "
                "a figure other work on a shared machine skews less than wall time",
    }


def recovery(bootstrap: str, tmp: Path, lines: list[bytes]) -> dict[str, Any]:
    env = topic_env(bootstrap, tmp)
    produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"], lines, batch=200)
    first = Process(["worker"], env, tmp / "recovery-1.log")
    try:
        wait_applied(bootstrap, env, len(lines), 600, first)
    finally:
        first.stop()
    partitions = int(env["PACESETTER_PARTITIONS"])
    started = time.monotonic()
    second = Process(["worker"], env, tmp / "recovery-2.log")
    try:
        wait_ready(second, partitions, 300)
        ready = time.monotonic()
        rebuild_lines = [ln for ln in second.text().splitlines() if "rebuilt" in ln]
    finally:
        second.stop()
    return {
        "events": len(lines),
        "restart_to_caught_up_seconds": round(ready - started, 2),
        "rebuild_log": [ln.split("]")[-1].strip() for ln in rebuild_lines
                        if " 0 messages" not in ln],
        "what": "a worker restarted after a clean stop: process start (incl. Faust group join) "
                "to every partition rebuilt from the events topic and live",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--ceiling", nargs=3, metavar=("BOOTSTRAP", "TOPIC", "EVENTS"),
                        help="only run the raw ceiling once and print its events per second")
    parser.add_argument("--default-gc", action="store_true",
                        help="with --ceiling: Python's collector settings, not the worker's")
    args = parser.parse_args()
    if args.ceiling:
        bootstrap, topic, expected = args.ceiling
        print(*asyncio.run(raw_ceiling(bootstrap, topic, int(expected),
                                       tuned=not args.default_gc)))
        return
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_dir, EmbeddedBroker(
        "127.0.0.1", free_port()
    ) as broker:
        tmp = Path(tmp_dir)
        days = 1 if args.quick else 7
        lines = simulated_lines(rooms=4, days=days, seed=5)
        figures["stream_throughput"] = throughput(broker.bootstrap, tmp, lines)
        big_room = simulated_lines(rooms=1, days=days, seed=6, scale=3.0)
        figures["recovery"] = recovery(broker.bootstrap, tmp, big_room)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
