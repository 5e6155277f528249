"""What one flush of a busy open interval costs, as the interval fills.

Every flush (10 a second) the worker republishes the record of each open interval something
touched. A busy room offers about 250 calls a second, so by the end of a quarter hour its open
interval holds over 200,000 calls; if the record walks every call, each flush costs more as the
interval fills and the worker falls behind. This fills one line's interval of one room with
``--calls`` calls (simulator-like: answered with an end and wrap-up, abandoned, callbacks, a
hundred still queued, repeat callers), then times flushes that each add 25 calls (as a flush at
250 calls/s does), and prints CPU milliseconds per flush (``time.process_time``: the machine
is shared, wall time would be skewed) at each size.

Run: `.venv/bin/python benchmarks/bench_interval.py [--calls 20000 200000] [--flushes 50]`.
Prints one JSON object: ``{"sizes": [{"calls", "flush_ms", "record_ms", "live_stats_ms"}],
"native": bool}``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import services.figures  # noqa: E402  (the compiled engine when built)
from services.contract.events import (  # noqa: E402
    CallAbandoned,
    CallAnswered,
    CallbackRequested,
    CallEnded,
    CallOffered,
    Event,
)
from services.contract.settings import Settings  # noqa: E402
from services.figures.calls import CallBook, Child  # noqa: E402
from services.figures.config import Config  # noqa: E402
from services.figures.kpis import INTERVAL_US, US, iso  # noqa: E402

START_US = 1_800_000_000 * US - (1_800_000_000 * US) % INTERVAL_US


class Feed:
    """Calls of one line spread over one interval, each with its exit and end."""

    def __init__(self, calls: int, seed: int):
        self.rng = random.Random(seed)
        self.book = CallBook("north", Config.of(Settings()))
        self.seq = 0
        self.calls = calls
        self.step_us = max(INTERVAL_US // (calls + 1000), 1)
        self.at = START_US
        self.queued: list[Any] = []

    def event(self, cls: type[Event], at_us: int, **fields: Any) -> Event:
        self.seq += 1
        return cls(v=1, id=f"e{self.seq}", room="north", at_text=iso(at_us), at_us=at_us,
                   **fields)

    def one_call(self) -> None:
        """Offer a call and, mostly, its exit (and end when answered)."""
        rng, book = self.rng, self.book
        self.at += self.step_us
        name = f"c{self.seq}"
        offered = self.event(CallOffered, self.at, call=name, line="999",
                             caller=f"p{rng.randrange(self.calls // 3 + 1)}")
        call = book.offer(offered, self.seq)
        roll = rng.random()
        wait = rng.randrange(0, 120 * US)
        if len(self.queued) > 100:  # a call still queued a while ago leaves the queue now
            late = self.queued.pop(0)
            book.attach(late, Child(self.event(CallAbandoned, late.offered_us + 150 * US,
                                               call=late.id), self.seq))
        if roll < 0.02:
            self.queued.append(call)  # still queued
        elif roll < 0.85:
            book.attach(call, Child(self.event(CallAnswered, self.at + wait, call=name),
                                    self.seq))
            end = self.at + wait + rng.randrange(30 * US, 600 * US)
            book.attach(call, Child(self.event(CallEnded, end, call=name, outcome="resolved",
                                               wrap_seconds=rng.randrange(0, 12000) / 100),
                                    self.seq))
        elif roll < 0.97:
            book.attach(call, Child(self.event(CallAbandoned, self.at + wait, call=name),
                                    self.seq))
        else:
            book.attach(call, Child(self.event(CallbackRequested, self.at + wait, call=name),
                                    self.seq))


def measure(calls: int, flushes: int, seed: int) -> dict[str, Any]:
    """CPU milliseconds of one flush (25 new calls) once ``calls`` calls are in the interval."""
    feed = Feed(calls, seed)
    book = feed.book
    for _ in range(calls):
        feed.one_call()
    book.derive()
    book.flush(feed.at, [])
    book.stats()
    records: list[Any] = []
    flush_s = record_s = stats_s = 0.0
    for _ in range(flushes):
        for _ in range(25):  # 250 calls/s at 10 flushes a second
            feed.one_call()
        began = time.process_time()
        book.derive()
        book.flush(feed.at, records)
        flush_s += time.process_time() - began
        began = time.process_time()
        book.interval_now("999", START_US, feed.at)  # the live state's record of the line
        record_s += time.process_time() - began
        began = time.process_time()
        book.stats()
        stats_s += time.process_time() - began
        records.clear()
    return {
        "calls": calls,
        "flush_ms": round(flush_s / flushes * 1000, 3),
        "record_ms": round(record_s / flushes * 1000, 3),
        "live_stats_ms": round(stats_s / flushes * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--flushes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sizes = [measure(n, args.flushes, args.seed) for n in args.calls]
    print(json.dumps({"sizes": sizes, "native": services.figures.NATIVE}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
