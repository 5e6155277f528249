"""Freshness by stage: how long an event takes from its producer to a dashboard, piece by piece.

The worker times, per room, the oldest event applied since the room's live state was last
published: its Kafka timestamp (the producer's create time), when the worker's agent received
it and when it was applied. It puts those times on the live message as Kafka headers (headers
are not part of the JSON the live topic carries, TOPICS.md) along with when it published, and
records the stages ``fetch``, ``apply`` and ``publish`` on its /metrics. The API records
``read_model`` (published → its read model received the message) and ``sse`` (received → the
event written to a /api/v1/stream client) on its own /metrics.

Times in headers are wall-clock epoch microseconds as ASCII digits: worker, API and the
benchmark compare clocks of one host, or of hosts kept in step by NTP.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence

from prometheus_client.core import HistogramMetricFamily

STAGES_WORKER = ("fetch", "apply", "publish")
STAGES_API = ("read_model", "sse")

#: Kafka header names on live messages (values: epoch microseconds, ASCII digits).
HEADER_PRODUCED = "pacesetter-event-produced-us"
HEADER_FETCHED = "pacesetter-event-fetched-us"
HEADER_APPLIED = "pacesetter-event-applied-us"
HEADER_PUBLISHED = "pacesetter-live-published-us"

#: Bucket bounds in seconds, 1 ms to 5 s: fine where the goal (250 ms end to end) lies, and
#: below 5 ms for the stages that take a few milliseconds (apply, sse).
BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25,
    0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)


class StageHistograms:
    """Cumulative histograms of stage durations, one per stage name.

    Observed from one thread (an event loop) and read from another (a /metrics server): an
    observation and a read each hold a lock for a few list operations only.
    """

    def __init__(self, stages: Sequence[str], buckets: Sequence[float] = BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        # per stage: counts per bucket (not cumulative; the last is +Inf), count, sum
        self._counts = {stage: [0] * (len(self.buckets) + 1) for stage in stages}
        self._sums = dict.fromkeys(stages, 0.0)

    def observe(self, stage: str, seconds: float) -> None:
        """Count one duration (negative ones, from clocks a little apart, count as 0)."""
        seconds = max(0.0, seconds)
        slot = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            self._counts[stage][slot] += 1
            self._sums[stage] += seconds

    def snapshot(self) -> dict[str, tuple[list[tuple[str, float]], float, int]]:
        """Per stage: cumulative ``(le, count)`` pairs ending with ``+Inf``, the sum, the count."""
        with self._lock:
            counts = {stage: list(values) for stage, values in self._counts.items()}
            sums = dict(self._sums)
        out = {}
        for stage, values in counts.items():
            total = 0
            pairs = []
            for bound, n in zip((*map(repr, self.buckets), "+Inf"), values, strict=True):
                total += n
                pairs.append((bound, float(total)))
            out[stage] = (pairs, sums[stage], total)
        return out

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The histograms as one Prometheus metric family labelled by ``stage``."""
        family = HistogramMetricFamily(name, documentation, labels=["stage"])
        for stage, (buckets, total, _count) in self.snapshot().items():
            family.add_metric([stage], buckets, total)
        return family


def header_us(headers: Iterable[tuple[str, bytes]] | None, name: str) -> int | None:
    """The epoch microseconds of header ``name``, or None when absent or not a number."""
    for key, value in headers or ():
        if key == name:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None
