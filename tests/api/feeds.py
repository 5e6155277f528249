"""Test helpers: TOPICS.md messages published to the session broker, and a threaded server."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn

from services.contract.settings import Settings
from services.kafka.broker import free_port

BASE = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TOKENS = "viewer:viewer-token-1,scheduler:scheduler-token-1,admin:admin-token-1"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def interval_record(room: str, line: str, start: datetime, offered: int = 41,
                    final: bool = True, **over: Any) -> dict[str, Any]:
    """An interval record of API.md (figures consistent enough for a dashboard)."""
    answered = max(0, offered - 2)
    within = int(answered * 0.85)
    record = {
        "room": room, "line": line, "interval_start": iso(start),
        "interval_end": iso(start + timedelta(minutes=15)), "final": final,
        "definitions_version": 1, "threshold_seconds": 10 if line == "999" else 60,
        "short_abandon_seconds": 5, "offered": offered, "answered": answered,
        "abandoned": offered - answered, "short_abandoned": 1, "callbacks_requested": 0,
        "in_queue": 0, "orphaned": 0, "answered_within_threshold": within,
        "abandoned_within_threshold": 1,
        "service_level": {"answered": within / answered if answered else None,
                          "offered": within / max(1, answered + 1),
                          "excl_early_abandons": within / max(1, answered + 1)},
        "abandonment_rate": 0.025, "asa_seconds": 6.1, "answer_wait_p50_seconds": 4.2,
        "answer_wait_p90_seconds": 14.8, "max_wait_seconds": 71.0,
        "answer_bands": {"under_10s": within, "from_10s_to_60s": answered - within,
                         "60s_and_over": 0},
        "aht_seconds": 312.4, "callback_successes": 0, "callback_success_rate": None,
        "repeat_contacts": 3, "failure_demand": 1, "failure_demand_rate": 0.024,
    }
    record.update(over)
    return record


def attendance_record(room: str, grade: str, start: datetime, created: int = 3) -> dict[str, Any]:
    return {"room": room, "grade": grade, "interval_start": iso(start),
            "interval_end": iso(start + timedelta(minutes=15)), "final": False,
            "created": created, "dispatched": created, "arrived": 2,
            "attend_from_call_mean_seconds": 842.5, "attend_from_call_p90_seconds": 1010.0,
            "attend_from_dispatch_mean_seconds": 610.0, "attend_from_dispatch_p90_seconds": 700.0,
            "within_target_from_call": 1, "within_target_from_dispatch": 2}


def handler_record(room: str, start: datetime) -> dict[str, Any]:
    return {"room": room, "interval_start": iso(start),
            "interval_end": iso(start + timedelta(minutes=15)), "final": False,
            "seconds": {"available": 1800.0, "on_call": 5400.0, "wrap_up": 900.0,
                        "unavailable": 600.0, "logged_out": 0.0}, "occupancy": 0.75}


def alert(room: str, rule: str, line: str, started: datetime, state: str = "firing",
          value: float = 75.0, threshold: float = 60.0, message: str | None = None,
          ) -> dict[str, Any]:
    return {"id": f"{room}:{rule}:{line}:{iso(started)}", "rule": rule, "room": room,
            "line": line, "incident": None, "severity": "critical", "state": state,
            "started_at": iso(started),
            "resolved_at": iso(started + timedelta(minutes=3)) if state == "resolved" else None,
            "value": value, "threshold": threshold,
            "message": message or f"{line}: a caller has waited 1 min 15 s (limit 1 min)"}


def live_state(room: str, now: datetime, in_queue: int = 2, longest: float = 14.2,
               offered_total: int = 1234, alerts: list[dict[str, Any]] | None = None,
               interval: dict[str, Any] | None = None) -> dict[str, Any]:
    """A live state of TOPICS.md with lines 999 and 101."""
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    lines = {}
    totals = {}
    for line, scale in (("999", 1.0), ("101", 0.5)):
        offered = int(offered_total * scale)
        answered = offered - 34
        lines[line] = {
            "in_queue": in_queue if line == "999" else 1,
            "longest_wait_seconds": longest if line == "999" else 40.0,
            "interval": interval if interval is not None and line == "999" else
            interval_record(room, line, start, offered=12, final=False),
            "rolling_60m": {"offered": 40, "abandoned": 3, "short_abandoned": 1,
                            "abandonment_rate": 0.0513},
            "rolling_24h": {"offered": 900, "failure_demand": 120, "failure_demand_rate": 0.1333},
            "staffing": {"required_handlers": 9, "forecast_calls": 31.0,
                         "forecast_calls_upper": 38.0} if line == "999" else None,
        }
        totals[line] = {
            "offered": offered, "answered": answered, "abandoned": 30, "callbacks_requested": 4,
            "answer_wait_buckets": {"1": 500, "5": 900, "10": 1000, "20": 1100, "30": 1150,
                                    "60": 1190, "120": 1198, "300": answered, "600": answered,
                                    "+Inf": answered},
            "answer_wait_sum_seconds": 7000.5, "answer_wait_count": answered,
        }
    return {
        "room": room, "now": iso(now), "mode": "live", "watermark": iso(now - timedelta(seconds=2)),
        "lines": lines,
        "handlers": {"available": 4, "on_call": 6, "wrap_up": 1, "unavailable": 2,
                     "logged_out": 0},
        "incidents_awaiting_dispatch": {"immediate": {"count": 1, "oldest_age_seconds": 312.0},
                                        "priority": {"count": 3, "oldest_age_seconds": 1500.0}},
        "alerts": alerts or [],
        "totals": {"lines": totals,
                   "events": {"call.offered": offered_total, "call.answered": 1100},
                   "rejected": {"duplicate": 3, "too_late": 1}},
        "lag_seconds": 0.8,
    }


class Feed:
    """Publishes TOPICS.md messages to one set of topics on the session broker."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        self.settings = settings
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                      linger_ms=5, acks=1)

    def _send(self, topic: str, key: str, value: Any) -> None:
        self.producer.send(topic, key=key.encode(), value=json.dumps(value).encode())

    def interval(self, record: dict[str, Any]) -> None:
        self._send(self.settings.topic_intervals,
                   f"{record['room']}|{record['line']}|{record['interval_start']}",
                   {"kind": "interval", "record": record})

    def attendance(self, record: dict[str, Any]) -> None:
        self._send(self.settings.topic_intervals,
                   f"{record['room']}|grade:{record['grade']}|{record['interval_start']}",
                   {"kind": "attendance", "record": record})

    def handlers(self, record: dict[str, Any]) -> None:
        self._send(self.settings.topic_intervals,
                   f"{record['room']}|handlers|{record['interval_start']}",
                   {"kind": "handlers", "record": record})

    def live(self, state: dict[str, Any]) -> None:
        self._send(self.settings.topic_live, state["room"], state)

    def alert(self, value: dict[str, Any]) -> None:
        self._send(self.settings.topic_alerts, value["id"], value)

    def flush(self) -> None:
        self.producer.flush(10)

    def close(self) -> None:
        self.producer.close(5)


def make_settings(bootstrap: str, **over: Any) -> Settings:
    """Settings with topics of their own (two partitions each, to keep the broker light)."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "partitions": 2,
        "topic_intervals": f"t{tag}.intervals", "topic_live": f"t{tag}.live",
        "topic_alerts": f"t{tag}.alerts", "topic_events": f"t{tag}.events",
        "api_tokens": "",
    }
    values.update(over)
    return Settings(**values)


def make_topics(settings: Settings) -> None:
    from services.kafka.broker import ensure_topics

    ensure_topics(settings.bootstrap_servers,
                  [settings.topic_intervals, settings.topic_live, settings.topic_alerts],
                  settings.partitions)


def seed(feed: Feed) -> None:
    """A day of two rooms: north (999, 101) and south (999), with records, alerts and live."""
    for i in range(96):
        start = BASE - timedelta(hours=24) + timedelta(minutes=15 * i)
        feed.interval(interval_record("north", "999", start, offered=20 + i % 7))
        feed.interval(interval_record("north", "101", start, offered=30 + i % 5))
        if i % 4 == 0:
            feed.interval(interval_record("south", "999", start, offered=5))
            feed.attendance(attendance_record("north", "immediate", start))
            feed.attendance(attendance_record("north", "priority", start, created=1))
            feed.handlers(handler_record("north", start))
    # An update of the same key: the later message wins.
    feed.interval(interval_record("north", "999", BASE - timedelta(hours=1), offered=99))
    feed.alert(alert("north", "long_wait", "999", BASE - timedelta(minutes=50)))
    feed.alert(alert("north", "long_wait", "999", BASE - timedelta(minutes=50), state="resolved"))
    feed.alert(alert("north", "service_level_below_target", "999", BASE - timedelta(minutes=10),
                     value=0.8, threshold=0.9,
                     message="999: 80 % answered within 10 s this interval (target 90 %)"))
    feed.alert(alert("south", "long_wait", "999", BASE - timedelta(minutes=5)))
    feed.live(live_state("north", BASE))
    feed.live(live_state("south", BASE, in_queue=0, longest=0.0, offered_total=100))
    feed.flush()


class Server:
    """uvicorn serving an app on a free loopback port, on a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                   log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def changed(settings: Settings, **over: Any) -> Settings:
    """A validated copy of settings with some values changed."""
    return Settings(**{**settings.model_dump(), **over})
