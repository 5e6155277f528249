"""API benchmarks: freshness from event to /live, and REST latency under an open-loop load.

Starts an embedded broker, `pacesetter worker` and `pacesetter api` as child processes on topics
of their own, then measures, on 127.0.0.1 (worker and API) only:

- freshness: live events (event time = now) stream at a steady rate while probe calls are offered
  on a dedicated line ``probe`` of one room; each probe's effect is the count
  ``lines.probe.rolling_60m.offered`` going up in the ``live`` messages of ``/api/v1/stream``
  (server-sent events, what dashboards follow). Time from the probe's produce call to that;
- latency of ``/api/v1/rooms/{room}/live`` and ``/intervals`` (a day, every line: what the
  dashboard loads) at a constant request rate. Debian's wrk has no constant-rate mode (``-R``
  is wrk2's, which is not packaged), so an open-loop generator here schedules requests at fixed
  intervals whatever the responses, and measures each from its scheduled time (no coordinated
  omission).

With ``--bootstrap HOST:PORT`` no embedded broker is started: everything runs on that Kafka
cluster (TLS and SASL from the PACESETTER_KAFKA_* settings of the environment, which the worker
and API read too). On the embedded broker the freshness feed lingers 50 ms (``--linger-ms``,
``EMBEDDED_FEED_LINGER_MS``: why there), on Kafka 1 ms; the linger counts in every delay.

Prints one JSON object. Run: `.venv/bin/python benchmarks/bench_api.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.contract.settings import Settings, load_settings  # noqa: E402
from services.kafka.broker import EmbeddedBroker, free_port, wait_for_kafka  # noqa: E402
from services.kafka.clients import security  # noqa: E402
from services.simulation.simulator import simulate_events  # noqa: E402
from tests.integration.harness import Process, produce_lines, topic_env  # noqa: E402

HOST = "127.0.0.1"
DAY_START = datetime(2026, 11, 2, tzinfo=UTC)  # the simulator's default day (London = UTC then)
HISTORY_ROOM = "north"


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank method; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the system under test ---------------------------------------------------------------------


class Stack:
    """Broker, worker and API on loopback; ``close()`` kills every child process group.

    With ``bootstrap`` (``--bootstrap``) no embedded broker is started: the worker, the API and
    the bench's own clients use that Kafka cluster, connecting as the PACESETTER_* security
    settings of the environment say (the worker and API read them from it as in production),
    so that figures can be taken on a real Kafka where the embedded broker limits them.
    """

    def __init__(self, tmp: Path, partitions: int = 8, bootstrap: str | None = None,
                 connect_timeout: float = 60.0) -> None:
        self.tmp = tmp
        self.connect_timeout = connect_timeout
        self.broker = EmbeddedBroker(HOST, free_port()) if bootstrap is None else None
        self.bootstrap = self.broker.bootstrap if self.broker is not None else str(bootstrap)
        #: aiokafka connection options of the bench's own clients (empty: plaintext)
        self.kafka_options: dict[str, Any] = {}
        self.settings: Settings | None = None
        self.worker: Process | None = None
        self.api: Process | None = None
        self.api_port = free_port()
        self.partitions = partitions
        self.env: dict[str, str] = {}

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def broker_pid(self) -> int | None:
        """The embedded broker's process id; None on an external cluster (not ours to watch)."""
        if self.broker is None or self.broker.process is None:
            return None
        return self.broker.process.pid

    def start(self) -> None:
        if self.broker is not None:
            self.broker.start()
        else:
            # the settings the worker will read: a wrong value stops here, naming the variable
            self.settings = load_settings(bootstrap_servers=self.bootstrap)
            self.kafka_options = security(self.settings).aiokafka()
            wait_for_kafka(self.bootstrap, self.connect_timeout, self.settings)
        self.env = topic_env(self.bootstrap, self.tmp, self.partitions)
        self.env["PACESETTER_API_TOKENS"] = ""
        self.worker = Process(["worker"], self.env, self.tmp / "worker.log")
        self.api = Process(["api", "--api-host", HOST, "--api-port", str(self.api_port)],
                           self.env, self.tmp / "api.log")
        self._wait_worker(120)
        self._wait_ready(60)

    def _check_alive(self) -> None:
        for proc in (self.worker, self.api):
            if proc is not None and proc.proc.poll() is not None:
                raise RuntimeError(f"{proc.log_path.name} exited:\n{proc.text()[-3000:]}")

    def _wait_worker(self, timeout: float) -> None:
        assert self.worker is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.worker.text().count("rebuilt") >= self.partitions:
                return
            self._check_alive()
            time.sleep(0.2)
        raise TimeoutError("worker not ready:\n" + self.worker.text()[-3000:])

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError("API not ready")

    def close(self) -> None:
        for proc in (self.api, self.worker):
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stop(timeout=10)
        if self.broker is not None:
            self.broker.stop()


def load_history(stack: Stack, timeout: float = 120) -> int:
    """Replay one simulated day of room ``north`` and wait until the API serves all of it."""
    import httpx

    lines = [orjson.dumps(e) for e in simulate_events(rooms=1, days=1, seed=11)]
    produce_lines(stack.bootstrap, stack.env["PACESETTER_TOPIC_EVENTS"], lines, batch=200,
                  settings=stack.settings)
    url = f"{stack.base}/api/v1/rooms/{HISTORY_ROOM}/intervals"
    params = {"start": DAY_START.isoformat(), "end": (DAY_START + timedelta(days=1)).isoformat()}
    deadline = time.monotonic() + timeout
    count, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        response = httpx.get(url, params=params, timeout=10)
        if response.status_code == 200:
            rows = response.json()
            if len(rows) != count:
                count, stable_since = len(rows), time.monotonic()
            elif count > 0 and time.monotonic() - stable_since > 3:
                return count
        time.sleep(0.5)
    raise TimeoutError(f"the day of intervals did not settle (last count {count})")


# -- freshness ---------------------------------------------------------------------------------


class LiveRoom:
    """A steady stream of plausible events for one room: calls offered, answered and ended on
    999 and 101, and handlers changing state. Queues and calls in progress stay small."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.n = 0
        self.queued: deque[str] = deque()
        self.talking: deque[tuple[str, str]] = deque()

    def next(self) -> dict[str, Any]:
        self.n += 1
        n = self.n
        base = {"v": 1, "id": f"{self.name}-e{n}", "room": self.name, "at": iso_now()}
        step = n % 4
        if step == 1 and len(self.queued) > 2:
            call = self.queued.popleft()
            handler = f"h{n % 40}"
            self.talking.append((call, handler))
            return {**base, "type": "call.answered", "call": call, "handler": handler}
        if step == 2 and len(self.talking) > 4:
            call, _ = self.talking.popleft()
            return {**base, "type": "call.ended", "call": call, "outcome": "resolved",
                    "wrap_seconds": 20}
        if step == 3:
            states = ("available", "on_call", "wrap_up", "available", "unavailable")
            return {**base, "type": "handler.state", "handler": f"h{n % 40}",
                    "state": states[(n // 4) % len(states)]}
        call = f"{self.name}-c{n}"
        self.queued.append(call)
        return {**base, "type": "call.offered", "call": call, "line": ("999", "101")[n % 2],
                "caller": f"k:{n % 5000:08x}"}


def rolling_probe_count(state: dict[str, Any]) -> int:
    """Probes a live state counts: ``lines.probe.rolling_60m.offered``."""
    probe = (state.get("lines") or {}).get("probe") or {}
    return int((probe.get("rolling_60m") or {}).get("offered", 0))


async def follow_probes(base: str, room: str, seen_at: list[float], stop: asyncio.Event,
                        connected: asyncio.Event,
                        count_of: Callable[[dict[str, Any]], int] = rolling_probe_count) -> None:
    """Listen to the server-sent events of ``room``; note when each probe first shows.

    ``count_of`` reads from a live state how many probes it counts.
    """
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client, client.stream(
        "GET", f"{base}/api/v1/stream", params={"room": room}
    ) as response:
        response.raise_for_status()
        connected.set()
        event = ""
        async for line in response.aiter_lines():
            if stop.is_set():
                return
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "live":
                now = time.monotonic()
                count = count_of(orjson.loads(line[5:].strip()))
                while len(seen_at) < count:
                    seen_at.append(now)


async def follow_live_topic(stack: Stack, room: str, seen_at: list[float],
                            stop: asyncio.Event, connected: asyncio.Event,
                            published_us: list[int | None] | None = None) -> None:
    """The same probe counting on the worker's live topic itself, bypassing the API.

    ``published_us`` gets, per probe, when the worker published the first live message that
    counts it (its ``pacesetter-live-published-us`` header; None without one).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.contract.freshness import HEADER_PUBLISHED, header_us

    topic = stack.env["PACESETTER_TOPIC_LIVE"]
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap,
                                enable_auto_commit=False, fetch_max_wait_ms=10,
                                **stack.kafka_options)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        connected.set()
        key = room.encode()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for messages in batches.values():
                for message in messages:
                    if message.key != key:
                        continue
                    lines = orjson.loads(message.value).get("lines") or {}
                    count = ((lines.get("probe") or {}).get("rolling_60m") or {}).get(
                        "offered", 0)
                    while len(seen_at) < count:
                        seen_at.append(now)
                        if published_us is not None:
                            published_us.append(header_us(message.headers, HEADER_PUBLISHED))
    finally:
        await consumer.stop()


STAGES = ("fetch", "apply", "publish", "read_model", "sse")


def scrape_histograms(url: str, family: str) -> dict[str, dict[float, float]]:
    """Per stage, the cumulative bucket counts of histogram ``family`` at ``url`` (empty when
    the endpoint does not answer)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return {}
    out: dict[str, dict[float, float]] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name == family + "_bucket":
                bound = float(sample.labels["le"])
                out.setdefault(sample.labels["stage"], {})[bound] = sample.value
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative ``{le: count}``: linear within the bucket
    holding the rank; None when empty; inf when the rank lies in the +Inf bucket."""
    pairs = sorted(buckets.items())
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if math.isinf(bound):
                return math.inf
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count)
        lower_bound, lower_count = bound, count
    return math.inf


def stage_figures(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]],
                  ) -> dict[str, Any]:
    """p50/p99 per stage from the histograms' growth over a run."""
    out: dict[str, Any] = {}
    for stage in STAGES:
        now = after.get(stage)
        if not now:
            out[stage] = {"count": 0, "p50_ms": None, "p99_ms": None}
            continue
        then = before.get(stage, {})
        delta = {bound: count - then.get(bound, 0.0) for bound, count in now.items()}
        # null for a count with none, or for a quantile beyond the last bucket (5 s)
        out[stage] = {"count": int(delta.get(math.inf, 0.0)),
                      "p50_ms": finite_ms(histogram_quantile(0.50, delta)),
                      "p99_ms": finite_ms(histogram_quantile(0.99, delta))}
    return out


def scrape_stages(stack: Stack) -> dict[str, dict[float, float]]:
    """Stage histograms of the worker's and the API's /metrics, merged by stage."""
    assert stack.worker is not None
    found = scrape_histograms(f"http://{HOST}:{stack.worker.metrics_port}/metrics",
                              "pacesetter_worker_freshness_seconds")
    found.update(scrape_histograms(stack.base + "/metrics", "pacesetter_api_freshness_seconds"))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def probe_delays(sent_at: list[float], seen_at: list[float]) -> list[float]:
    """Each probe's delay, in the order sent; a probe never seen counts as an infinite delay,
    so that lost probes show in the percentiles instead of being left out."""
    return [seen_at[i] - sent if i < len(seen_at) else math.inf
            for i, sent in enumerate(sent_at)]


def finite_ms(value: float | None) -> float | None:
    """Milliseconds, or None for none or an infinite delay (a lost probe)."""
    return None if value is None or not math.isfinite(value) else ms(value)


async def freshness(stack: Stack, rate: int, seconds: float, probes_per_second: float,
                    batch: int, linger_ms: int = 1) -> dict[str, Any]:
    """Stream ``rate`` events/s for ``seconds`` with probes; time each probe to visibility."""
    from aiokafka import AIOKafkaProducer

    topic = stack.env["PACESETTER_TOPIC_EVENTS"]
    rooms = [LiveRoom(f"fresh{rate}-a"), LiveRoom(f"fresh{rate}-b")]
    probe_room = rooms[0].name
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=linger_ms,
                                acks=1, max_batch_size=1 << 20, **stack.kafka_options)
    await producer.start()
    sent_at: list[float] = []
    sent_wall_us: list[int] = []
    seen_at: list[float] = []
    topic_seen_at: list[float] = []
    topic_published_us: list[int | None] = []
    stop = asyncio.Event()
    connected = asyncio.Event()
    topic_connected = asyncio.Event()
    listener: asyncio.Task[None] | None = None
    topic_listener: asyncio.Task[None] | None = None
    assert stack.worker is not None and stack.api is not None
    pids = {"worker": stack.worker.proc.pid, "api": stack.api.proc.pid, "bench": os.getpid()}
    events = messages = 0
    behind_max = 0.0
    try:
        # the room must exist before its stream can be followed: one event each, then listen
        for room in rooms:
            await producer.send_and_wait(topic, orjson.dumps(room.next()), key=room.name.encode())
        events += len(rooms)
        await wait_for_room(stack, probe_room, 30)
        listener = asyncio.create_task(
            follow_probes(stack.base, probe_room, seen_at, stop, connected))
        topic_listener = asyncio.create_task(
            follow_live_topic(stack, probe_room, topic_seen_at, stop, topic_connected,
                              topic_published_us))
        await asyncio.wait_for(connected.wait(), 10)
        await asyncio.wait_for(topic_connected.wait(), 10)
        await asyncio.sleep(0.5)
        stages_before = await asyncio.to_thread(scrape_stages, stack)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        next_probe = started + 0.5 / probes_per_second
        tick = 0.01
        turn = 0
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * rate) - (events - len(rooms))
            behind_max = max(behind_max, due / rate)
            # at most a second's worth per tick: a slow broker shows as "behind", not a burst
            for _ in range(0, min(due, rate), batch):
                room = rooms[turn % len(rooms)]
                turn += 1
                size = min(batch, due)
                items = [room.next() for _ in range(size)]
                value = orjson.dumps(items[0] if size == 1 else items)
                await producer.send(topic, value, key=room.name.encode())
                events += size
                messages += 1
                due -= size
            if now >= next_probe:
                probe = {"v": 1, "id": f"probe-{len(sent_at)}", "type": "call.offered",
                         "room": probe_room, "at": iso_now(), "call": f"probe-{len(sent_at)}",
                         "line": "probe"}
                sent_at.append(time.monotonic())
                sent_wall_us.append(time.time_ns() // 1000)
                await producer.send(topic, orjson.dumps(probe), key=probe_room.encode())
                next_probe += 1 / probes_per_second
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - now)))
        elapsed = time.monotonic() - started
        cpu = {name: round((cpu_seconds(pid) - cpu_before[name]) / elapsed, 2)
               for name, pid in pids.items()}
        await producer.flush()
        deadline = time.monotonic() + 10
        while len(seen_at) < len(sent_at) and time.monotonic() < deadline:
            if listener.done():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the stages of the last probes reach the histograms
        stages = stage_figures(stages_before, await asyncio.to_thread(scrape_stages, stack))
    finally:
        stop.set()
        for task in (listener, topic_listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await producer.stop()
    delays = probe_delays(sent_at, seen_at)
    topic_delays = probe_delays(sent_at, topic_seen_at)
    seen = min(len(seen_at), len(sent_at))
    # per probe: produced -> published by the worker (header of the first live message that
    # counts it), and published -> its server-sent event at the dashboard
    to_publish = []
    to_sse = []
    for i, published in enumerate(topic_published_us[:len(sent_at)]):
        if published is None:
            continue
        to_publish.append((published - sent_wall_us[i]) / 1e6)
        if i < len(seen_at):
            to_sse.append(delays[i] - (published - sent_wall_us[i]) / 1e6)
    # by p99; a stage counted whose p99 is beyond the last bucket (null) is the slowest
    timed = {name: math.inf if figures["p99_ms"] is None else figures["p99_ms"]
             for name, figures in stages.items() if figures["count"]}
    slowest = max(timed, key=lambda name: timed[name]) if timed else None
    return {
        "target_events_per_second": rate,
        "achieved_events_per_second": round((events - len(rooms)) / elapsed),
        "events_per_message": batch,
        "messages": messages,
        "seconds": round(elapsed, 1),
        "generator_max_behind_seconds": round(behind_max, 3),
        "probes_sent": len(sent_at),
        "probes_seen": seen,
        "probes_lost": len(sent_at) - seen,
        "p50_ms": finite_ms(percentile(delays, 0.50)),
        "p99_ms": finite_ms(percentile(delays, 0.99)),
        "max_ms": finite_ms(max(delays) if delays else None),
        "percentiles_note": "over every probe sent: a probe never seen counts as an infinite "
                            "delay, and a percentile it reaches is null",
        "p99_ms_by_5s_window": [
            finite_ms(percentile([d for t, d in zip(sent_at, delays, strict=True)
                                  if lo <= t - started < lo + 5], 0.99))
            for lo in range(0, int(elapsed), 5)],
        "worker_only": {
            "p50_ms": finite_ms(percentile(topic_delays, 0.50)),
            "p99_ms": finite_ms(percentile(topic_delays, 0.99)),
            "what": "the same probes, to the first message on the worker's live topic that "
                    "counts them (the API's share is the difference)",
        },
        "stages": {
            **stages,
            "slowest": slowest,
            "what": "per stage, p50/p99 over the run from the growth of the worker's "
                    "pacesetter_worker_freshness_seconds (fetch: event produced -> received by "
                    "the worker's agent; apply: -> applied; publish: -> its room's live state "
                    "published; each for the oldest event a live message shows first) and the "
                    "API's pacesetter_api_freshness_seconds (read_model: published -> received "
                    "by the read model; sse: -> written to a /api/v1/stream client), "
                    "interpolated within buckets like histogram_quantile; null beyond the "
                    "last bucket (5 s); slowest: the stage of the highest p99",
        },
        "per_probe": {
            "produced_to_published": {"p50_ms": finite_ms(percentile(to_publish, 0.50)),
                                      "p99_ms": finite_ms(percentile(to_publish, 0.99))},
            "published_to_sse": {"p50_ms": finite_ms(percentile(to_sse, 0.50)),
                                 "p99_ms": finite_ms(percentile(to_sse, 0.99))},
            "what": "each probe split where the worker published the first live message "
                    "counting it (the message's pacesetter-live-published-us header): the "
                    "worker's share (fetch, apply, publish) and the API's (read_model, sse, "
                    "the client's read)",
        },
        "cpu_cores_used": cpu,
        "what": f"{rate} events/s of live calls and handler states for two rooms "
                f"({'single-event' if batch == 1 else f'{batch}-event'} messages keyed by room), "
                f"plus {probes_per_second:g} probe calls/s on line 'probe': from each probe's "
                "produce call to the first `live` server-sent event of /api/v1/stream whose "
                "lines.probe.rolling_60m.offered counts it",
    }


async def wait_for_room(stack: Stack, room: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"{stack.base}/api/v1/rooms/{room}/live")
            if response.status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"room {room} never appeared in the API")


# -- REST latency, open loop -------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
        return status, length
    if not chunked:
        raise ValueError("response without content-length or chunked encoding")
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        await reader.readexactly(size + 2)
        total += size
        if size == 0:
            return status, total


async def open_loop(port: int, path: str, rate: int, seconds: float, max_connections: int = 64,
                    timeout: float = 10.0) -> dict[str, Any]:
    """Requests scheduled every ``1/rate`` s for ``seconds``, whatever the responses; latency
    from the scheduled time to the last byte, on up to ``max_connections`` keep-alive
    connections (a request waiting for a free one is late, and that counts)."""
    loop = asyncio.get_running_loop()
    request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: application/json\r\n"
               "\r\n").encode()
    # (reader, writer, last used): uvicorn closes a connection idle for 5 s, so older ones
    # are dropped rather than failing on reuse
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    slots = asyncio.Semaphore(max_connections)
    latencies: list[float] = []
    send_delays: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    sizes: list[int] = []
    failed: list[float] = []  # time from schedule to failure: a lower bound of its latency

    async def one(scheduled: float) -> None:
        async with slots:
            while idle and loop.time() - idle[-1][2] > 3.0:
                idle.pop()[1].close()
            if idle:
                reader, writer, _used = idle.pop()
            else:
                reader, writer = await asyncio.open_connection(HOST, port)
            try:
                send_delays.append(loop.time() - scheduled)
                writer.write(request)
                status, size = await asyncio.wait_for(_read_response(reader), timeout)
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                failed.append(loop.time() - scheduled)
                writer.close()
                return
            latencies.append(loop.time() - scheduled)
            statuses[status] = statuses.get(status, 0) + 1
            sizes.append(size)
            idle.append((reader, writer, loop.time()))

    total = int(rate * seconds)
    interval = 1.0 / rate
    start = loop.time() + 0.05
    tasks: dict[asyncio.Task[None], float] = {}
    i = 0
    while i < total:
        now = loop.time()
        while i < total and start + i * interval <= now:
            tasks[asyncio.create_task(one(start + i * interval))] = start + i * interval
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
    _done, pending = await asyncio.wait(tasks, timeout=timeout + 5)
    for task in pending:
        task.cancel()
        failed.append(loop.time() - tasks[task])
    await asyncio.gather(*pending, return_exceptions=True)
    for _reader, writer, _used in idle:
        writer.close()
    elapsed = loop.time() - start
    ok = latencies + failed
    answered_2xx = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return {
        "requests_scheduled": total,
        "responses": len(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "unfinished": len(pending),
        # errors, timeouts, unfinished and non-2xx answers: any of them fails the goal
        "failed": total - answered_2xx,
        "seconds": seconds,
        "target_requests_per_second": rate,
        # 2xx answers over the run, from the first scheduled request until the last one
        # ended: below the target when the server (or this client) could not keep up
        "achieved_requests_per_second": round(answered_2xx / elapsed, 1) if elapsed > 0 else 0,
        "response_bytes": int(sum(sizes) / len(sizes)) if sizes else None,
        "p50_ms": ms(percentile(ok, 0.50)),
        "p90_ms": ms(percentile(ok, 0.90)),
        "p99_ms": ms(percentile(ok, 0.99)),
        "max_ms": ms(max(ok) if ok else None),
        "client_send_delay_p99_ms": ms(percentile(send_delays, 0.99)),
        "percentiles_note": "over every scheduled request; a failed or unfinished one counts "
                            "with its time until it failed or the run ended (a lower bound)",
    }


async def closed_loop(port: int, path: str, connections: int, seconds: float) -> dict[str, Any]:
    """How many requests/s the server completes when ``connections`` clients each send the
    next request as soon as the last is answered (its capacity; latency not measured)."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: application/json\r\n"
               "\r\n").encode()
    done = 0
    failed = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done, failed
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                failed += 1
                await asyncio.sleep(0.1)
                continue
            try:
                while time.monotonic() < deadline:
                    writer.write(request)
                    status, _size = await asyncio.wait_for(_read_response(reader), 30)
                    if 200 <= status < 300:
                        done += 1
                    else:
                        failed += 1
            except Exception:  # noqa: BLE001 - counted; a new connection goes on
                failed += 1
            finally:
                writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    return {"requests_per_second": round(done / (time.monotonic() - started)),
            "failed": failed,
            "what": f"capacity: {connections} connections in a closed loop for {seconds:g} s"}


def wrk_status() -> str:
    """What wrk is here, and why it is (not) used."""
    path = shutil.which("wrk")
    if path is None:
        return "wrk not installed: not used"
    probe = subprocess.run([path, "-R", "1", "-d", "1", "-c", "1", "-t", "1", "--version"],
                           capture_output=True, text=True, timeout=10, check=False)
    text = (probe.stdout + probe.stderr).strip().splitlines()
    first = text[0] if text else ""
    if "invalid option" in " ".join(text):
        version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=10, check=False)
        head = (version.stdout + version.stderr).strip().splitlines()
        return (f"{path} ({head[0] if head else 'unknown'}) has no constant-rate -R: a closed "
                "loop would hide queueing (coordinated omission), so it is not used")
    return f"{path} accepts -R ({first}); the Python open-loop generator is used regardless"


def latency(stack: Stack, rate: int, seconds: float) -> dict[str, Any]:
    day = (f"start={DAY_START.strftime('%Y-%m-%dT%H:%M:%SZ')}"
           f"&end={(DAY_START + timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    out: dict[str, Any] = {}
    for name, path in (("live", f"/api/v1/rooms/{HISTORY_ROOM}/live"),
                       ("intervals", f"/api/v1/rooms/{HISTORY_ROOM}/intervals?{day}")):
        result = asyncio.run(open_loop(stack.api_port, path, rate, seconds))
        result["path"] = path
        time.sleep(1)
        result["capacity"] = asyncio.run(closed_loop(stack.api_port, path, 8, 5.0))
        result["what"] = (f"GET {path} at a constant {rate} requests/s for {seconds:g} s "
                          "(open loop: each request scheduled every "
                          f"{1000 / rate:g} ms whatever the responses, latency from its "
                          "scheduled time to the last byte, up to 64 keep-alive connections; "
                          "no events flowing meanwhile)")
        out[name] = result
        time.sleep(1)
    return out


# -- main --------------------------------------------------------------------------------------


#: The feed's producer linger on the embedded broker (ms). tansu's ``memory://`` storage lists
#: every stored record batch of a partition at each fetch that finds data, so its fetch cost
#: grows with the batches a partition holds times the fetches that find data: one batch per
#: 10 ms tick (linger 1) made the broker the limit within a minute at 2,000 events/s; 50 ms
#: cuts both by 5 and kept it flat for a minute alone (benchmarks/bench_broker.py), ~10 minutes
#: in the soak. The linger counts in every delay measured (from the probe's produce call). On a
#: Kafka cluster (--bootstrap), 1 ms.
EMBEDDED_FEED_LINGER_MS = 50
EXTERNAL_FEED_LINGER_MS = 1


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap`` (a Kafka cluster instead of the embedded broker) and ``--linger-ms``."""
    parser.add_argument(
        "--bootstrap", metavar="HOST:PORT[,...]",
        help="a Kafka cluster to run against instead of the embedded broker (tansu, memory://); "
             "TLS and SASL as the PACESETTER_KAFKA_* settings of the environment say")
    parser.add_argument(
        "--linger-ms", type=int,
        help=f"the feed producer's linger (default {EMBEDDED_FEED_LINGER_MS} on the embedded "
             f"broker, {EXTERNAL_FEED_LINGER_MS} with --bootstrap); counted in every delay")


def feed_linger_ms(bootstrap: str | None, given: int | None) -> int:
    """The feed producer's linger: ``given``, else the default for the broker in use."""
    if given is not None:
        if given < 0:
            raise SystemExit("--linger-ms must be 0 or more")
        return given
    return EMBEDDED_FEED_LINGER_MS if bootstrap is None else EXTERNAL_FEED_LINGER_MS


def broker_description(bootstrap: str | None, linger_ms: int) -> dict[str, Any]:
    """What the figures ran on, printed with them: a figure on the embedded broker is not one
    on Kafka (its fetch cost grows with the batches stored), and the feed's linger shapes it."""
    out: dict[str, Any] = {"kind": "embedded" if bootstrap is None else "external",
                           "feed_linger_ms": linger_ms}
    if bootstrap is None:
        out["what"] = ("tansu memory:// child process on loopback; its fetch time grows with "
                       "the record batches a partition holds, hence the feed's linger")
    else:
        out["bootstrap"] = bootstrap
        out["what"] = "the Kafka cluster given by --bootstrap"
    return out


@contextlib.contextmanager
def running_stack(bootstrap: str | None = None) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        stack = Stack(Path(tmp_dir), bootstrap=bootstrap)
        try:
            stack.start()
            yield stack
        except BaseException:
            for proc in (stack.worker, stack.api):
                if proc is not None:
                    print(f"--- {proc.log_path.name}\n{proc.text()[-2000:]}", file=sys.stderr)
            raise
        finally:
            stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--rates", default="200,2000", help="freshness event rates (events/s)")
    parser.add_argument("--batch", type=int, default=1,
                        help="events per message of the freshness stream (default 1)")
    parser.add_argument("--probes", type=float, default=5.0, help="probes per second")
    parser.add_argument("--seconds", type=float,
                        help="length of each freshness run (default 25, quick 10)")
    parser.add_argument("--request-rate", type=int, default=500,
                        help="requests/s of the latency runs (0: skip them)")
    add_broker_arguments(parser)
    args = parser.parse_args()
    fresh_seconds = args.seconds or (10.0 if args.quick else 25.0)
    latency_seconds = 8.0 if args.quick else 20.0

    figures: dict[str, Any] = {"machine": {
        "cores": os.cpu_count(), "python": sys.version.split()[0],
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "what": "the machine is shared: a load average above the core count means other work "
                "competed with these runs"}}
    linger_ms = feed_linger_ms(args.bootstrap, args.linger_ms)
    figures["broker"] = broker_description(args.bootstrap, linger_ms)
    with running_stack(args.bootstrap) as stack:
        started = time.monotonic()
        records = load_history(stack)
        figures["setup"] = {"history_records": records,
                            "seconds": round(time.monotonic() - started, 1),
                            "what": f"one simulated day of room {HISTORY_ROOM} replayed and "
                                    "served as intervals before the measurements"}
        figures["freshness"] = {}
        for rate in (int(r) for r in args.rates.split(",") if r.strip()):
            figures["freshness"][str(rate)] = asyncio.run(
                freshness(stack, rate, fresh_seconds, args.probes, args.batch, linger_ms))
            time.sleep(2)
        if args.request_rate > 0:
            figures["latency"] = latency(stack, args.request_rate, latency_seconds)
            figures["latency"]["generator"] = ("Python asyncio open-loop generator (this file); "
                                           + wrk_status())
    figures["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
