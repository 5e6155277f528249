"""Helpers for whole-system tests: worker processes, topic readers, settings per test."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.contract.settings import Settings
from services.kafka.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def topic_env(bootstrap: str, tmp: Path, partitions: int = 8) -> dict[str, str]:
    """Environment for a worker with topics of its own (no clash between tests)."""
    tag = uuid.uuid4().hex[:8]
    return {
        "PACESETTER_BOOTSTRAP_SERVERS": bootstrap,
        "PACESETTER_TOPIC_EVENTS": f"t{tag}.events",
        "PACESETTER_TOPIC_INTERVALS": f"t{tag}.intervals",
        "PACESETTER_TOPIC_LIVE": f"t{tag}.live",
        "PACESETTER_TOPIC_ALERTS": f"t{tag}.alerts",
        "PACESETTER_TOPIC_DEADLETTER": f"t{tag}.deadletter",
        "PACESETTER_PARTITIONS": str(partitions),
        "PACESETTER_WORKER_ID": f"w{tag}",
        "PACESETTER_DATA_DIR": str(tmp / "data"),
        "PACESETTER_STORE_URL": f"sqlite:///{tmp}/data/history.db",
    }


class Process:
    """A pacesetter subcommand in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        # every worker of a test gets a metrics port of its own
        self.metrics_port = int(full_env.get("PACESETTER_WORKER_METRICS_PORT") or 0)
        if args[:1] == ["worker"] and "PACESETTER_WORKER_METRICS_PORT" not in env:
            self.metrics_port = free_port()
            full_env["PACESETTER_WORKER_METRICS_PORT"] = str(self.metrics_port)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pacesetter.cli", *args],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics as ``{'name{labels}': value}`` (empty while it does not answer)."""
        return worker_metrics(self.metrics_port)

    def readyz(self) -> tuple[int, str]:
        """The worker's /readyz: status and body (0 while it does not answer)."""
        return worker_probe(self.metrics_port, "/readyz")

    def text(self) -> str:
        """What the process logged."""
        return self.log_path.read_text(errors="replace")


def read_topic(bootstrap: str, topic: str, idle_seconds: float = 1.5,
               timeout: float = 60) -> list[tuple[bytes | None, bytes, int, int]]:
    """Every message of a topic as (key, value, partition, offset), read without a group.

    Reads every partition past what it held when the read began (see :func:`read_records`).
    """
    return [(m.key, m.value, m.partition, m.offset)
            for m in read_records(bootstrap, topic, idle_seconds, timeout)]


def read_records(bootstrap: str, topic: str, idle_seconds: float = 1.5,
                 timeout: float = 60) -> list[Any]:
    """Every message of a topic as aiokafka ``ConsumerRecord`` (with its timestamp), at least
    all those published before the read began.

    The broker's end offset can be short by one record batch (tansu gives the base offset of
    the last batch), so it is not trusted as the end: a partition is read once its position is
    past the end offset it had when the read began (that last batch read whole), or once it is
    at that offset and has given no message for ``idle_seconds``. Each partition on its own: a
    topic the workers keep writing to (live states every second) is never quiet as a whole.
    """
    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=100)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic)
            for _ in range(50):
                if parts:
                    break
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
                await asyncio.sleep(0.1)
            tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps) if tps else {}
            out = []
            deadline = time.monotonic() + timeout
            started = time.monotonic()
            first: float | None = None  # when the first message of any partition came
            latest: dict[TopicPartition, float] = {}  # when each partition last gave one
            done: set[TopicPartition] = set()
            while time.monotonic() < deadline and len(done) < len(tps):
                batches = await consumer.getmany(timeout_ms=200, max_records=10000)
                now = time.monotonic()
                for tp, messages in batches.items():
                    out.extend(messages)
                    if messages:
                        first = first or now
                        latest[tp] = now
                # Until the first message, allow a slow first fetch (a busy broker): an early,
                # empty answer must not read as "the topic is empty". Fetches cover every
                # partition at once: once one answered, a partition's silence is its own.
                idle = idle_seconds if first is not None else max(idle_seconds, 3.0)
                for tp in tps:
                    if tp in done:
                        continue
                    position = await consumer.position(tp)
                    quiet = now - latest.get(tp, first or started) >= idle
                    if position > ends[tp] or (position >= ends[tp] and quiet):
                        done.add(tp)
                        consumer.pause(tp)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def latest_records(bootstrap: str, topic: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The latest record per key of the intervals topic, by kind."""
    out: dict[str, dict[str, dict[str, Any]]] = {"interval": {}, "attendance": {},
                                                  "handlers": {}}
    messages = read_topic(bootstrap, topic)
    messages.sort(key=lambda m: (m[2], m[3]))
    for key, value, _p, _o in messages:
        body = orjson.loads(value)
        out[body["kind"]][key.decode()] = body["record"]
    return out


def uncommitted(bootstrap: str, topic: str, group: str) -> int:
    """How many messages of ``topic`` the consumer ``group`` has not committed yet.

    tansu can report an end offset short of its last record batch: then this is negative.
    """

    async def run() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            ends = await consumer.end_offsets(tps)
            lag = 0
            for tp in tps:
                lag += ends[tp] - ((await consumer.committed(tp)) or 0)
            return lag
        finally:
            await consumer.stop()

    return asyncio.run(run())


def worker_metrics(port: int) -> dict[str, float]:
    """A worker's /metrics samples as ``{'name{labels}': value}``; empty if it does not answer."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def worker_probe(port: int, path: str) -> tuple[int, str]:
    """Status and body of a worker's /healthz or /readyz (0, '' while it does not answer)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 1.0,
               what: str = "condition") -> None:
    """Poll ``check`` until true, else fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def produce_lines(bootstrap: str, topic: str, lines: list[bytes], batch: int = 200,
                  settings: Settings | None = None) -> int:
    """Publish JSONL lines as the contract's messages: consecutive valid-looking events of one
    room become a batch (JSON array, key = room); anything else goes alone, keyed by its room
    when it has a string one. Returns the number of messages.

    ``settings`` say how to connect (TLS, SASL) to a Kafka cluster; without them, plaintext.
    """
    from kafka import KafkaProducer

    from services.kafka.broker import ensure_topics
    from services.kafka.clients import security

    ensure_topics(bootstrap, [topic], 8, settings=settings)
    options = security(settings).kafka_python() if settings is not None else {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_in_flight_requests_per_connection=1, batch_size=1 << 20,
                             max_request_size=8 << 20, **options)
    pending: dict[str, list[bytes]] = {}
    messages = 0

    def send(key: str | None, value: bytes) -> None:
        nonlocal messages
        producer.send(topic, key=key.encode() if key is not None else None, value=value)
        messages += 1

    def flush_room(room: str) -> None:
        items = pending.pop(room, [])
        if items:
            send(room, b"[" + b",".join(items) + b"]")

    for raw in lines:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            send(None, raw)
            continue
        room = obj.get("room") if isinstance(obj, dict) else None
        if not isinstance(room, str):
            send(None, raw)
            continue
        if batch <= 1:
            send(room, raw)
            continue
        pending.setdefault(room, []).append(raw)
        if len(pending[room]) >= batch:
            flush_room(room)
    for room in list(pending):
        flush_room(room)
    producer.flush(60)
    producer.close(10)
    return messages


def per_partition(worker: Process, name: str) -> dict[int, float]:
    """One per-partition family of a worker's /metrics, by partition."""
    prefix = f'{name}{{partition="'
    return {int(k[len(prefix):-2]): v for k, v in worker.metrics().items()
            if k.startswith(prefix)}


def owned(worker: Process) -> set[int]:
    """The partitions a worker owns now, from its /metrics."""
    return {p for p, v in per_partition(worker, "pacesetter_worker_partition_owned").items()
            if v == 1}
