"""The control-room simulator: contract, consistency, shape of demand and performance, live mode."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.contract.events import PHONE_RE, decode_message, parse_event
from services.simulation.simulator import SimulationError, simulate_events, stream_live, write_jsonl

LONDON = ZoneInfo("Europe/London")
SEEDS = (1, 2, 3)
START = datetime(2026, 11, 2, tzinfo=UTC)  # the default start: Monday, local midnight (GMT)
DAYS = 2
ROOMS = 2


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["at"])


@dataclass
class Call:
    room: str
    id: str
    line: str
    offered: datetime
    caller: str | None
    reason: str | None
    exit: str | None = None
    exit_at: datetime | None = None
    outcome: str | None = None
    ended_at: datetime | None = None
    attempts: list[bool] = field(default_factory=list)
    failure_demand: bool = False
    previous: Call | None = None

    @property
    def wait(self) -> float:
        assert self.exit_at is not None
        return (self.exit_at - self.offered).total_seconds()

    @property
    def local_hour(self) -> int:
        return self.offered.astimezone(LONDON).hour


def calls_of(events: list[dict[str, Any]]) -> list[Call]:
    """Calls with their exits, ends, callback attempts and failure demand (METRICS.md)."""
    calls: dict[tuple[str, str], Call] = {}
    latest: dict[tuple[str, str], Call] = {}
    for event in events:
        kind = event["type"]
        if kind == "call.offered":
            call = Call(event["room"], event["call"], event["line"], at(event),
                        event.get("caller"), event.get("reason"))
            calls[(call.room, call.id)] = call
            call.failure_demand = call.reason == "progress_chase"
            if call.caller is not None:
                previous = latest.get((call.room, call.caller))
                if previous is not None and call.offered - previous.offered <= timedelta(days=7):
                    call.previous = previous
                    if previous.exit == "abandoned" and previous.exit_at < call.offered:
                        call.failure_demand = True
                    if previous.outcome == "unresolved" and previous.ended_at < call.offered:
                        call.failure_demand = True
                latest[(call.room, call.caller)] = call
        elif kind in ("call.answered", "call.abandoned", "call.callback_requested"):
            call = calls[(event["room"], event["call"])]
            call.exit, call.exit_at = kind.split(".")[1], at(event)
        elif kind == "call.ended":
            call = calls[(event["room"], event["call"])]
            call.outcome, call.ended_at = event.get("outcome"), at(event)
        elif kind == "callback.attempted":
            calls[(event["room"], event["call"])].attempts.append(event["success"])
    return list(calls.values())


def service_level_999(calls: list[Call]) -> float:
    answered = [c for c in calls if c.line == "999" and c.exit == "answered"]
    return sum(c.wait < 10 for c in answered) / len(answered)


def abandonment_101(calls: list[Call]) -> float:
    offered = [c for c in calls if c.line == "101"]
    return sum(c.exit == "abandoned" for c in offered) / len(offered)


@pytest.fixture(scope="module")
def runs() -> dict[int, list[dict[str, Any]]]:
    """Two rooms for two days (Monday and Tuesday) per seed."""
    return {seed: list(simulate_events(rooms=ROOMS, days=DAYS, seed=seed)) for seed in SEEDS}


@pytest.fixture(scope="module")
def run_calls(runs: dict[int, list[dict[str, Any]]]) -> dict[int, list[Call]]:
    return {seed: calls_of(events) for seed, events in runs.items()}


@pytest.fixture(scope="module")
def weeks() -> dict[int, list[dict[str, Any]]]:
    """One room for a week (Monday to Sunday) per seed, call offers only."""
    weeks = {seed: simulate_events(rooms=1, days=7, seed=seed) for seed in SEEDS}
    return {seed: [e for e in events if e["type"] == "call.offered"]
            for seed, events in weeks.items()}


# -- the contract and consistency -----------------------------------------------------------


def test_every_event_passes_the_contract_in_canonical_form(runs):
    for events in runs.values():
        for event in events:
            line = orjson.dumps(event)
            # Parsed and serialised again gives the same bytes: fields in contract order.
            assert parse_event(orjson.loads(line)).to_json() == line


def test_events_are_in_time_order_within_the_window_with_unique_ids(runs):
    end = START + timedelta(days=DAYS)
    for events in runs.values():
        times = [at(e) for e in events]
        assert times == sorted(times)
        assert START <= times[0] < START + timedelta(minutes=1)
        assert times[-1] < end
        ids = Counter((e["room"], e["id"]) for e in events)
        assert max(ids.values()) == 1
        assert {e["room"] for e in events} == {"north", "south"}
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["at"]) for e in events)


def test_every_call_and_incident_follows_its_lifecycle(runs):
    for events in runs.values():
        offered: dict[tuple[str, str], datetime] = {}
        exits: dict[tuple[str, str], tuple[str, datetime]] = {}
        ended: set[tuple[str, str]] = set()
        attempts: Counter[tuple[str, str]] = Counter()
        incidents: dict[tuple[str, str], list[str]] = {}
        for event in events:
            kind, room = event["type"], event["room"]
            if kind == "call.offered":
                assert (room, event["call"]) not in offered
                offered[(room, event["call"])] = at(event)
            elif kind.startswith("call.") or kind == "callback.attempted":
                key = (room, event["call"])
                assert key in offered, f"{kind} of a call never offered: {event}"
                if kind in ("call.answered", "call.abandoned", "call.callback_requested"):
                    assert key not in exits, "a call leaves the queue exactly once"
                    assert at(event) >= offered[key]
                    exits[key] = (kind, at(event))
                elif kind == "call.ended":
                    assert exits[key][0] == "call.answered" and at(event) >= exits[key][1]
                    assert key not in ended
                    ended.add(key)
                else:
                    assert exits[key][0] == "call.callback_requested"
                    attempts[key] += 1
            elif kind == "incident.created":
                key = (room, event["incident"])
                assert key not in incidents
                assert exits[(room, event["call"])][0] in ("call.answered",
                                                           "call.callback_requested")
                incidents[key] = ["created"]
            elif kind.startswith("incident."):
                steps = incidents[(room, event["incident"])]
                steps.append(kind.split(".")[1])
        assert max(attempts.values()) <= 2
        allowed = (["created"], ["created", "dispatched"], ["created", "dispatched", "arrived"],
                   ["created", "dispatched", "arrived", "closed"], ["created", "closed"])
        assert all(steps in allowed for steps in incidents.values())


def test_handlers_log_in_take_calls_take_breaks_and_log_out(runs):
    events = runs[SEEDS[0]]
    snapshot = [e for e in events if e["at"] == "2026-11-02T00:00:00.000Z"
                and e["type"] == "handler.state"]
    assert {e["room"] for e in snapshot} == {"north", "south"}
    assert len(snapshot) >= 10, "handlers already on shift when the output starts"
    state: dict[tuple[str, str], str] = {}
    answered_by: dict[tuple[str, str], str] = {}
    for event in events:
        if event["type"] == "call.answered":
            answered_by[(event["room"], event["handler"])] = event["at"]
        elif event["type"] == "handler.state":
            key = (event["room"], event["handler"])
            assert state.get(key) != event["state"], "a state event is a change of state"
            if key in answered_by:
                assert event["state"] == "on_call" and event["at"] == answered_by.pop(key)
            state[key] = event["state"]
    states = Counter(e["state"] for e in events if e["type"] == "handler.state")
    assert set(states) == {"available", "on_call", "wrap_up", "unavailable", "logged_out"}
    assert not answered_by


def test_callers_are_pseudonymous_keys_and_some_are_withheld(run_calls):
    for calls in run_calls.values():
        keys = [c.caller for c in calls if c.caller is not None]
        assert all(re.fullmatch(r"k:[0-9a-f]{16}", k) and not PHONE_RE.match(k) for k in keys)
        withheld = 1 - len(keys) / len(calls)
        assert 0.01 <= withheld <= 0.06
        repeat = sum(c.previous is not None for c in calls) / len(calls)
        assert 0.05 <= repeat <= 0.4


# -- volumes and the shape of demand --------------------------------------------------------


def test_volumes_per_room_and_day_are_a_medium_force(weeks):
    for offers in weeks.values():
        per_day = Counter(e["line"] for e in offers)
        assert 600 <= per_day["999"] / 7 <= 800
        assert 1300 <= per_day["101"] / 7 <= 1700
        assert 240 <= per_day["online"] / 7 <= 360


def test_scale_multiplies_demand():
    def count(scale: float) -> int:
        return sum(e["type"] == "call.offered"
                   for e in simulate_events(rooms=1, days=1, seed=4, scale=scale))

    assert 0.4 <= count(0.5) / count(1.0) <= 0.6


def quietest_block(events: list[dict[str, Any]]) -> int:
    """Local start hour of the aligned two-hour block with the fewest calls offered."""
    blocks = Counter(dict.fromkeys(range(0, 24, 2), 0))
    for event in events:
        if event["type"] == "call.offered":
            blocks[at(event).astimezone(LONDON).hour // 2 * 2] += 1
    return min(blocks, key=lambda hour: blocks[hour])


def test_quietest_two_hours_are_four_to_six_in_the_morning(runs):
    for events in runs.values():
        assert quietest_block(events) == 4


def test_quiet_period_moves_with_british_summer_time():
    events = list(simulate_events(rooms=2, days=2, start=date(2026, 7, 6), seed=2))
    assert events[0]["at"].startswith("2026-07-05T23:00")  # local midnight is 23:00 UTC
    assert quietest_block(events) == 4


def evening_offers(offers: list[dict[str, Any]], weekday: int) -> int:
    count = 0
    for event in offers:
        local = at(event).astimezone(LONDON)
        count += local.weekday() == weekday and local.hour >= 19
    return count


def test_friday_and_saturday_evenings_are_busier_than_tuesday(weeks):
    for offers in weeks.values():
        tuesday = evening_offers(offers, 1)
        assert evening_offers(offers, 4) > 1.05 * tuesday
        assert evening_offers(offers, 5) > 1.05 * tuesday


def test_days_have_a_rise_and_an_evening_peak(runs):
    for events in runs.values():
        hours = Counter(at(e).astimezone(LONDON).hour for e in events
                        if e["type"] == "call.offered")
        night, morning = sum(hours[h] for h in range(2, 6)), sum(hours[h] for h in range(8, 12))
        evening = sum(hours[h] for h in range(16, 20))
        assert night * 2.5 < morning < evening


def count_999(day: date, evening_only: bool = False) -> int:
    events = simulate_events(rooms=4, days=1, start=day, seed=7)
    return sum(e["type"] == "call.offered" and e["line"] == "999"
               and (not evening_only or at(e).astimezone(LONDON).hour >= 19) for e in events)


def test_bank_holidays_and_new_years_eve_are_busier():
    # Monday 28 December 2026 is the Boxing Day bank holiday; a week earlier is a normal Monday.
    assert count_999(date(2026, 12, 28)) > 1.05 * count_999(date(2026, 12, 21))
    assert count_999(date(2026, 12, 31), True) > 1.4 * count_999(date(2026, 12, 30), True)


def test_surges_bring_many_999_calls_within_minutes(runs):
    for events in runs.values():
        buckets = Counter((e["room"], at(e).replace(minute=at(e).minute // 10 * 10, second=0,
                                                     microsecond=0))
                          for e in events if e["type"] == "call.offered" and e["line"] == "999")
        mean = sum(buckets.values()) / (ROOMS * DAYS * 144)
        assert max(buckets.values()) >= 3 * mean


# -- performance with the default staffing --------------------------------------------------


def test_999_answered_within_ten_seconds_is_realistic(run_calls):
    for calls in run_calls.values():
        assert 0.70 <= service_level_999(calls) <= 0.92


def test_101_abandonment_is_realistic(run_calls):
    for calls in run_calls.values():
        assert 0.03 <= abandonment_101(calls) <= 0.15


def test_performance_is_worst_in_the_evening_peak(run_calls):
    for calls in run_calls.values():
        evening = [c for c in calls if 17 <= c.local_hour < 22]
        night = [c for c in calls if c.local_hour < 7]
        assert abandonment_101(evening) > abandonment_101(calls) > abandonment_101(night)
        assert service_level_999(evening) < service_level_999(calls) < service_level_999(night)


def test_101_failure_demand_is_fifteen_to_twenty_five_percent(run_calls):
    for calls in run_calls.values():
        calls_101 = [c for c in calls if c.line == "101"]
        rate = sum(c.failure_demand for c in calls_101) / len(calls_101)
        assert 0.15 <= rate <= 0.25
        assert any(c.reason == "progress_chase" for c in calls_101)


def test_some_101_abandoners_ring_999_instead(run_calls):
    for calls in run_calls.values():
        switched = [c for c in calls if c.line == "999" and c.previous is not None
                    and c.previous.line == "101" and c.previous.exit == "abandoned"]
        assert len(switched) >= 5


def test_an_eighth_of_101_callers_take_a_callback_mostly_when_the_queue_is_long(run_calls):
    reached = attempted = asked = offered = 0
    for calls in run_calls.values():
        calls_101 = [c for c in calls if c.line == "101"]
        requested = [c for c in calls_101 if c.exit == "callback_requested"]
        assert 0.08 <= len(requested) / len(calls_101) <= 0.17  # queues differ by seed
        asked += len(requested)
        offered += len(calls_101)
        assert {c.line for c in calls if c.exit == "callback_requested"} == {"101"}
        # Concentrated when the queue is long: the evening peak, not the night.
        def rate(selected):
            return sum(c.exit == "callback_requested" for c in selected) / len(selected)
        evening = [c for c in calls_101 if 17 <= c.local_hour < 22]
        night = [c for c in calls_101 if c.local_hour < 7]
        assert rate(evening) > 2 * rate(night)
        # Finished callbacks: reached, or both attempts failed.
        done = [c for c in requested if any(c.attempts) or len(c.attempts) == 2]
        reached += sum(any(c.attempts) for c in done)
        attempted += len(done)
    # One force reported 12.5 % of 101 callers using its callback system.
    assert 0.11 <= asked / offered <= 0.145
    assert attempted >= 500
    assert 0.94 <= reached / attempted <= 0.98  # about 96 %: two attempts at 80 % each


def test_callback_acceptance_grows_with_the_expected_wait():
    from services.simulation.simulator import CALLBACK_OFFER_WAIT_SECONDS, callback_acceptance

    assert callback_acceptance(CALLBACK_OFFER_WAIT_SECONDS) == 0.0
    shares = [callback_acceptance(w) for w in (30.0, 60.0, 120.0, 240.0, 3600.0)]
    assert shares == sorted(shares) and 0 < shares[0] < shares[-1] <= 0.9


def _dispatch_delays(events: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    created = {}
    delays = []
    for e in events:
        if e["type"] == "incident.created":
            created[(e["room"], e["incident"])] = e
        elif e["type"] == "incident.dispatched" and (e["room"], e["incident"]) in created:
            c = created[(e["room"], e["incident"])]
            delays.append((c["grade"], c["area"], (at(e) - at(c)).total_seconds()))
    return delays


def test_most_urgent_incidents_are_dispatched_within_target_and_late_ones_are_exceptions(runs):
    from services.figures.kpis import attendance_target_us

    late = Counter()
    total = Counter()
    for events in runs.values():
        for grade, area, delay in _dispatch_delays(events):
            target = attendance_target_us(grade, area)
            if grade in ("immediate", "priority") and target is not None:
                total[grade] += 1
                late[grade] += delay > target / 1e6
    assert late["immediate"] / total["immediate"] <= 0.02
    assert late["priority"] / total["priority"] <= 0.05
    assert late["priority"] >= 1  # real exceptions still happen: the alert has work to do


def test_the_simulators_dispatch_targets_are_the_figures_targets():
    from services.figures.kpis import TARGETS
    from services.simulation.simulator import DISPATCH_TARGET_SECONDS

    for grade, targets in DISPATCH_TARGET_SECONDS.items():
        assert targets == TARGETS[grade]


def test_incidents_have_every_grade_and_999_brings_the_urgent_ones(runs):
    for events in runs.values():
        line_of = {(e["room"], e["call"]): e["line"] for e in events if e["type"] == "call.offered"}
        created = [e for e in events if e["type"] == "incident.created"]
        grades = Counter(e["grade"] for e in created)
        assert set(grades) == {"immediate", "priority", "scheduled", "resolution"}
        assert 0.15 <= grades["immediate"] / len(created) <= 0.45
        by_line: dict[str, Counter[str]] = defaultdict(Counter)
        for e in created:
            by_line[line_of[(e["room"], e["call"])]][e["grade"]] += 1
        share = {line: c["immediate"] / c.total() for line, c in by_line.items()}
        assert share["999"] > 5 * share["101"]
        areas = Counter(e["area"] for e in created)
        assert 0.15 <= areas["rural"] / len(created) <= 0.45


def test_rural_travel_is_longer_and_dispatch_slows_when_busy(runs):
    travel: dict[str, list[float]] = defaultdict(list)
    delays: list[tuple[int, float]] = []
    for events in runs.values():
        info: dict[tuple[str, str], dict[str, Any]] = {}
        open_urgent: Counter[str] = Counter()
        for e in events:
            kind = e["type"]
            if not kind.startswith("incident."):
                continue
            key = (e["room"], e["incident"])
            if kind == "incident.created":
                info[key] = {"grade": e["grade"], "area": e["area"], "created": at(e),
                             "busy": open_urgent[e["room"]]}
                if e["grade"] in ("immediate", "priority"):
                    open_urgent[e["room"]] += 1
            elif key not in info:
                continue
            elif kind == "incident.dispatched":
                info[key]["dispatched"] = at(e)
                if info[key]["grade"] == "priority":
                    delay = (at(e) - info[key]["created"]).total_seconds()
                    delays.append((info[key]["busy"], delay))
            elif kind == "incident.arrived" and info[key]["grade"] == "immediate":
                travel[info[key]["area"]].append((at(e) - info[key]["dispatched"]).total_seconds())
            elif kind == "incident.closed" and info[key]["grade"] in ("immediate", "priority"):
                open_urgent[e["room"]] -= 1
    assert sum(travel["rural"]) / len(travel["rural"]) > 1.3 * (
        sum(travel["urban"]) / len(travel["urban"]))
    delays.sort()
    half = len(delays) // 2
    quiet = sorted(d for _, d in delays[:half])[half // 2]
    busy = sorted(d for _, d in delays[half:])[half // 2]
    assert busy > quiet


def test_more_staff_answer_faster_with_the_same_demand():
    def figures(staffing: float) -> tuple[float, float, int]:
        events = list(simulate_events(rooms=1, days=1, seed=11, staffing=staffing))
        calls = calls_of(events)
        return service_level_999(calls), abandonment_101(calls), len(calls)

    short, generous = figures(0.8), figures(1.3)
    assert generous[0] > short[0] and generous[1] < short[1]
    assert generous[2] < short[2]  # fewer callers had to ring again


# -- determinism, arguments and the command line --------------------------------------------


def test_same_arguments_give_identical_bytes_and_another_seed_differs(tmp_path: Path):
    paths = [tmp_path / name for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    counts = [write_jsonl(paths[0], rooms=3, days=0.5, seed=9),
              write_jsonl(paths[1], rooms=3, days=0.5, seed=9),
              write_jsonl(paths[2], rooms=3, days=0.5, seed=10)]
    assert counts[0] == counts[1] == len(paths[0].read_bytes().splitlines()) > 1000
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_a_longer_run_starts_with_the_shorter_one():
    short = list(simulate_events(rooms=2, days=0.25, seed=5))
    longer = list(simulate_events(rooms=2, days=0.5, seed=5))
    assert longer[: len(short)] == short and len(longer) > len(short)


def test_rooms_are_named_and_independent_of_how_many_run():
    three = list(simulate_events(rooms=5, days=0.05, seed=3))
    assert list(dict.fromkeys(e["room"] for e in three)) == [
        "north", "south", "east", "west", "room-5"]
    north = list(simulate_events(rooms=1, days=0.05, seed=3))
    assert [e for e in three if e["room"] == "north"] == north


def test_a_start_time_is_respected_and_the_first_hour_is_busy():
    start = datetime(2026, 11, 4, 9, 30, tzinfo=UTC)
    events = list(simulate_events(rooms=1, days=1 / 24, start=start, seed=6))
    assert at(events[0]) == start
    assert all(start <= at(e) < start + timedelta(hours=1) for e in events)
    offered = sum(e["type"] == "call.offered" for e in events)
    answered = sum(e["type"] == "call.answered" for e in events)
    assert offered > 60 and answered > 0.8 * offered


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rooms": 0}, "rooms"),
    ({"days": 0}, "days"),
    ({"scale": -1}, "scale"),
    ({"start": datetime(2026, 11, 2)}, "time zone"),  # noqa: DTZ001 - a naive time on purpose
])
def test_bad_arguments_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(SimulationError, match=message):
        simulate_events(**kwargs)


def test_simulate_command_writes_a_file_that_validates(tmp_path: Path, capsys):
    from pacesetter.cli import main

    out = tmp_path / "sim.jsonl"
    assert main(["simulate", "--rooms", "2", "--days", "0.5", "--seed", "4", "--start",
                 "2026-12-24", "--out", str(out)]) == 0
    assert "events written" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    assert " 0 invalid" in capsys.readouterr().out
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["at"] == "2026-12-24T00:00:00.000Z"


def test_simulate_command_writes_to_standard_output(capsysbinary):
    from pacesetter.cli import main

    assert main(["simulate", "--rooms", "1", "--days", "0.02", "--out", "-"]) == 0
    captured = capsysbinary.readouterr()
    lines = captured.out.splitlines()
    assert lines and all(parse_event(orjson.loads(line)) for line in lines)
    assert b"events written" in captured.err


def test_simulate_command_refuses_mixed_file_and_live_flags(capsys):
    from pacesetter.cli import main

    assert main(["simulate", "--out", "x.jsonl", "--speed", "5"]) == 2
    assert main(["simulate", "--bootstrap", "127.0.0.1:1", "--days", "2"]) == 2
    err = capsys.readouterr().err
    assert "--speed applies to --bootstrap" in err and "--days applies to --out" in err


# -- live mode on the embedded broker -------------------------------------------------------


async def consume_all(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, Any]]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        out: list[tuple[bytes, dict[str, Any]]] = []
        # The broker's end offsets can lag a batch behind: read until it goes quiet instead.
        while batches := await consumer.getmany(timeout_ms=2000):
            for messages in batches.values():
                for message in messages:
                    out.extend((message.key, event) for event in decode_message(message.value))
        return out
    finally:
        await consumer.stop()


def test_live_mode_publishes_history_then_events_around_now(bootstrap: str):
    from services.kafka.broker import ensure_topics

    topic = f"test.simulator.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], partitions=2)
    stop = threading.Event()
    result: dict[str, int] = {}

    def run() -> None:
        result["acked"] = stream_live(bootstrap, topic, rooms=2, seed=5, speed=60,
                                      backfill_hours=1, stop=stop)

    began = time.time()
    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(3)
    stop.set()
    thread.join(30)
    ended = time.time()
    assert not thread.is_alive()

    received = asyncio.run(consume_all(bootstrap, topic))
    assert len(received) == result["acked"] > 300
    times = []
    last: dict[str, datetime] = {}
    for key, raw in received:
        event = parse_event(raw, now_us=int(time.time() * 1e6))
        assert key == event.room.encode()
        assert event.at >= last.get(event.room, event.at), "a room's events stay in order"
        last[event.room] = event.at
        times.append(event.at.timestamp())
    # An hour of history ending when the run began, then live events paced 60x real time.
    assert began - 3600 - 5 <= min(times) <= began - 3000
    assert any(t > began for t in times)
    assert max(times) <= began + 60 * (ended - began) + 5


def test_a_rooms_region_sets_its_public_holidays(monkeypatch):
    # Monday 31 August 2026 is a bank holiday in England and Wales, not in Scotland.
    from services.simulation import simulator

    def offered_999(regions: str) -> int:
        monkeypatch.setenv("PACESETTER_ROOM_REGIONS", regions)
        simulator._room_regions.cache_clear()
        try:
            return sum(e["type"] == "call.offered" and e["line"] == "999"
                       for e in simulate_events(rooms=1, days=1, start=date(2026, 8, 31), seed=6))
        finally:
            simulator._room_regions.cache_clear()

    england, scotland = offered_999("north:GB-ENG"), offered_999("north:GB-SCT")
    # Same random numbers, so the holiday's lift (999: ×1.15) shows without noise.
    assert england > scotland * 1.05
