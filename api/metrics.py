"""Prometheus exposition: a collector that reads the read model at scrape time.

Counters and the answer-wait histogram come from each room's cumulative ``totals`` in its live
state (TOPICS.md), which the worker derives from its state: exact after restarts, and nothing is
counted twice however often the API replays the topics. Label sets stay bounded: room, line,
state, rule, grade, definition, event type and rejection reason.

Those totals are recomputed from the retained events topic, so they can go down: a retention
trim drops old events, and a rebuild may briefly publish less than before. Prometheus reads any
decrease of a counter as a reset and counts the whole value again, so :class:`Monotonic` keeps
every exported counter from ever decreasing during this process's life: a drop is absorbed (the
counter holds still) and later increases are added on top.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.readmodel import ReadModel
from services.alerts.rules import RULE_NAMES as ALERT_RULES
from services.figures.kpis import HANDLER_STATES

SL_DEFINITIONS = ("answered", "offered", "excl_early_abandons")
CALL_COUNTERS = (
    ("offered", "Calls offered"),
    ("answered", "Calls answered"),
    ("abandoned", "Calls abandoned before an answer"),
    ("callbacks_requested", "Calls that left the queue accepting a callback"),
)


def _number(value: Any) -> float | None:
    """A finite float, or None for null, text or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _le(bound: str) -> float:
    return math.inf if bound in ("+Inf", "inf", "Inf") else float(bound)


class Monotonic:
    """Counter values that never go down, per series, whatever the recomputed totals do.

    A series is a vector (a histogram's buckets, count and sum move together): when any of
    its values is lower than last time, the series holds at what was last exported and goes
    on from there with the increases that follow. Increases of a cumulative histogram stay
    cumulative, so buckets stay ordered.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, tuple[str, ...]], tuple[float, ...]] = {}
        self._offset: dict[tuple[str, tuple[str, ...]], tuple[float, ...]] = {}

    def __call__(self, name: str, labels: list[str], values: list[float]) -> list[float]:
        """The values to export for the series ``name{labels}``, given its recomputed ones."""
        key = (name, tuple(labels))
        raw = tuple(values)
        last = self._last.get(key)
        offset = self._offset.get(key)
        if last is None or len(last) != len(raw):
            offset = tuple(0.0 for _ in raw)
        elif any(now < before for now, before in zip(raw, last, strict=True)):
            # what was exported (last + offset) stays; increases from here are added to it
            offset = tuple(o + before - now for o, before, now in zip(
                offset or (0.0,) * len(raw), last, raw, strict=True))
        assert offset is not None
        self._last[key] = raw
        self._offset[key] = offset
        return [value + extra for value, extra in zip(raw, offset, strict=True)]


class ReadModelCollector(Collector):
    """Yields Pacesetter's metrics from one consistent look at the read model."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model
        self.monotonic = Monotonic()

    def collect(self) -> Iterator[Metric]:  # noqa: C901 - one flat pass over the live states
        """Build every metric family from the live states and alerts."""
        states = self.model.live_states()
        counters = {
            name: CounterMetricFamily(f"pacesetter_calls_{name}", f"{text}, since the start "
                                      "of the events topic", labels=["room", "line"])
            for name, text in CALL_COUNTERS
        }
        wait = HistogramMetricFamily(
            "pacesetter_answer_wait_seconds",
            "Wait of answered calls from offer to answer", labels=["room", "line"])
        queue = GaugeMetricFamily("pacesetter_queue_calls", "Calls waiting in the queue now",
                                  labels=["room", "line"])
        longest = GaugeMetricFamily("pacesetter_queue_longest_wait_seconds",
                                    "How long the longest-waiting queued caller has waited",
                                    labels=["room", "line"])
        service = GaugeMetricFamily(
            "pacesetter_interval_service_level_ratio",
            "Service level of the current 15-minute interval, by definition (METRICS.md)",
            labels=["room", "line", "definition"])
        abandon = GaugeMetricFamily("pacesetter_interval_abandonment_ratio",
                                    "Abandonment rate of the current 15-minute interval",
                                    labels=["room", "line"])
        failure = GaugeMetricFamily("pacesetter_failure_demand_ratio",
                                    "Share of calls that are failure demand, rolling 24 hours",
                                    labels=["room", "line"])
        required = GaugeMetricFamily("pacesetter_staffing_required_handlers",
                                     "Handlers the staffing plan requires this interval",
                                     labels=["room", "line"])
        forecast = GaugeMetricFamily("pacesetter_forecast_calls",
                                     "Calls the staffing plan forecasts for this interval",
                                     labels=["room", "line"])
        forecast_upper = GaugeMetricFamily(
            "pacesetter_forecast_calls_upper",
            "Upper bound of the forecast's prediction interval for this interval",
            labels=["room", "line"])
        handlers = GaugeMetricFamily("pacesetter_handlers", "Call handlers by state now",
                                     labels=["room", "state"])
        awaiting = GaugeMetricFamily("pacesetter_incidents_awaiting_dispatch",
                                     "Incidents not yet dispatched, by grade",
                                     labels=["room", "grade"])
        awaiting_age = GaugeMetricFamily(
            "pacesetter_incidents_awaiting_dispatch_oldest_age_seconds",
            "Age of the oldest incident awaiting dispatch, by grade", labels=["room", "grade"])
        events: dict[str, float] = {}
        rejected: dict[str, float] = {}
        lag: float | None = None

        for state in states:
            room = str(state.get("room"))
            lines = state.get("lines") or {}
            totals = (state.get("totals") or {}).get("lines") or {}
            for line, figures in sorted(totals.items()):
                for name, _ in CALL_COUNTERS:
                    value = _number(figures.get(name))
                    if value is not None:
                        (value,) = self.monotonic(name, [room, line], [value])
                        counters[name].add_metric([room, line], value)
                buckets = figures.get("answer_wait_buckets") or {}
                count = _number(figures.get("answer_wait_count"))
                total = _number(figures.get("answer_wait_sum_seconds"))
                pairs = sorted((_le(le), _number(n)) for le, n in buckets.items())
                cumulative = [(b, n) for b, n in pairs if n is not None]
                if cumulative or count is not None:
                    if not cumulative or cumulative[-1][0] != math.inf:
                        cumulative.append((math.inf, count or 0.0))
                    *counts, wait_sum = self.monotonic(
                        "answer_wait", [room, line, *(repr(b) for b, _ in cumulative)],
                        [n for _, n in cumulative] + [total if total is not None else 0.0])
                    wait.add_metric(
                        [room, line],
                        [("+Inf" if b == math.inf else repr(b), n)
                         for (b, _), n in zip(cumulative, counts, strict=True)],
                        wait_sum)
            for line, live in sorted(lines.items()):
                live = live or {}
                if (n := _number(live.get("in_queue"))) is not None:
                    queue.add_metric([room, line], n)
                longest.add_metric([room, line], _number(live.get("longest_wait_seconds")) or 0.0)
                interval = live.get("interval") or {}
                levels = interval.get("service_level") or {}
                for definition in SL_DEFINITIONS:
                    if (n := _number(levels.get(definition))) is not None:
                        service.add_metric([room, line, definition], n)
                if (n := _number(interval.get("abandonment_rate"))) is not None:
                    abandon.add_metric([room, line], n)
                rolling = live.get("rolling_24h") or {}
                if (n := _number(rolling.get("failure_demand_rate"))) is not None:
                    failure.add_metric([room, line], n)
                staffing = live.get("staffing") or {}
                if (n := _number(staffing.get("required_handlers"))) is not None:
                    required.add_metric([room, line], n)
                if (n := _number(staffing.get("forecast_calls"))) is not None:
                    forecast.add_metric([room, line], n)
                if (n := _number(staffing.get("forecast_calls_upper"))) is not None:
                    forecast_upper.add_metric([room, line], n)
            now = state.get("handlers") or {}
            for handler_state in HANDLER_STATES:
                handlers.add_metric([room, handler_state], _number(now.get(handler_state)) or 0.0)
            for grade, waiting in sorted((state.get("incidents_awaiting_dispatch") or {}).items()):
                waiting = waiting or {}
                awaiting.add_metric([room, grade], _number(waiting.get("count")) or 0.0)
                if (n := _number(waiting.get("oldest_age_seconds"))) is not None:
                    awaiting_age.add_metric([room, grade], n)
            pipeline = state.get("totals") or {}
            for kind, n in (pipeline.get("events") or {}).items():
                events[kind] = events.get(kind, 0.0) + (_number(n) or 0.0)
            for reason, n in (pipeline.get("rejected") or {}).items():
                rejected[reason] = rejected.get(reason, 0.0) + (_number(n) or 0.0)
            if (n := _number(state.get("lag_seconds"))) is not None:
                lag = n if lag is None else max(lag, n)

        yield from counters.values()
        yield wait
        yield from (queue, longest, service, abandon, failure, required, forecast, forecast_upper,
                    handlers,
                    awaiting, awaiting_age)
        yield from self._alerts(states)

        events_family = CounterMetricFamily("pacesetter_events",
                                            "Valid events processed, by type", labels=["type"])
        for kind in sorted(events):
            events_family.add_metric([kind], self.monotonic("events", [kind], [events[kind]])[0])
        yield events_family
        rejected_family = CounterMetricFamily(
            "pacesetter_events_rejected", "Events rejected (counted, dead-lettered), by reason",
            labels=["reason"])
        for reason in sorted(rejected):
            rejected_family.add_metric(
                [reason], self.monotonic("rejected", [reason], [rejected[reason]])[0])
        yield rejected_family
        lag_family = GaugeMetricFamily(
            "pacesetter_event_lag_seconds",
            "Processing time minus event time of the newest event, worst room")
        if lag is not None:
            lag_family.add_metric([], lag)
        yield lag_family
        yield self.model.freshness.family(
            "pacesetter_api_freshness_seconds",
            "Live messages: published by the worker to received by this read model "
            "(read_model), received to written to a /api/v1/stream client (sse)")
        yield GaugeMetricFamily(
            "pacesetter_readmodel_ready",
            "1 once this API's read model has caught up with the topics",
            value=1.0 if self.model.readiness().ready else 0.0)

    def _alerts(self, states: list[dict[str, Any]]) -> Iterator[Metric]:
        family = GaugeMetricFamily("pacesetter_alerts_firing", "Alerts firing now, by rule",
                                   labels=["room", "rule"])
        episodes = GaugeMetricFamily(
            "pacesetter_alerts_firing_episodes",
            "Alerts firing now, by rule, severity and whether a supervisor acknowledged them",
            labels=["room", "rule", "severity", "acknowledged"])
        firing: dict[tuple[str, str], int] = {}
        by_ack: dict[tuple[str, str, str, str], int] = {}
        rooms = {str(s.get("room")) for s in states}
        for alert in self.model.alerts(state="firing"):
            room, rule = str(alert.get("room")), str(alert.get("rule"))
            rooms.add(room)
            firing[(room, rule)] = firing.get((room, rule), 0) + 1
            key = (room, rule, str(alert.get("severity") or "warning"),
                   "true" if alert.get("acknowledged_at") else "false")
            by_ack[key] = by_ack.get(key, 0) + 1
        for room in sorted(rooms):
            for rule in ALERT_RULES:
                firing.setdefault((room, rule), 0)
        for (room, rule), n in sorted(firing.items()):
            family.add_metric([room, rule], float(n))
        for labels, n in sorted(by_ack.items()):
            episodes.add_metric(list(labels), float(n))
        yield family
        yield episodes


def build_registry(model: ReadModel) -> CollectorRegistry:
    """A registry of Pacesetter's metrics (and this process's own) for one app."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadModelCollector(model))
    ProcessCollector(registry=registry)
    return registry
