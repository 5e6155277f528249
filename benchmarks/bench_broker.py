"""The embedded broker's fetch delay under a steady feed: produce -> consumer, per few seconds.

An isolated reproduction of what limits freshness and the soak on the embedded broker (tansu,
``memory://``), without worker or API: a producer sends ``--rate`` records/s to ``--hot``
partitions of an 8-partition topic, on a 10 ms tick, with ``--linger-ms`` (how many record
batches the broker stores per second and partition); one consumer of all 8 partitions
(``fetch_max_wait_ms`` = ``--fetch-wait-ms``, the worker's default 10) notes each record's delay
from its produce call. Prints, per window of ``--window`` seconds, the batches stored per hot
partition and the delays' p50/p99/max, and the broker's CPU; then one JSON object.

Why: tansu's ``memory://`` storage lists every stored batch of a partition at each fetch that
has data (``DynoStore::fetch``) and gives up, returning nothing, when the fetch's wait runs out
first (see ``EmbeddedBroker``). Not part of ``run_all.py``: it measures the broker, not
Pacesetter. Run: `.venv/bin/python benchmarks/bench_broker.py [--seconds 60 --linger-ms 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))  # bench_api, as mypy sees it (no package)

from bench_api import cpu_seconds, percentile  # noqa: E402

from services.kafka.broker import EmbeddedBroker, ensure_topics, free_port  # noqa: E402


async def run(bootstrap: str, broker_pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = "feed"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=args.linger_ms, acks=1,
                                max_batch_size=1 << 20)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=args.fetch_wait_ms, auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(8)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    delays: list[tuple[float, float]] = []  # (sent, delay)
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for messages in batches.values():
                for message in messages:
                    (sent,) = struct.unpack("d", message.value[:8])
                    delays.append((sent, now - sent))

    listener = asyncio.create_task(consume())
    windows: list[dict[str, Any]] = []
    started = time.monotonic()
    sent = 0
    cpu_mark = cpu_seconds(broker_pid) if broker_pid else 0.0
    window_start = started
    padding = b"x" * 100
    try:
        while (now := time.monotonic()) - started < args.seconds:
            due = int((now - started) * args.rate) - sent
            for i in range(max(0, due)):
                await producer.send(topic, struct.pack("d", time.monotonic()) + padding,
                                    partition=(sent + i) % args.hot)
            sent += max(0, due)
            if now - window_start >= args.window:
                windows.append(window(delays, window_start, now, broker_pid, cpu_mark))
                print(json.dumps(windows[-1]), file=sys.stderr, flush=True)
                window_start = now
                cpu_mark = cpu_seconds(broker_pid) if broker_pid else 0.0
            await asyncio.sleep(max(0.0, 0.01 - (time.monotonic() - now)))
        await producer.flush()
        await asyncio.sleep(2)
    finally:
        stop.set()
        await listener
        ends = await consumer.end_offsets(tps)
        await consumer.stop()
        await producer.stop()
    seen = len(delays)
    return {"rate": args.rate, "hot_partitions": args.hot, "linger_ms": args.linger_ms,
            "fetch_max_wait_ms": args.fetch_wait_ms, "seconds": args.seconds,
            "records_sent": sent, "records_seen": seen,
            "records_per_partition": {tp.partition: ends[tp] for tp in tps if ends[tp]},
            "windows": windows}


def window(delays: list[tuple[float, float]], start: float, end: float, broker_pid: int | None,
           cpu_mark: float) -> dict[str, Any]:
    """Delays of the records sent in [start, end) and the broker's CPU share over it."""
    inside = [d for s, d in delays if start <= s < end]
    return {"at_s": round(end, 1), "records": len(inside),
            "p50_ms": _ms(percentile(inside, 0.5)), "p99_ms": _ms(percentile(inside, 0.99)),
            "max_ms": _ms(max(inside, default=None)),
            "broker_cores": round((cpu_seconds(broker_pid) - cpu_mark) / (end - start), 2)
            if broker_pid else None}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=2000, help="records/s")
    parser.add_argument("--hot", type=int, default=2, help="partitions written (of 8)")
    parser.add_argument("--linger-ms", type=int, default=1)
    parser.add_argument("--fetch-wait-ms", type=int, default=10)
    parser.add_argument("--window", type=float, default=5.0)
    args = parser.parse_args()
    with EmbeddedBroker("127.0.0.1", free_port()) as broker:
        ensure_topics(broker.bootstrap, ["feed"], 8)
        assert broker.process is not None
        figures = asyncio.run(run(broker.bootstrap, broker.process.pid, args))
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
