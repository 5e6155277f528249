"""Soak: a steady 2,000 events/s through broker, worker and API for 20 minutes, a dashboard's
event stream connected; is memory flat and does freshness hold?

Not part of `make test`: `make soak` (or `.venv/bin/python benchmarks/soak.py --minutes 4
--warmup 2` for a trial). Starts the embedded broker, `pacesetter worker` and `pacesetter api`
(``Stack`` of benchmarks/bench_api.py), streams live events of two rooms (``LiveRoom``) and,
5 times a second, a probe call on line ``probe`` of the first room; each probe's effect is the
first ``live`` server-sent event of ``/api/v1/stream`` that counts it. Every minute it notes the
RSS of each process (broker, worker, API and this driver), their CPU, the rate reached and the
probes' delays. Prints one JSON object (per-minute table and verdict); exit 1 when it fails.

**Why the horizons are shortened.** A room keeps, by design, what its figures may still need:
event ids for deduplication, every call of an interval until it is final (15 minutes plus the
grace period), calls for repeat-caller detection, incidents for the attendance horizon. With the
contract's defaults (grace 2 h, repeat window 7 days, attendance 50 h) that state grows through
all of a 20-minute soak, and a leak could not be told from kept state. The soak therefore runs
with horizons of two minutes, so that everything older is pruned, and **prefills** the event
history: before the clock of the soak starts, events stamped over the last ~40 minutes (the time
the state needs to reach its steady size: two generations of remembered ids, an interval, the
grace period and the horizons) are fed at the same density, as fast as the worker takes them.
What the state then holds is what it holds at any later minute, so growth after the warm-up is
a leak (or unbounded state), not data.

The verdict (``verdict``): for each process, RSS (the highest sample of the minute) at the end of
the run is less than 5 % above that at the end of the warm-up; the p99 of the probes of the last
5 minutes is at most 1.5 × the p99 of minutes 3-7 plus 50 ms; no probe is lost; the target rate
is reached (95 %); no event is dead-lettered.

**The broker.** By default the soak starts the embedded broker (tansu, ``memory://``); with
``--bootstrap`` it runs on that Kafka cluster instead (TLS and SASL from the PACESETTER_KAFKA_*
settings, as the worker and API read them). tansu lists every stored record batch of a
partition at each fetch that finds data, keeps them all, and answers a fetch whose wait runs out
during that listing with no records: one batch per 10 ms tick stopped the worker's fetches after
1-3 minutes (``benchmarks/bench_broker.py``, ``EmbeddedBroker``). On it the feed therefore
lingers 50 ms (``--linger-ms``; 1 ms on Kafka), which cuts the batches stored and the fetches
that list them by 5; the linger counts in every delay measured. That postpones the stall
(minute 10 instead of 1-3 at 500 events/s), it does not end it: judge a 20-minute soak on Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # bench_api, as mypy sees it (no package)

from bench_api import (  # noqa: E402
    LiveRoom,
    Stack,
    add_broker_arguments,
    broker_description,
    cpu_seconds,
    feed_linger_ms,
    follow_probes,
    iso_now,
    percentile,
    wait_for_room,
)

from services.contract.settings import load_settings  # noqa: E402
from services.figures.config import Config  # noqa: E402
from services.figures.kpis import INTERVAL_US, US  # noqa: E402

#: The horizons of the soak (seconds), given to the worker and API through the environment.
HORIZONS = {
    "PACESETTER_GRACE_SECONDS": 120,
    "PACESETTER_REPEAT_WINDOW_SECONDS": 120,
    "PACESETTER_ATTENDANCE_HORIZON_SECONDS": 120,
    "PACESETTER_MAX_FUTURE_SECONDS": 60,
    "PACESETTER_LIVE_LAG_SECONDS": 60,
    "PACESETTER_READ_MODEL_DAYS": 1,
}
HORIZONS_WHY = (
    "shortened so that the state reaches its steady size before the judged minutes: grace 120 s "
    "(an interval is final 2 min after it ends, enough for a worker behind by a minute), repeat "
    "window and attendance horizon 120 s (calls and incidents pruned soon after), at most 60 s "
    "in the future (ids are remembered for max(grace, attendance) + 15 min + that, "
    "services/figures/config.py), a room live when its events are at most 60 s old (shorter "
    "than the grace period: the prefill's last events are not too late when its rooms go "
    "live and intervals close by the wall clock), the API's read model 1 day (its minimum: "
    "a few hundred interval records here)")
GROWTH_LIMIT = 0.05
DRIFT_FACTOR = 1.5
DRIFT_SLACK_MS = 50.0
RATE_FLOOR = 0.95
#: Processes whose memory must be flat. The embedded broker (tansu, ``memory://``) keeps every
#: record it is sent, with no retention: its RSS grows with the log by design, so it is
#: reported (with the bytes it was sent), not judged.
JUDGED = ("worker", "api", "driver")


# -- the verdict -------------------------------------------------------------------------------


@dataclass
class Minute:
    """What one minute of the soak measured."""

    minute: int  # 1-based
    rss_mb: dict[str, float]  # highest RSS sample of the minute, per process
    delays_ms: list[float]  # the probes sent in this minute (seen ones)
    probes_sent: int
    events: int = 0  # events produced in the minute
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self, rate: int) -> dict[str, Any]:
        """The minute as printed (delays summarised)."""
        return {
            "minute": self.minute,
            "rss_mb": {k: round(v, 1) for k, v in self.rss_mb.items()},
            "freshness_p50_ms": _round(percentile(self.delays_ms, 0.50)),
            "freshness_p99_ms": _round(percentile(self.delays_ms, 0.99)),
            "freshness_max_ms": _round(max(self.delays_ms) if self.delays_ms else None),
            "probes_sent": self.probes_sent,
            "probes_seen": len(self.delays_ms),
            "events_per_second": round(self.events / 60),
            "rate_reached": self.events >= RATE_FLOOR * rate * 60,
            **self.extra,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def windows(minutes: int) -> tuple[list[int], list[int]]:
    """The reference minutes and the last minutes whose freshness p99 are compared.

    The last 5 minutes (half the run if shorter) against minutes 3-7 (a 20-minute soak); a run
    too short for both compares the last minutes with those before them, from the second on.
    """
    size = max(1, min(5, minutes // 2))
    last = list(range(minutes - size + 1, minutes + 1))
    ref = [m for m in range(3, 8) if m < last[0]]
    if not ref:
        ref = list(range(2, last[0])) or list(range(1, last[0]))
    return ref, last


def verdict(samples: Sequence[Minute], warmup: int, rate: int, dead_letters: int = 0,
            probes_lost: int | None = None,
            judged: Sequence[str] = JUDGED) -> dict[str, Any]:
    """Pass or fail, with every reason, from per-minute samples.

    Args:
        samples: the minutes in order (minute 1 first).
        warmup: minutes not judged for memory; RSS at its last minute is the baseline.
        rate: the target events/s.
        dead_letters: events the worker dead-lettered during the run.
        probes_lost: probes never seen (default: sent minus seen over the samples).
        judged: the processes whose memory must be flat (others are reported only).
    """
    reasons: list[str] = []
    memory: dict[str, Any] = {}
    n = len(samples)
    if n <= warmup or warmup < 1:
        reasons.append(f"memory not judged: {n} minutes run, warm-up {warmup} "
                       "(at least one minute after a warm-up of one minute or more is needed)")
    else:
        base_minute, end_minute = samples[warmup - 1], samples[-1]
        for name in sorted(end_minute.rss_mb):
            base = base_minute.rss_mb.get(name)
            end = end_minute.rss_mb[name]
            if not base:
                reasons.append(f"{name}: no RSS at the end of the warm-up")
                continue
            growth = (end - base) / base
            memory[name] = {"baseline_mb": round(base, 1), "end_mb": round(end, 1),
                            "growth_percent": round(100 * growth, 2),
                            "flat": growth < GROWTH_LIMIT, "judged": name in judged}
            if growth >= GROWTH_LIMIT and name in judged:
                reasons.append(
                    f"{name}: RSS grew {100 * growth:.1f} % over minutes {warmup + 1}-{n} "
                    f"({base:.0f} -> {end:.0f} MB; limit {100 * GROWTH_LIMIT:g} %)")
    freshness: dict[str, Any] = {}
    if n >= 2:
        ref, last = windows(n)
        ref_p99 = percentile([d for s in samples if s.minute in ref for d in s.delays_ms], 0.99)
        last_p99 = percentile([d for s in samples if s.minute in last for d in s.delays_ms],
                              0.99)
        freshness = {"reference_minutes": [ref[0], ref[-1]], "last_minutes": [last[0], last[-1]],
                     "reference_p99_ms": _round(ref_p99), "last_p99_ms": _round(last_p99)}
        if ref_p99 is None or last_p99 is None:
            reasons.append("freshness: no probe seen in the reference or the last minutes")
        else:
            limit = DRIFT_FACTOR * ref_p99 + DRIFT_SLACK_MS
            freshness["limit_ms"] = round(limit, 1)
            freshness["drift"] = last_p99 > limit
            if last_p99 > limit:
                reasons.append(
                    f"freshness drifted: p99 {last_p99:.0f} ms in minutes {last[0]}-{last[-1]} "
                    f"> {DRIFT_FACTOR:g} x {ref_p99:.0f} ms (minutes {ref[0]}-{ref[-1]}) "
                    f"+ {DRIFT_SLACK_MS:g} ms")
    else:
        reasons.append("freshness not judged: fewer than 2 minutes")
    sent = sum(s.probes_sent for s in samples)
    lost = sent - sum(len(s.delays_ms) for s in samples) if probes_lost is None else probes_lost
    if lost > 0:
        reasons.append(f"{lost} of {sent} probes never seen in the event stream")
    slow = [s.minute for s in samples if s.events < RATE_FLOOR * rate * 60]
    if slow:
        reasons.append(f"rate not reached ({100 * RATE_FLOOR:g} % of {rate} events/s) in "
                       f"minute(s) {', '.join(map(str, slow))}")
    if dead_letters:
        reasons.append(f"{dead_letters} events dead-lettered (too late or invalid): the "
                       "worker fell behind by more than the grace period or dropped events")
    return {"passed": not reasons, "reasons": reasons, "memory": memory,
            "freshness": freshness, "probes_sent": sent, "probes_lost": lost,
            "rules": (f"memory: per process ({', '.join(judged)}), RSS (highest sample of "
                      f"the minute) at the last minute < {100 * GROWTH_LIMIT:g} % above that "
                      f"of the last warm-up minute; "
                      f"freshness: p99 of the last minutes (5, or half a short run) <= "
                      f"{DRIFT_FACTOR:g} x p99 of minutes 3-7 (or the minutes before) + "
                      f"{DRIFT_SLACK_MS:g} ms, no probe lost; every minute >= "
                      f"{100 * RATE_FLOOR:g} % of the target rate; no dead letter")}


# -- the run -----------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def horizons() -> dict[str, Any]:
    """What the soak's settings keep, as the worker derives it (printed with the result)."""
    config = Config.of(load_settings(**{k.removeprefix("PACESETTER_").lower(): v
                                        for k, v in HORIZONS.items()}))
    return {"settings": dict(HORIZONS),
            "event_ids_remembered_seconds": [config.seen_generation_us / US,
                                             2 * config.seen_generation_us / US],
            "why": HORIZONS_WHY}


def prefill_seconds() -> float:
    """Event time the state needs to reach its steady size under the soak's horizons.

    Two generations of event ids; calls kept for an interval, the grace period and the longer
    horizon, and up to an interval more until the next pruning (at a quarter hour); plus 5
    minutes.
    """
    config = Config.of(load_settings(**{k.removeprefix("PACESETTER_").lower(): v
                                        for k, v in HORIZONS.items()}))
    horizon = max(config.repeat_window_us, config.attendance_horizon_us)
    calls = 2 * INTERVAL_US + config.grace_us + horizon
    return (max(2 * config.seen_generation_us, calls) + 5 * 60 * US) / US


def applied_messages(stack: Stack) -> float | None:
    """Events-topic messages the worker applied (its /metrics); None while it does not answer."""
    assert stack.worker is not None
    values = [v for k, v in stack.worker.metrics().items()
              if k.startswith("pacesetter_worker_events_applied")]
    return sum(values) if values else None


def worker_lag(stack: Stack) -> float | None:
    """How far behind the worker is (its /metrics, the largest of its partitions), seconds."""
    assert stack.worker is not None
    values = [v for k, v in stack.worker.metrics().items()
              if k.startswith("pacesetter_worker_lag_seconds")]
    return round(max(values), 1) if values else None


def dead_letters(stack: Stack) -> int:
    assert stack.worker is not None
    return int(sum(v for k, v in stack.worker.metrics().items()
                   if k.startswith("pacesetter_worker_dead_letters")))


def totals_probe_count(state: dict[str, Any]) -> int:
    """Probes a live state counts by ``totals.lines.probe.offered`` (cumulative).

    Not by ``rolling_60m`` as bench_api's ``follow_probes`` counts by default: with a grace
    period shorter than an hour, a final interval leaves the rolling hour (see the report), and
    the count would fall.
    """
    lines = (state.get("totals") or {}).get("lines") or {}
    return int((lines.get("probe") or {}).get("offered", 0))


async def prefill(stack: Stack, producer: Any, rooms: list[LiveRoom], rate: int,
                  seconds: float) -> dict[str, Any]:
    """Events stamped over the last ``seconds`` at ``rate``/s, as fast as the worker takes them.

    The event clock runs from ``now - seconds`` until it meets the wall clock; a chunk waits
    while the worker is more than 50,000 events behind, so the live minutes start caught up.
    """
    topic = stack.env["PACESETTER_TOPIC_EVENTS"]
    started = time.monotonic()
    clock_us = (time.time() - seconds) * US
    step_us = US / rate
    per_message = 500
    messages = events = 0
    turn = 0
    # A worker no faster than ``rate`` would never catch the clock up: give up after a while
    # and leave a gap in event time (printed) rather than run for ever.
    give_up = started + max(600.0, 3 * seconds * rate / 20_000)
    while clock_us < time.time() * US - 1 * US and time.monotonic() < give_up:
        for _ in range(40):  # 20,000 events a chunk
            room = rooms[turn % len(rooms)]
            turn += 1
            items = []
            for _ in range(per_message):
                item = room.next()
                item["at"] = datetime.fromtimestamp(clock_us / US, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ")
                clock_us += step_us
                items.append(item)
            await producer.send(topic, orjson.dumps(items), key=room.name.encode())
            messages += 1
            events += per_message
        while True:
            applied = applied_messages(stack)
            if applied is not None and messages - applied < 100:
                break
            stack._check_alive()
            await asyncio.sleep(0.2)
    await producer.flush()
    return {"events": events, "event_seconds": round(seconds),
            "seconds": round(time.monotonic() - started, 1),
            "gap_seconds": round(max(0.0, time.time() - clock_us / US), 1),
            "what": f"{events} events stamped over the {seconds / 60:.0f} minutes before the "
                    f"soak ({rate}/s of event time, {per_message}-event messages), fed as fast "
                    "as the worker applied them: the state's steady size before minute 1"}


async def soak(stack: Stack, minutes: int, rate: int, probes_per_second: float, batch: int,
               prefill_for: float, linger_ms: int = 1) -> tuple[list[Minute], dict[str, Any]]:
    """Run the soak; the per-minute samples and what else was measured."""
    from aiokafka import AIOKafkaProducer

    topic = stack.env["PACESETTER_TOPIC_EVENTS"]
    rooms = [LiveRoom("soak-a"), LiveRoom("soak-b")]
    probe_room = rooms[0].name
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=linger_ms,
                                acks=1, max_batch_size=1 << 20, **stack.kafka_options)
    await producer.start()
    assert stack.worker is not None and stack.api is not None
    pids = process_ids(stack)
    info: dict[str, Any] = {}
    sent_at: list[float] = []
    seen_at: list[float] = []
    stop = asyncio.Event()
    connected = asyncio.Event()
    listener: asyncio.Task[None] | None = None
    samples: list[Minute] = []
    try:
        if prefill_for > 0:
            info["prefill"] = await prefill(stack, producer, rooms, rate, prefill_for)
        for room in rooms:
            await producer.send_and_wait(topic, orjson.dumps(room.next()), key=room.name.encode())
        await wait_for_room(stack, probe_room, 60)
        listener = asyncio.create_task(
            follow_probes(stack.base, probe_room, seen_at, stop, connected, totals_probe_count))
        await asyncio.wait_for(connected.wait(), 10)
        await asyncio.sleep(0.5)
        dead_before = dead_letters(stack)
        started = time.monotonic()
        events = 0
        next_probe = started + 0.5 / probes_per_second
        probe_minute: list[int] = []
        minute_events = [0]
        rss_max = dict.fromkeys(pids, 0.0)
        cpu_mark = {name: cpu_seconds(pid) for name, pid in pids.items()}
        next_rss = started
        behind_max = 0.0
        turn = 0
        while (now := time.monotonic()) - started < minutes * 60:
            minute = int((now - started) // 60)
            if minute >= len(minute_events):  # a minute ended: note it
                samples.append(close_minute(len(samples) + 1, rss_max, cpu_mark, pids,
                                            minute_events[-1], behind_max))
                samples[-1].extra["worker_lag_seconds"] = worker_lag(stack)
                minute_events.append(0)
                rss_max = dict.fromkeys(pids, 0.0)
                behind_max = 0.0
                progress(samples[-1], sent_at, seen_at, probe_minute, rate)
            due = int((now - started) * rate) - events
            behind_max = max(behind_max, due / rate)
            for _ in range(0, min(due, rate), batch):
                room = rooms[turn % len(rooms)]
                turn += 1
                size = min(batch, due)
                items = [room.next() for _ in range(size)]
                await producer.send(topic, orjson.dumps(items[0] if size == 1 else items),
                                    key=room.name.encode())
                events += size
                minute_events[-1] += size
                due -= size
            if now >= next_probe:
                n = len(sent_at)
                probe = {"v": 1, "id": f"probe-{n}", "type": "call.offered", "room": probe_room,
                         "at": iso_now(), "call": f"probe-{n}", "line": "probe"}
                sent_at.append(time.monotonic())
                probe_minute.append(minute)
                await producer.send(topic, orjson.dumps(probe), key=probe_room.encode())
                next_probe += 1 / probes_per_second
            if now >= next_rss:
                for name, pid in pids.items():
                    rss_max[name] = max(rss_max[name], rss_mb(pid))
                next_rss = now + 1.0
                if listener.done():
                    raise RuntimeError(f"the event stream ended: {listener.exception()!r}")
                stack._check_alive()
            await asyncio.sleep(max(0.0, 0.01 - (time.monotonic() - now)))
        samples.append(close_minute(len(samples) + 1, rss_max, cpu_mark, pids,
                                    minute_events[-1], behind_max))
        samples[-1].extra["worker_lag_seconds"] = worker_lag(stack)
        progress(samples[-1], sent_at, seen_at, probe_minute, rate)
        await producer.flush()
        deadline = time.monotonic() + 15
        while len(seen_at) < len(sent_at) and time.monotonic() < deadline:
            if listener.done():
                break
            await asyncio.sleep(0.05)
        info["dead_letters"] = dead_letters(stack) - dead_before
    finally:
        stop.set()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        await producer.stop()
    for index, (sent, seen) in enumerate(zip(sent_at, seen_at, strict=False)):
        sample = samples[min(probe_minute[index], len(samples) - 1)]
        sample.delays_ms.append((seen - sent) * 1000)
    for index in probe_minute:
        samples[min(index, len(samples) - 1)].probes_sent += 1
    info["probes_lost"] = len(sent_at) - min(len(seen_at), len(sent_at))
    return samples, info


def process_ids(stack: Stack) -> dict[str, int]:
    """The processes whose RSS and CPU are noted: the embedded broker's only when it is ours
    (not on a cluster given by --bootstrap), the worker, the API and this driver."""
    assert stack.worker is not None and stack.api is not None
    pids = {"worker": stack.worker.proc.pid, "api": stack.api.proc.pid, "driver": os.getpid()}
    if stack.broker_pid is not None:
        pids = {"broker": stack.broker_pid, **pids}
    return pids


def progress(sample: Minute, sent_at: list[float], seen_at: list[float],
             probe_minute: list[int], rate: int) -> None:
    """One line on stderr as a minute ends (its probes seen so far; the JSON has them all)."""
    delays = [(seen - sent) * 1000 for sent, seen, minute in zip(sent_at, seen_at, probe_minute,
                                                                  strict=False)
              if minute == sample.minute - 1]
    row = sample.row(rate)
    row["freshness_p99_ms_so_far"] = _round(percentile(delays, 0.99))
    print(json.dumps(row), file=sys.stderr, flush=True)


def close_minute(number: int, rss_max: dict[str, float], cpu_mark: dict[str, float],
                 pids: dict[str, int], events: int, behind_max: float) -> Minute:
    """The Minute just ended (its probes are added at the end); resets the CPU marks."""
    cpu = {}
    for name, pid in pids.items():
        now = cpu_seconds(pid)
        cpu[name] = round((now - cpu_mark[name]) / 60, 2)
        cpu_mark[name] = now
    return Minute(number, dict(rss_max), [], 0, events, {
        "cpu_cores": cpu, "generator_max_behind_seconds": round(behind_max, 2),
        "load_average_1m": round(os.getloadavg()[0], 2)})


def build_parser() -> argparse.ArgumentParser:
    """The soak's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=20, help="length of the soak (20)")
    parser.add_argument("--rate", type=int, default=2000, help="events/s (2000)")
    parser.add_argument("--warmup", type=int,
                        help="minutes before memory is judged (default: all but the last 10, "
                             "or half a shorter run)")
    parser.add_argument("--prefill", type=float,
                        help="minutes of event history fed before minute 1 (default: what the "
                             "soak's horizons need to reach the steady state; 0: none)")
    parser.add_argument("--probes", type=float, default=5.0, help="probes per second (5)")
    parser.add_argument("--batch", type=int, default=1, help="events per message (1)")
    add_broker_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.minutes < 2:
        parser.error("--minutes must be at least 2")
    warmup = args.warmup if args.warmup is not None else (
        args.minutes - 10 if args.minutes > 10 else args.minutes // 2)
    if not 1 <= warmup < args.minutes:
        parser.error("--warmup must be at least 1 and less than --minutes")
    prefill_for = prefill_seconds() if args.prefill is None else args.prefill * 60
    linger_ms = feed_linger_ms(args.bootstrap, args.linger_ms)
    os.environ.update({k: str(v) for k, v in HORIZONS.items()})
    figures: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                    "what": "the machine is shared: a load average above the core count means "
                            "other work competed with this run"},
        "broker": broker_description(args.bootstrap, linger_ms),
        "horizons": horizons(),
        "run": {"minutes": args.minutes, "warmup_minutes": warmup, "rate": args.rate,
                "events_per_message": args.batch, "probes_per_second": args.probes,
                "prefill_minutes": round(prefill_for / 60, 1),
                "what": f"{args.rate} events/s of live calls and handler states for two rooms "
                        f"plus {args.probes:g} probe calls/s on line 'probe'; freshness is from "
                        "a probe's produce call to the first `live` server-sent event of "
                        "/api/v1/stream counting it (totals.lines.probe.offered)"}}
    with tempfile.TemporaryDirectory() as tmp_dir:
        stack = Stack(Path(tmp_dir), bootstrap=args.bootstrap)
        try:
            stack.start()
            samples, info = asyncio.run(soak(stack, args.minutes, args.rate, args.probes,
                                             args.batch, prefill_for, linger_ms))
        except BaseException:
            for proc in (stack.worker, stack.api):
                if proc is not None:
                    print(f"--- {proc.log_path.name}\n{proc.text()[-2000:]}", file=sys.stderr)
            raise
        finally:
            stack.close()
    figures.update(info)
    figures["minutes"] = [s.row(args.rate) for s in samples]
    figures["verdict"] = verdict(samples, warmup, args.rate, info.get("dead_letters", 0),
                                 info.get("probes_lost"))
    figures["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))
    return 0 if figures["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
