"""A deterministic discrete-event simulation of UK police control rooms, emitting events."""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import random
import sys
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import orjson

from services.contract.errors import PacesetterError
from services.planning.calendar import DEFAULT_REGION, is_bank_holiday, parse_room_regions
from services.planning.erlang import required_handlers

log = logging.getLogger(__name__)

LONDON = ZoneInfo("Europe/London")
DEFAULT_START = date(2026, 11, 2)  # a Monday: reproducible files without naming a date
ROOM_NAMES = ("north", "south", "east", "west")
LINES = ("999", "101", "online")
HOUR = 3600.0
DAY = 86400.0
# Simulated before the requested start and dropped, so the first hour has queues, handlers on
# shift and callers ringing back instead of an empty room filling up.
WARM_UP_SECONDS = 8 * HOUR


class SimulationError(PacesetterError):
    """Arguments the simulator cannot work with, or a live run that cannot go on."""


@dataclass(frozen=True)
class LineModel:
    """Demand and caller behaviour of one line at scale 1 (a medium force)."""

    name: str
    fresh_calls_per_day: float  # first contacts; re-calls and progress chasing come on top
    shape: tuple[float, ...]  # relative rate at each local HH:00 (interpolated between)
    weekday: tuple[float, ...]  # Monday..Sunday
    party_night: float  # Friday and Saturday nights and bank-holiday eves, 19:00-04:00
    bank_holiday: float
    new_years_eve: float  # 31 December 19:00 to 1 January 05:00
    talk_median_seconds: float
    talk_sigma: float
    wrap_median_seconds: float
    wrap_sigma: float
    patience_median_seconds: float
    patience_sigma: float
    misdial_rate: float  # callers who hang up within seconds whatever the queue
    frequent_rate: float  # share of first contacts from the room's pool of frequent callers
    outcomes: tuple[tuple[str, float], ...]
    grades: tuple[tuple[str, float], ...]

    @property
    def handling_seconds(self) -> float:
        """Mean talk plus wrap-up (lognormal means)."""
        return self.talk_median_seconds * math.exp(self.talk_sigma**2 / 2) + (
            self.wrap_median_seconds * math.exp(self.wrap_sigma**2 / 2)
        )


def _mean_one(values: tuple[float, ...]) -> tuple[float, ...]:
    mean = sum(values) / len(values)
    return tuple(v / mean for v in values)


LINE_MODELS = (
    LineModel(
        name="999",
        fresh_calls_per_day=630.0,
        shape=_mean_one((0.95, 0.84, 0.70, 0.55, 0.38, 0.34, 0.44, 0.60, 0.78, 0.92, 1.00, 1.06,
                         1.10, 1.12, 1.14, 1.20, 1.28, 1.36, 1.40, 1.40, 1.36, 1.30, 1.22, 1.10)),
        weekday=_mean_one((0.97, 0.95, 0.96, 0.98, 1.03, 1.08, 1.03)),
        party_night=1.35,
        bank_holiday=1.15,
        new_years_eve=1.8,
        talk_median_seconds=210.0,
        talk_sigma=0.5,
        wrap_median_seconds=40.0,
        wrap_sigma=0.6,
        patience_median_seconds=180.0,
        patience_sigma=0.9,
        misdial_rate=0.04,
        frequent_rate=0.02,
        outcomes=(("incident", 0.68), ("advice", 0.12), ("resolved", 0.08), ("transferred", 0.06),
                  ("referred", 0.03), ("unresolved", 0.03)),
        grades=(("immediate", 0.45), ("priority", 0.40), ("scheduled", 0.11), ("resolution", 0.04)),
    ),
    LineModel(
        name="101",
        fresh_calls_per_day=1165.0,
        shape=_mean_one((0.55, 0.40, 0.30, 0.23, 0.15, 0.14, 0.27, 0.55, 0.95, 1.25, 1.35, 1.35,
                         1.30, 1.28, 1.30, 1.35, 1.45, 1.55, 1.60, 1.52, 1.38, 1.20, 0.98, 0.75)),
        weekday=_mean_one((1.06, 1.02, 1.00, 1.00, 1.02, 0.95, 0.91)),
        party_night=1.25,
        bank_holiday=1.05,
        new_years_eve=1.3,
        talk_median_seconds=300.0,
        talk_sigma=0.6,
        wrap_median_seconds=50.0,
        wrap_sigma=0.6,
        patience_median_seconds=200.0,
        patience_sigma=1.0,
        misdial_rate=0.01,
        frequent_rate=0.05,
        outcomes=(("resolved", 0.28), ("advice", 0.25), ("incident", 0.18), ("referred", 0.12),
                  ("transferred", 0.05), ("unresolved", 0.12)),
        grades=(("immediate", 0.03), ("priority", 0.27), ("scheduled", 0.45),
                ("resolution", 0.25)),
    ),
    LineModel(
        name="online",
        fresh_calls_per_day=270.0,
        shape=_mean_one((0.60, 0.42, 0.30, 0.22, 0.15, 0.14, 0.25, 0.50, 0.85, 1.10, 1.25, 1.30,
                         1.30, 1.30, 1.30, 1.30, 1.35, 1.40, 1.45, 1.45, 1.40, 1.30, 1.10, 0.85)),
        weekday=_mean_one((1.04, 1.02, 1.00, 1.00, 1.00, 0.97, 0.97)),
        party_night=1.0,
        bank_holiday=1.0,
        new_years_eve=1.1,
        talk_median_seconds=360.0,
        talk_sigma=0.7,
        wrap_median_seconds=80.0,
        wrap_sigma=0.6,
        patience_median_seconds=2400.0,
        patience_sigma=1.0,
        misdial_rate=0.0,
        frequent_rate=0.02,
        outcomes=(("resolved", 0.35), ("advice", 0.25), ("referred", 0.15), ("incident", 0.10),
                  ("unresolved", 0.15)),
        grades=(("priority", 0.10), ("scheduled", 0.50), ("resolution", 0.40)),
    ),
)
_999, _101, _ONLINE = 0, 1, 2
MEAN_HANDLING_SECONDS = sum(m.handling_seconds * m.fresh_calls_per_day for m in LINE_MODELS) / (
    sum(m.fresh_calls_per_day for m in LINE_MODELS))

# Demand that is not a first contact, as a share of first contacts (roughly, as the model
# produces it): used only by the rota planner, which staffs for total demand.
FOLLOW_UP_SHARE = (0.10, 0.20, 0.06)

FREQUENT_OUTCOMES = (("advice", 0.45), ("unresolved", 0.30), ("resolved", 0.20),
                     ("incident", 0.05))
CHASE_OUTCOMES = (("advice", 0.45), ("resolved", 0.35), ("unresolved", 0.15), ("referred", 0.05))
WITHHELD_RATE = 0.03
FREQUENT_CALLERS = 60  # per room at scale 1
URBAN_RATE = 0.72

# Surges: one incident that many people ring about within minutes (a crash, a fire, a fight).
SURGES_PER_DAY = 1.2  # per room at scale 1, following the 999 daily shape
SURGE_MIN_CALLS = 5
SURGE_MEAN_EXTRA_CALLS = 10.0
SURGE_SPREAD_SECONDS = 240.0
SURGE_999_RATE = 0.85

# Callers who ring again.
MAX_FOLLOW_UP_DEPTH = 4
RECALL_AFTER_ABANDON = (0.60, 0.55, 0.40)  # by line of the abandoned call
RECALL_AFTER_MISDIAL = 0.15
SWITCH_101_TO_999 = 0.20  # of 101 abandoners who ring again: the channel switch
RECALL_AFTER_UNRESOLVED = 0.70
CHASE_AFTER_INCIDENT = 0.30  # priority and scheduled incidents: "any news?"
CHASE_AFTER_REFERRED = 0.15
RECALL_AFTER_FAILED_CALLBACK = 0.60

# Callbacks (101 only): the queue message offers one once the expected wait passes a threshold;
# the longer the wait, the more callers take it (virtual hold keeps their queue position). Tuned
# so that about 12.5 % of 101 callers ask for one over a day, the rate one force reported for its
# callback system, almost all of them while the queue is long.
CALLBACK_OFFER_WAIT_SECONDS = 25.0
CALLBACK_ACCEPT_PER_MINUTE = 0.25  # acceptance per minute of expected wait
CALLBACK_ACCEPT_MAX = 0.85
CALLBACK_ATTEMPT_SUCCESS = 0.80  # two attempts: 1 - 0.2^2 = 96 % of callbacks reach the caller
CALLBACK_MAX_ATTEMPTS = 2
CALLBACK_RETRY_SECONDS = 900.0

# Rota: 10-hour shifts from fixed local start times, planned a day ahead with Erlang C from the
# expected demand, smoothed over a few hours and towards the day's mean, so the evening peak is
# short-staffed and nights generous, as in life. The planning targets are calibrated so that the
# default staffing lands in the ranges (999 within 10 s ~80 %, 101 abandonment ~6 %).
SHIFT_STARTS = frozenset({7, 9, 12, 16, 19, 22})
SHIFT_HOURS = 10
REST_SECONDS = 11 * HOUR
# (earliest start after the shift starts, latest, length): supervisors stagger breaks so a shift
# never leaves the floor at once.
BREAKS = ((1.5 * HOUR, 3.5 * HOUR, 15 * 60.0), (4.0 * HOUR, 6.0 * HOUR, 40 * 60.0),
          (6.5 * HOUR, 8.5 * HOUR, 15 * 60.0))
BREAK_SHARE = 70 / 600  # of a 10-hour shift
MAX_ON_BREAK_RATE = 0.15  # of handlers logged in; later breaks wait for the floor to allow
BREAK_RECHECK_SECONDS = 300.0
PLAN_SMOOTHING_HOURS = 3
PLAN_DAILY_WEIGHT = 0.3  # the plan leans towards the day's mean: peaks short, nights generous
PLAN_THRESHOLD_SECONDS = 20.0
PLAN_SERVICE_LEVEL = 0.50
PLAN_MAX_OCCUPANCY = 0.92
PLAN_AHEAD_SECONDS = 36 * HOUR
PLAN_EVERY_SECONDS = 12 * HOUR

# Incidents: response units per room at scale 1; dispatch slows as they run out.
RESPONSE_UNITS = 28.0
DISPATCH_MEDIAN_SECONDS = {"immediate": 60.0, "priority": 600.0, "scheduled": 6 * HOUR}
TRAVEL_MEDIAN_SECONDS = {
    ("immediate", "urban"): 420.0, ("immediate", "rural"): 780.0,
    ("priority", "urban"): 900.0, ("priority", "rural"): 1500.0,
    ("scheduled", "urban"): 1200.0, ("scheduled", "rural"): 1800.0,
}
ON_SCENE_MEDIAN_SECONDS = {"immediate": 3600.0, "priority": 2700.0, "scheduled": 2400.0}
RESOLUTION_CLOSE_MEDIAN_SECONDS = 2 * HOUR
# Dispatchers watch the clock: an urgent incident nearing its target gets the next unit (one is
# taken from lower-priority work) except when none can be had, so late dispatches are the real
# exceptions that the incident_awaiting_beyond_target alert is for. Targets as in
# services/figures/kpis.py TARGETS (urban, rural).
DISPATCH_TARGET_SECONDS = {"immediate": (900.0, 1200.0), "priority": (3600.0, 3600.0)}
DISPATCH_ESCALATED = 0.85  # of incidents that would be late: a unit found in time
DISPATCH_ESCALATION_WINDOW = (0.70, 0.95)  # of the target: when the escalated unit is sent
DISPATCH_LATE_BY = (1.02, 1.40)  # of the target: when the others are dispatched at last

# Simulation event kinds (index into the room's dispatch table).
(_K_SNAPSHOT, _K_ARRIVAL, _K_SURGE, _K_OFFER, _K_ABANDON, _K_CALLBACK_REQUEST, _K_TALK_END,
 _K_WRAP_END, _K_SHIFT_START, _K_SHIFT_END, _K_BREAK_DUE, _K_BREAK_END, _K_INCIDENT_CREATE,
 _K_INCIDENT_DISPATCH, _K_INCIDENT_ARRIVE, _K_INCIDENT_CLOSE, _K_CALLBACK_RETRY,
 _K_PLAN) = range(18)

# Call states.
_QUEUED, _ANSWERED, _ABANDONED, _CALLBACK, _CALLBACK_TALK, _CALLBACK_FAILED, _DONE = range(7)
# Handler states, named as in the contract.
_OFF, _AVAILABLE, _ON_CALL, _WRAP, _BREAK = range(5)
_STATE_NAMES = ("logged_out", "available", "on_call", "wrap_up", "unavailable")
_WORKING = (False, True, True, True, False)


def callback_acceptance(expected_wait_seconds: float) -> float:
    """Share of queued 101 callers who accept a callback when told the expected wait."""
    if expected_wait_seconds <= CALLBACK_OFFER_WAIT_SECONDS:
        return 0.0
    return min(CALLBACK_ACCEPT_MAX, CALLBACK_ACCEPT_PER_MINUTE * expected_wait_seconds / 60.0)


def _cumulative(pairs: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], list[float]]:
    names = tuple(name for name, _ in pairs)
    total = sum(weight for _, weight in pairs)
    cum, running = [], 0.0
    for _, weight in pairs:
        running += weight / total
        cum.append(running)
    cum[-1] = 1.0
    return names, cum


_OUTCOMES = [_cumulative(m.outcomes) for m in LINE_MODELS]
_GRADES = [_cumulative(m.grades) for m in LINE_MODELS]
_FREQUENT_OUTCOMES = _cumulative(FREQUENT_OUTCOMES)
_CHASE_OUTCOMES = _cumulative(CHASE_OUTCOMES)


def _pick(table: tuple[tuple[str, ...], list[float]], u: float) -> str:
    names, cum = table
    return names[min(bisect_right(cum, u), len(names) - 1)]


def _derive(seed: int | str, label: str) -> int:
    """A 64-bit seed derived from a parent seed and a label (stable across runs and versions)."""
    digest = hashlib.blake2b(f"{seed}:{label}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def room_name(index: int) -> str:
    """The room name at ``index``: north, south, east, west, then room-5, room-6 and so on."""
    return ROOM_NAMES[index] if index < len(ROOM_NAMES) else f"room-{index + 1}"


@lru_cache(maxsize=1)
def _room_regions() -> dict[str, str]:
    """Rooms' regions (``PACESETTER_ROOM_REGIONS``): whose public holidays shape their demand."""
    from services.contract.settings import load_settings

    return parse_room_regions(load_settings().room_regions)


@lru_cache(maxsize=1 << 17)
def _hour_rates(hour: int, region: str = DEFAULT_REGION) -> tuple[tuple[float, float, float], ...]:
    """Per line, ``(a, b, ceiling)`` of the unit rate ``a + b * fraction`` within a UTC hour.

    Public holidays are the room's region's (the forecasts use the same calendar).

    The daily shape is in Europe/London local time, so the quiet early morning moves with BST;
    factors change only at hour boundaries, so each hour's ceiling bounds thinning exactly.
    """
    local = datetime.fromtimestamp(hour * HOUR, LONDON)
    hour_of_day, day, weekday = local.hour, local.date(), local.weekday()
    if hour_of_day >= 19:
        party = weekday in (4, 5) or is_bank_holiday(day + timedelta(days=1), region)
    elif hour_of_day < 4:
        party = weekday in (5, 6) or is_bank_holiday(day, region)
    else:
        party = False
    new_years_eve = (day.month == 12 and day.day == 31 and hour_of_day >= 19) or (
        day.month == 1 and day.day == 1 and hour_of_day < 5
    )
    holiday = is_bank_holiday(day, region)
    rates = []
    for model in LINE_MODELS:
        factor = model.weekday[weekday]
        if party:
            factor *= model.party_night
        if holiday:
            factor *= model.bank_holiday
        if new_years_eve:
            factor *= model.new_years_eve
        s0 = model.shape[hour_of_day]
        s1 = model.shape[(hour_of_day + 1) % 24]
        rates.append((factor * s0, factor * (s1 - s0), factor * max(s0, s1)))
    return tuple(rates)


@lru_cache(maxsize=1 << 16)
def _local_hour(hour: int) -> int:
    return datetime.fromtimestamp(hour * HOUR, LONDON).hour


@lru_cache(maxsize=4096)
def _required_agents(load_centi: int, aht_seconds: int) -> int:
    """Fewest handlers for the planning service level and occupancy (load in 1/100 Erlang).

    The same Erlang C search the schedulers' plans use (``services.planning.erlang``), with
    the load given as calls of one handling time each.
    """
    load = load_centi / 100.0
    if load <= 0:
        return 1
    return max(1, required_handlers(load, aht_seconds, aht_seconds, PLAN_THRESHOLD_SECONDS,
                                    PLAN_SERVICE_LEVEL, PLAN_MAX_OCCUPANCY))


class _Call:
    __slots__ = ("id", "line", "caller", "reason", "ref", "offered", "visible", "patience",
                 "talk", "wrap", "outcome", "grade", "area", "callback_draw", "state",
                 "incident", "attempts", "depth", "misdial")

    def __init__(self, line: int, caller: str | None, reason: str | None, ref: str | None,
                 depth: int) -> None:
        self.id = ""
        self.line = line
        self.caller = caller
        self.reason = reason
        self.ref = ref
        self.offered = 0.0
        self.visible = False
        self.patience = 0.0
        self.talk = 0.0
        self.wrap = 0.0
        self.outcome = "resolved"
        self.grade = "resolution"
        self.area = "urban"
        self.callback_draw = 1.0  # uniform draw: accepts a callback if under the acceptance
        self.state = _QUEUED
        self.incident: str | None = None
        self.attempts = 0
        self.depth = depth
        self.misdial = False


class _Handler:
    __slots__ = ("id", "state", "on_shift", "free_from", "token", "break_token",
                 "break_pending", "work")

    def __init__(self, handler_id: str) -> None:
        self.id = handler_id
        self.state = _OFF
        self.on_shift = False
        self.free_from = -math.inf
        self.token = 0
        self.break_token = 0
        self.break_pending = 0.0
        self.work: _Call | None = None


class _Incident:
    __slots__ = ("id", "grade", "area", "visible", "urgent", "dispatched")

    def __init__(self, incident_id: str, grade: str, area: str, visible: bool) -> None:
        self.id = incident_id
        self.grade = grade
        self.area = area
        self.visible = visible
        self.urgent = grade in ("immediate", "priority")
        self.dispatched = False


class _Room:
    """One control room: arrivals, queue, handlers and incidents, run as a discrete-event model.

    Every contract event is emitted when the simulation clock reaches its time, so a room's
    output is in event-time order without sorting.
    """

    def __init__(self, name: str, seed: int, scale: float, staffing: float, start: float,
                 tag: str) -> None:
        self.name = name
        self.seed = seed
        self.scale = scale
        self.staffing = staffing
        self.start = start
        self.tag = tag
        self.region = _room_regions().get(name, DEFAULT_REGION)
        room_seed = _derive(seed, name)
        # Separate streams keep demand identical when only staffing changes (what-if runs
        # compare like with like: common random numbers).
        self.rng_arrivals = [random.Random(_derive(room_seed, f"arrivals:{m.name}"))
                             for m in LINE_MODELS]
        self.rng_surge = random.Random(_derive(room_seed, "surges"))
        self.rng_behaviour = random.Random(_derive(room_seed, "behaviour"))
        self.rng_incidents = random.Random(_derive(room_seed, "incidents"))
        self.rng_roster = random.Random(_derive(room_seed, "roster"))
        self.base = [m.fresh_calls_per_day * scale / DAY for m in LINE_MODELS]
        self.surge_base = SURGES_PER_DAY * scale / DAY
        self.frequent = [self._caller_key(f"frequent:{i}")
                         for i in range(max(3, round(FREQUENT_CALLERS * scale)))]
        weights = [1.0 / (i + 1) for i in range(len(self.frequent))]
        total, running = sum(weights), 0.0
        self.frequent_cum = []
        for w in weights:
            running += w / total
            self.frequent_cum.append(running)
        self.units = max(3.0, RESPONSE_UNITS * scale)

        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.now = start - WARM_UP_SECONDS
        self.out: list[tuple[int, dict[str, Any]]] = []
        self.event_prefix = f"{name}-{tag}-"
        self.n_events = 0
        self.n_calls = 0
        self.n_callers = 0
        self.n_incidents = 0
        self.fmt_second = -1
        self.fmt_prefix = ""

        self.q999: deque[_Call] = deque()
        self.qother: deque[_Call] = deque()
        self.waiting = 0
        self.available: deque[tuple[_Handler, int]] = deque()
        self.working = 0
        self.on_break = 0
        self.handlers: list[_Handler] = []
        self.handlers_visible = False
        self.cover: dict[int, int] = {}
        self.loads: dict[int, tuple[float, float]] = {}
        self.planned_to = int(self.now // HOUR)
        self.deployed = 0
        self.awaiting = 0

        self.table: list[Callable[[Any], None]] = [
            self._on_snapshot, self._on_arrival, self._on_surge, self._offer, self._on_abandon,
            self._on_callback_request, self._on_talk_end, self._on_wrap_end, self._on_shift_start,
            self._on_shift_end, self._on_break_due, self._on_break_end, self._on_incident_create,
            self._on_incident_dispatch, self._on_incident_arrive, self._on_incident_close,
            self._on_callback_retry, self._on_plan,
        ]
        self._at(start, _K_SNAPSHOT, None)
        self._at(self.now, _K_PLAN, None)
        for line in range(len(LINE_MODELS)):
            self._at(self._next_time(self.rng_arrivals[line], self.base[line], line, self.now),
                     _K_ARRIVAL, line)
        self._at(self._next_time(self.rng_surge, self.surge_base, _999, self.now), _K_SURGE, None)

    # -- the loop -------------------------------------------------------------------------

    def run(self, end: float | None) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(at_ms, event)`` in time order until ``end`` (exclusive) or forever."""
        heap, out, table, pop = self.heap, self.out, self.table, heapq.heappop
        while heap:
            entry = heap[0]
            if end is not None and entry[0] >= end:
                return
            pop(heap)
            self.now = entry[0]
            table[entry[2]](entry[3])
            if out:
                yield from out
                out.clear()

    def _at(self, at: float, kind: int, obj: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, obj))

    def _event(self, etype: str) -> dict[str, Any]:
        self.n_events += 1
        ms = int(self.now * 1000.0)
        second, milli = divmod(ms, 1000)
        if second != self.fmt_second:
            self.fmt_second = second
            self.fmt_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event = {"v": 1, "id": f"{self.event_prefix}{self.n_events:06d}", "type": etype,
                 "room": self.name, "at": f"{self.fmt_prefix}.{milli:03d}Z"}
        self.out.append((ms, event))
        return event

    def _caller_key(self, label: str) -> str:
        digest = hashlib.blake2b(f"{self.name}:{self.seed}:{label}".encode(), digest_size=8)
        return "k:" + digest.hexdigest()

    # -- arrivals -------------------------------------------------------------------------

    def _next_time(self, rng: random.Random, base: float, line: int, t: float) -> float:
        """Next arrival after ``t`` of a non-homogeneous Poisson process, by thinning per hour."""
        expovariate, uniform = rng.expovariate, rng.random
        while True:
            hour = int(t // HOUR)
            a, b, ceiling = _hour_rates(hour, self.region)[line]
            edge = (hour + 1) * HOUR
            if ceiling <= 0.0:
                t = edge
                continue
            t += expovariate(base * ceiling)
            if t >= edge:
                t = edge  # memoryless: restart at the boundary with the next hour's ceiling
                continue
            if uniform() * ceiling <= a + b * (t / HOUR - hour):
                return t

    def _draw(self, rng: random.Random, line: int, call: _Call,
              outcomes: tuple[tuple[str, ...], list[float]]) -> _Call:
        model = LINE_MODELS[line]
        if rng.random() < model.misdial_rate:
            call.patience = rng.uniform(1.0, 6.0)
            call.misdial = True
        else:
            call.patience = rng.lognormvariate(math.log(model.patience_median_seconds),
                                               model.patience_sigma)
        call.talk = rng.lognormvariate(math.log(model.talk_median_seconds), model.talk_sigma)
        call.wrap = round(
            rng.lognormvariate(math.log(model.wrap_median_seconds), model.wrap_sigma), 3)
        call.outcome = _pick(outcomes, rng.random())
        call.grade = _pick(_GRADES[line], rng.random())
        call.area = "urban" if rng.random() < URBAN_RATE else "rural"
        call.callback_draw = rng.random()
        return call

    def _fresh_caller(self, rng: random.Random, line: int) -> tuple[str | None, bool]:
        u = rng.random()
        if u < WITHHELD_RATE:
            return None, False
        if u < WITHHELD_RATE + LINE_MODELS[line].frequent_rate:
            index = bisect_right(self.frequent_cum, rng.random())
            return self.frequent[min(index, len(self.frequent) - 1)], True
        self.n_callers += 1
        return self._caller_key(str(self.n_callers)), False

    def _on_arrival(self, line: int) -> None:
        rng = self.rng_arrivals[line]
        caller, frequent = self._fresh_caller(rng, line)
        call = _Call(line, caller, None, None, 0)
        self._draw(rng, line, call, _FREQUENT_OUTCOMES if frequent else _OUTCOMES[line])
        self._offer(call)
        self._at(self._next_time(rng, self.base[line], line, self.now), _K_ARRIVAL, line)

    def _on_surge(self, _payload: None) -> None:
        rng = self.rng_surge
        size = SURGE_MIN_CALLS + int(rng.expovariate(1.0 / SURGE_MEAN_EXTRA_CALLS))
        for i in range(size):
            line = _999 if i == 0 or rng.random() < SURGE_999_RATE else _101
            caller, _frequent = self._fresh_caller(rng, line)
            call = self._draw(rng, line, _Call(line, caller, None, None, 0), _OUTCOMES[line])
            if i == 0:
                call.outcome, call.grade = "incident", "immediate"
            else:  # "we already know, officers are on the way"
                call.outcome = "advice"
                call.talk *= 0.5
            delay = 0.0 if i == 0 else rng.expovariate(1.0 / SURGE_SPREAD_SECONDS)
            self._at(self.now + delay, _K_OFFER, call)
        self._at(self._next_time(rng, self.surge_base, _999, self.now), _K_SURGE, None)

    def _offer(self, call: _Call) -> None:
        now = self.now
        self.n_calls += 1
        call.id = f"c-{self.tag}-{self.n_calls}"
        call.offered = now
        call.visible = now >= self.start
        if call.visible:
            event = self._event("call.offered")
            event["call"] = call.id
            event["line"] = LINES[call.line]
            if call.caller is not None:
                event["caller"] = call.caller
            if call.reason is not None:
                event["reason"] = call.reason
            if call.ref is not None:
                event["ref"] = call.ref
        handler = self._pop_available()
        if handler is not None:
            self._start_work(handler, call)
            return
        call.state = _QUEUED
        (self.q999 if call.line == _999 else self.qother).append(call)
        self.waiting += 1
        self._at(now + call.patience, _K_ABANDON, call)
        if call.line == _101 and call.callback_draw < callback_acceptance(self._expected_wait()):
            # The queue message offers a callback; accepting takes a few seconds of keypad.
            self._at(now + self.rng_behaviour.uniform(20.0, 40.0), _K_CALLBACK_REQUEST, call)

    def _expected_wait(self) -> float:
        return self.waiting * MEAN_HANDLING_SECONDS / max(1, self.working)

    # -- the queue and handlers -----------------------------------------------------------

    def _pop_available(self) -> _Handler | None:
        available = self.available
        while available:
            handler, token = available.popleft()
            if handler.token == token and handler.state == _AVAILABLE:
                return handler
        return None

    def _next_work(self) -> _Call | None:
        # 999 first; 101, online and callbacks in the order they joined.
        queue = self.q999
        while queue:
            call = queue.popleft()
            if call.state == _QUEUED:
                return call
        queue = self.qother
        while queue:
            call = queue.popleft()
            if call.state == _QUEUED or call.state == _CALLBACK:
                return call
        return None

    def _set_state(self, handler: _Handler, state: int) -> None:
        old = handler.state
        if old == state:
            return
        handler.state = state
        self.working += _WORKING[state] - _WORKING[old]
        self.on_break += (state == _BREAK) - (old == _BREAK)
        handler.token += 1
        if state == _AVAILABLE:
            self.available.append((handler, handler.token))
        if self.handlers_visible:
            event = self._event("handler.state")
            event["handler"] = handler.id
            event["state"] = _STATE_NAMES[state]

    def _start_work(self, handler: _Handler, call: _Call) -> None:
        handler.work = call
        talk = call.talk
        if call.state == _CALLBACK:
            call.attempts += 1
            success = self.rng_behaviour.random() < CALLBACK_ATTEMPT_SUCCESS
            if call.visible:
                event = self._event("callback.attempted")
                event["call"] = call.id
                event["success"] = success
            if success:
                call.state = _CALLBACK_TALK
            else:
                call.state = _CALLBACK_FAILED
                talk = self.rng_behaviour.uniform(25.0, 45.0)  # rings out, leaves a message
        else:
            call.state = _ANSWERED
            if call.visible:
                event = self._event("call.answered")
                event["call"] = call.id
                event["handler"] = handler.id
        self._set_state(handler, _ON_CALL)
        self._at(self.now + talk, _K_TALK_END, handler)
        if call.outcome == "incident" and call.state != _CALLBACK_FAILED:
            fraction = self.rng_incidents.uniform(0.35, 0.9)
            self._at(self.now + talk * fraction, _K_INCIDENT_CREATE, call)

    def _free(self, handler: _Handler) -> None:
        """The handler finished something: log out, take a break, or take the next call."""
        handler.work = None
        if not handler.on_shift:
            self._set_state(handler, _OFF)
            return
        if handler.break_pending:
            self._start_break(handler, handler.break_pending)
            return
        call = self._next_work()
        if call is None:
            self._set_state(handler, _AVAILABLE)
            return
        self.waiting -= 1
        self._start_work(handler, call)

    def _start_break(self, handler: _Handler, seconds: float) -> None:
        handler.break_pending = 0.0
        if self.on_break >= max(1, int(MAX_ON_BREAK_RATE * (self.working + self.on_break))):
            self._at(self.now + BREAK_RECHECK_SECONDS, _K_BREAK_DUE, (handler, seconds))
            self._set_state(handler, _AVAILABLE)
            self._assign()
            return
        handler.break_token += 1
        self._set_state(handler, _BREAK)
        self._at(self.now + seconds, _K_BREAK_END, (handler, handler.break_token))

    def _on_abandon(self, call: _Call) -> None:
        if call.state != _QUEUED:
            return
        call.state = _ABANDONED
        self.waiting -= 1
        if call.visible:
            event = self._event("call.abandoned")
            event["call"] = call.id
        self._after_abandon(call)

    def _on_callback_request(self, call: _Call) -> None:
        if call.state != _QUEUED:
            return
        call.state = _CALLBACK  # keeps its place in the queue (virtual hold)
        if call.visible:
            event = self._event("call.callback_requested")
            event["call"] = call.id

    def _on_callback_retry(self, call: _Call) -> None:
        call.state = _CALLBACK
        self.qother.append(call)
        self.waiting += 1
        self._assign()

    def _assign(self) -> None:
        """Give waiting work to available handlers (only after work or a handler is added)."""
        while self.waiting:
            handler = self._pop_available()
            if handler is None:
                return
            call = self._next_work()
            assert call is not None  # ``waiting`` counts exactly the live queue entries
            self.waiting -= 1
            self._start_work(handler, call)

    def _on_talk_end(self, handler: _Handler) -> None:
        call = handler.work
        assert call is not None
        wrap = call.wrap
        if call.state == _ANSWERED:
            call.state = _DONE
            if call.visible:
                event = self._event("call.ended")
                event["call"] = call.id
                event["outcome"] = call.outcome
                event["wrap_seconds"] = call.wrap
            self._after_contact(call)
        elif call.state == _CALLBACK_TALK:
            call.state = _DONE
            self._after_contact(call)
        else:  # a callback that did not reach the caller
            wrap = 15.0
            if call.attempts < CALLBACK_MAX_ATTEMPTS:
                self._at(self.now + CALLBACK_RETRY_SECONDS, _K_CALLBACK_RETRY, call)
            else:
                call.state = _DONE
                if self.rng_behaviour.random() < RECALL_AFTER_FAILED_CALLBACK:
                    self._follow_up(call, _101, 1800.0, 1.0, None, None)
        self._set_state(handler, _WRAP)
        self._at(self.now + wrap, _K_WRAP_END, handler)

    def _on_wrap_end(self, handler: _Handler) -> None:
        self._free(handler)

    # -- callers who ring again -----------------------------------------------------------

    def _follow_up(self, previous: _Call, line: int, median_seconds: float, sigma: float,
                   reason: str | None, ref: str | None) -> None:
        rng = self.rng_behaviour
        call = _Call(line, previous.caller, reason, ref, previous.depth + 1)
        self._draw(rng, line, call, _CHASE_OUTCOMES if reason else _OUTCOMES[line])
        delay = rng.lognormvariate(math.log(median_seconds), sigma)
        self._at(self.now + delay, _K_OFFER, call)

    def _after_abandon(self, call: _Call) -> None:
        if call.depth >= MAX_FOLLOW_UP_DEPTH:
            return
        u = self.rng_behaviour.random()
        if call.misdial:
            if u < RECALL_AFTER_MISDIAL:
                self._follow_up(call, call.line, 30.0, 0.6, None, None)
            return
        if u >= RECALL_AFTER_ABANDON[call.line]:
            return
        if call.line == _999:
            self._follow_up(call, _999, 60.0, 0.6, None, None)
        elif call.line == _101:
            if self.rng_behaviour.random() < SWITCH_101_TO_999:
                self._follow_up(call, _999, 180.0, 0.7, None, None)
            else:
                self._follow_up(call, _101, 1200.0, 1.0, None, None)
        elif self.rng_behaviour.random() < 0.6:
            self._follow_up(call, _101, 3600.0, 1.0, None, None)
        else:
            self._follow_up(call, _ONLINE, 7200.0, 1.0, None, None)

    def _after_contact(self, call: _Call) -> None:
        if call.depth >= MAX_FOLLOW_UP_DEPTH:
            return
        rng = self.rng_behaviour
        outcome = call.outcome
        if outcome == "unresolved":
            if rng.random() < RECALL_AFTER_UNRESOLVED:
                u = rng.random()
                line = _101 if u < 0.85 else _999 if u < 0.9 else _ONLINE
                self._follow_up(call, line, 3 * HOUR, 1.0, None, None)
        elif (outcome == "incident" and call.grade in ("priority", "scheduled")) or (
            outcome == "referred"
        ):
            chance = CHASE_AFTER_INCIDENT if outcome == "incident" else CHASE_AFTER_REFERRED
            if rng.random() < chance:
                line = _101 if rng.random() < 0.85 else _ONLINE
                self._follow_up(call, line, 6 * HOUR, 0.9, "progress_chase", call.incident)

    # -- rota, shifts and breaks ----------------------------------------------------------

    def _load(self, hour: int) -> tuple[float, float]:
        """Expected offered load (Erlangs) and calls per second in a UTC hour."""
        cached = self.loads.get(hour)
        if cached is not None:
            return cached
        rates = _hour_rates(hour, self.region)
        load = calls = 0.0
        for line, model in enumerate(LINE_MODELS):
            a, b, _ = rates[line]
            rate = self.base[line] * (a + b / 2) * (1.0 + FOLLOW_UP_SHARE[line])
            load += rate * model.handling_seconds
            calls += rate
        a, b, _ = rates[_999]
        surge_calls = self.surge_base * (a + b / 2) * (SURGE_MIN_CALLS + SURGE_MEAN_EXTRA_CALLS)
        load += surge_calls * LINE_MODELS[_999].handling_seconds * 0.6
        calls += surge_calls
        self.loads[hour] = (load, calls)
        return load, calls

    def _required(self, hour: int) -> int:
        near = range(hour - PLAN_SMOOTHING_HOURS, hour + PLAN_SMOOTHING_HOURS + 1)
        day = range(hour - 12, hour + 12)
        load = calls = 0.0
        for window, weight in ((near, 1.0 - PLAN_DAILY_WEIGHT), (day, PLAN_DAILY_WEIGHT)):
            load += weight * sum(self._load(h)[0] for h in window) / len(window)
            calls += weight * sum(self._load(h)[1] for h in window) / len(window)
        self.loads.pop(hour - 13, None)
        if calls <= 0:
            return 1
        agents = _required_agents(round(load * 100), max(1, round(load / calls)))
        return max(1, math.ceil(agents * self.staffing / (1.0 - BREAK_SHARE) - 0.25))

    def _on_plan(self, _payload: None) -> None:
        horizon = int((self.now + PLAN_AHEAD_SECONDS) // HOUR)
        while self.planned_to < horizon:
            hour = self.planned_to
            need = self._required(hour) - self.cover.pop(hour, 0)
            if need > 0:
                first = self._shift_start_hour(hour)
                for _ in range(need):
                    self._add_shift(first)
                for h in range(hour + 1, first + SHIFT_HOURS):
                    self.cover[h] = self.cover.get(h, 0) + need
            self.planned_to += 1
        self._at(self.now + PLAN_EVERY_SECONDS, _K_PLAN, None)

    @staticmethod
    def _shift_start_hour(hour: int) -> int:
        for back in range(SHIFT_HOURS):
            if _local_hour(hour - back) in SHIFT_STARTS:
                return hour - back
        return hour

    def _add_shift(self, first_hour: int) -> None:
        begin = first_hour * HOUR
        end = begin + SHIFT_HOURS * HOUR
        rng = self.rng_roster
        breaks = tuple((begin + rng.uniform(earliest, latest), length)
                       for earliest, latest, length in BREAKS)
        handler = next((h for h in self.handlers if h.free_from <= begin), None)
        if handler is None:
            handler = _Handler(f"h-{len(self.handlers) + 1}")
            self.handlers.append(handler)
        handler.free_from = end + REST_SECONDS
        if end > self.now:
            self._at(max(begin, self.now), _K_SHIFT_START, (handler, end, breaks))

    def _on_shift_start(self, shift: tuple[_Handler, float, tuple[tuple[float, float], ...]]
                        ) -> None:
        handler, end, breaks = shift
        handler.on_shift = True
        handler.break_pending = 0.0
        self._at(end, _K_SHIFT_END, handler)
        for at, length in breaks:
            if at > self.now:
                self._at(at, _K_BREAK_DUE, (handler, length))
        if handler.state == _OFF:
            self._set_state(handler, _AVAILABLE)
            self._assign()

    def _on_shift_end(self, handler: _Handler) -> None:
        handler.on_shift = False
        if handler.state in (_AVAILABLE, _BREAK):
            self._set_state(handler, _OFF)
        # busy handlers finish the call and its wrap-up first (see _free)

    def _on_break_due(self, due: tuple[_Handler, float]) -> None:
        handler, length = due
        if not handler.on_shift or handler.state in (_OFF, _BREAK):
            return
        if handler.state == _AVAILABLE:
            self._start_break(handler, length)
        else:
            handler.break_pending = length

    def _on_break_end(self, end: tuple[_Handler, int]) -> None:
        handler, token = end
        if handler.state == _BREAK and handler.break_token == token:
            self._free(handler)

    # -- incidents ------------------------------------------------------------------------

    def _on_incident_create(self, call: _Call) -> None:
        self.n_incidents += 1
        incident = _Incident(f"i-{self.tag}-{self.n_incidents}", call.grade, call.area,
                             call.visible)
        call.incident = incident.id
        if incident.visible:
            event = self._event("incident.created")
            event["call"] = call.id
            event["incident"] = incident.id
            event["grade"] = incident.grade
            event["area"] = incident.area
        rng = self.rng_incidents
        if incident.grade == "resolution":  # resolved without deployment
            delay = rng.lognormvariate(math.log(RESOLUTION_CLOSE_MEDIAN_SECONDS), 0.8)
            self._at(self.now + delay, _K_INCIDENT_CLOSE, incident)
            return
        busy = (self.deployed + self.awaiting) / self.units
        slowdown = 1.0 + 3.0 * max(0.0, busy - 0.5)
        if incident.urgent:
            self.awaiting += 1
        else:
            slowdown = math.sqrt(slowdown)
        median = DISPATCH_MEDIAN_SECONDS[incident.grade]
        delay = rng.lognormvariate(math.log(median), 0.6) * slowdown
        targets = DISPATCH_TARGET_SECONDS.get(incident.grade)
        if targets is not None:
            target = targets[0] if incident.area == "urban" else targets[1]
            if delay > DISPATCH_ESCALATION_WINDOW[1] * target:
                if rng.random() < DISPATCH_ESCALATED:
                    delay = rng.uniform(*DISPATCH_ESCALATION_WINDOW) * target
                else:
                    delay = min(delay, rng.uniform(*DISPATCH_LATE_BY) * target)
        self._at(self.now + delay, _K_INCIDENT_DISPATCH, incident)

    def _on_incident_dispatch(self, incident: _Incident) -> None:
        if incident.urgent:
            self.awaiting -= 1
        self.deployed += 1
        incident.dispatched = True
        if incident.visible:
            event = self._event("incident.dispatched")
            event["incident"] = incident.id
        median = TRAVEL_MEDIAN_SECONDS[(incident.grade, incident.area)]
        travel = self.rng_incidents.lognormvariate(math.log(median), 0.45)
        self._at(self.now + travel, _K_INCIDENT_ARRIVE, incident)

    def _on_incident_arrive(self, incident: _Incident) -> None:
        if incident.visible:
            event = self._event("incident.arrived")
            event["incident"] = incident.id
        median = ON_SCENE_MEDIAN_SECONDS[incident.grade]
        on_scene = self.rng_incidents.lognormvariate(math.log(median), 0.6)
        self._at(self.now + on_scene, _K_INCIDENT_CLOSE, incident)

    def _on_incident_close(self, incident: _Incident) -> None:
        if incident.dispatched:
            self.deployed -= 1
        if incident.visible:
            event = self._event("incident.closed")
            event["incident"] = incident.id

    # -- the start of the output ----------------------------------------------------------

    def _on_snapshot(self, _payload: None) -> None:
        # Handlers already at work when the output starts: their state now, so handler
        # figures are right from the first interval.
        self.handlers_visible = True
        for handler in self.handlers:
            if handler.state != _OFF:
                event = self._event("handler.state")
                event["handler"] = handler.id
                event["state"] = _STATE_NAMES[handler.state]


# -- public API ---------------------------------------------------------------------------


def _check(rooms: int, days: float | None, seed: int, scale: float, staffing: float) -> None:
    if isinstance(rooms, bool) or not isinstance(rooms, int) or not 1 <= rooms <= 100:
        raise SimulationError(f"rooms must be a whole number from 1 to 100, got {rooms!r}")
    if days is not None and not (isinstance(days, int | float) and 0 < days <= 3660):
        raise SimulationError(f"days must be more than 0 and at most 3660, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SimulationError(f"seed must be a whole number, got {seed!r}")
    if not (isinstance(scale, int | float) and 0 < scale <= 100):
        raise SimulationError(f"scale must be more than 0 and at most 100, got {scale!r}")
    if not (isinstance(staffing, int | float) and 0.1 <= staffing <= 10):
        raise SimulationError(f"staffing must be from 0.1 to 10, got {staffing!r}")


def start_time(start: datetime | date | None) -> datetime:
    """The aware UTC start of a simulation: a date means local midnight in Europe/London.

    Raises:
        SimulationError: a naive datetime (it would be ambiguous).
    """
    if start is None:
        start = DEFAULT_START
    if isinstance(start, datetime):
        if start.tzinfo is None or start.utcoffset() is None:
            raise SimulationError(
                f"start {start.isoformat()} has no time zone: add one, e.g. '+00:00' or 'Z'"
            )
        return start.astimezone(UTC)
    return datetime(start.year, start.month, start.day, tzinfo=LONDON).astimezone(UTC)


def _run_tag(start_ms: int, seed: int, scale: float, staffing: float) -> str:
    # Identifiers carry a tag of the run, so two different runs published to one topic do not
    # collide (the monitor drops an event whose id it has seen as a duplicate); the same
    # arguments give the same tag, hence identical files.
    text = f"{start_ms}:{seed}:{float(scale)!r}:{float(staffing)!r}"
    return hashlib.blake2b(text.encode(), digest_size=3).hexdigest()


def _merged(rooms: int, start_ms: int, end_ms: int | None, seed: int, scale: float,
            staffing: float) -> Iterator[tuple[int, dict[str, Any]]]:
    tag = _run_tag(start_ms, seed, scale, staffing)
    start = start_ms / 1000.0
    end = None if end_ms is None else end_ms / 1000.0
    runs = [_Room(room_name(i), seed, scale, staffing, start, tag).run(end) for i in range(rooms)]
    if rooms == 1:
        return runs[0]
    # Stable: equal times keep room order, and each room's own order.
    return heapq.merge(*runs, key=itemgetter(0))


def simulate_events(
    rooms: int = 2,
    days: float = 1,
    start: datetime | date | None = None,
    seed: int = 1,
    scale: float = 1.0,
    *,
    staffing: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """Simulated contract events of ``rooms`` control rooms, in event-time order.

    Args:
        rooms: number of control rooms (north, south, east, west, room-5 …).
        days: length of the output in days (24-hour periods from ``start``).
        start: first instant of the output; a date is local midnight (Europe/London).
            Default 2026-11-02, a Monday.
        seed: the same arguments and seed give the same events.
        scale: demand multiplier; 1 is a medium force (about 700 calls a day on 999, 1,500 on
            101 and 300 online per room).
        staffing: multiplier on the planned rota, for "what if" runs; demand is unchanged.

    Returns:
        An iterator of event dicts (fields in contract order), times in ``[start, start+days)``.

    Raises:
        SimulationError: invalid arguments.
    """
    _check(rooms, days, seed, scale, staffing)
    start_ms = int(start_time(start).timestamp() * 1000)
    end_ms = start_ms + round(days * DAY * 1000)
    return (event for _, event in _merged(rooms, start_ms, end_ms, seed, scale, staffing))


def write_jsonl(
    path: str | Path,
    rooms: int = 2,
    days: float = 1,
    start: datetime | date | None = None,
    seed: int = 1,
    scale: float = 1.0,
    *,
    staffing: float = 1.0,
) -> int:
    """Write simulated events as JSON Lines to ``path`` (``-`` for standard output).

    Args:
        path: output file, or ``-``.
        rooms: as for :func:`simulate_events`.
        days: as for :func:`simulate_events`.
        start: as for :func:`simulate_events`.
        seed: as for :func:`simulate_events`.
        scale: as for :func:`simulate_events`.
        staffing: as for :func:`simulate_events`.

    Returns:
        The number of events written.

    Raises:
        SimulationError: invalid arguments or an unwritable file.
    """
    events = simulate_events(rooms, days, start, seed, scale, staffing=staffing)
    dumps = orjson.dumps
    count = 0
    handle: IO[bytes]
    if str(path) == "-":
        handle = sys.stdout.buffer
    else:
        try:
            handle = open(path, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise SimulationError(f"cannot write {path}: {exc.strerror}") from None
    try:
        chunk: list[bytes] = []
        for event in events:
            chunk.append(dumps(event))
            if len(chunk) >= 4096:
                handle.write(b"\n".join(chunk) + b"\n")
                count += len(chunk)
                chunk.clear()
        if chunk:
            handle.write(b"\n".join(chunk) + b"\n")
            count += len(chunk)
        handle.flush()
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
    return count


LIVE_FLUSH_SECONDS = 0.15
LIVE_BATCH_EVENTS = 200
# The contract rejects events more than a day ahead of the clock; a run faster than real time
# stops before its events get there.
LIVE_MAX_LEAD_SECONDS = 23 * HOUR


def stream_live(
    bootstrap: str,
    topic: str,
    rooms: int = 2,
    seed: int = 1,
    scale: float = 1.0,
    speed: float = 1.0,
    backfill_hours: float = 0.0,
    stop: threading.Event | None = None,
    *,
    staffing: float = 1.0,
    settings: Any = None,
) -> int:
    """Publish simulated events live to Kafka until ``stop`` is set.

    First ``backfill_hours`` of history ending now are published as fast as possible (so a
    dashboard has its recent intervals at once), then each event is published when it falls
    due: an event ``x`` seconds after the start of the live part is due ``x / speed`` seconds
    of wall clock later. With ``speed`` above 1 event times run ahead of the clock; the run
    stops before they are a day ahead, which the contract would reject.

    Args:
        bootstrap: Kafka bootstrap servers.
        topic: the events topic (must exist).
        rooms: as for :func:`simulate_events`.
        seed: as for :func:`simulate_events`.
        scale: as for :func:`simulate_events`.
        speed: simulated seconds per wall-clock second after the backfill.
        settings: how to connect to Kafka (TLS, SASL); without them, plaintext.
        backfill_hours: hours of history to publish first.
        stop: set it to end the run; ``None`` runs until interrupted.
        staffing: as for :func:`simulate_events`.

    Returns:
        The number of events the broker acknowledged.

    Raises:
        SimulationError: invalid arguments or events the broker did not acknowledge.
    """
    from services.kafka.ingest import Publisher

    _check(rooms, None, seed, scale, staffing)
    if not (isinstance(speed, int | float) and 0 < speed <= 100_000):
        raise SimulationError(f"speed must be more than 0 and at most 100000, got {speed!r}")
    if not (isinstance(backfill_hours, int | float) and 0 <= backfill_hours <= 24 * 30):
        raise SimulationError(f"backfill hours must be from 0 to 720, got {backfill_hours!r}")
    stop = stop or threading.Event()
    origin = time.time()
    start_ms = int((origin - backfill_hours * HOUR) * 1000)
    events = _merged(rooms, start_ms, None, seed, scale, staffing)
    publisher = Publisher(bootstrap, topic, settings=settings)
    pending: dict[str, list[dict[str, Any]]] = {}
    dumps = orjson.dumps

    def flush() -> None:
        for room, batch in pending.items():
            publisher.send_raw(room, dumps(batch), len(batch))
        pending.clear()

    flush_at = math.inf
    sent = 0
    try:
        for at_ms, event in events:
            at = at_ms / 1000.0
            if at > origin:
                if at - time.time() > LIVE_MAX_LEAD_SECONDS:
                    log.error("speed %g has run event times a day ahead of the clock; stopping",
                              speed)
                    break
                due = origin + (at - origin) / speed
                while True:
                    now = time.time()
                    if now >= due:
                        break
                    if now >= flush_at:
                        flush()
                        flush_at = math.inf
                    if stop.wait(min(due, flush_at) - now):
                        break
            if stop.is_set():
                break
            batch = pending.setdefault(event["room"], [])
            batch.append(event)
            if len(batch) == 1 and flush_at == math.inf:
                flush_at = time.time() + LIVE_FLUSH_SECONDS
            if len(batch) >= LIVE_BATCH_EVENTS:
                publisher.send_raw(event["room"], dumps(batch), len(batch))
                del pending[event["room"]]
            sent += 1
            if at <= origin and sent % 5000 == 0:
                log.info("backfill: %d events published", sent)
            if time.time() >= flush_at:
                flush()
                flush_at = math.inf
    finally:
        flush()
        publisher.close()
    if publisher.failed:
        raise SimulationError(
            f"the broker did not acknowledge {publisher.failed} of {sent} simulated events"
        )
    return publisher.acked
