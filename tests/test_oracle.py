"""Hand-worked checks of the batch oracle (tests/oracle.py) against METRICS.md/DEFINITIONS.md.

Every expected number below is derived by hand in the comments, from the definitions, so that
the oracle the stream engine is compared against is itself proven on small cases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.oracle import compute

WALL = datetime(2027, 1, 1, tzinfo=UTC)  # the events are in Nov 2026: never "in the future"


def ev(etype: str, at: str, room: str = "north", eid: str | None = None, **fields: Any) -> bytes:
    """One JSONL event line; ``at`` "HH:MM:SS[.f]" means 2026-11-21, otherwise a full time."""
    when = at if "T" in at else f"2026-11-21T{at}Z"
    key = fields.get("call") or fields.get("incident") or fields.get("handler")
    obj = {"v": 1, "id": eid or f"{etype}:{key}:{when}", "type": etype, "room": room, "at": when}
    obj.update(fields)
    return orjson.dumps(obj)


def offered(call: str, at: str, line: str = "999", **fields: Any) -> bytes:
    return ev("call.offered", at, call=call, line=line, **fields)


def run(lines: list[bytes], **kwargs: Any) -> Any:
    return compute(lines, wall_clock=WALL, **kwargs)


# ---------------------------------------------------------------------------------------------
# Call figures of one interval
# ---------------------------------------------------------------------------------------------

# Line 999 (T = 10 s, S = 5 s), interval 22:15-22:30:
#   c1 answered after 4 s, ended 300 s later + 30 s wrap  -> handling 330
#   c2 answered after 25.5 s, ended 200 s later, no wrap  -> handling 200
#   c3 abandoned after 3 s   (short abandon, within T)
#   c4 abandoned after 40 s  (long abandon)
#   c5 callback requested after 30 s; attempts: failed at 22:40, succeeded at 22:50
#   c6 answered after 70 s, not ended
#   c8 abandoned after 7 s   (not short, but within T)
#   c7 offered 22:29:59, never leaves the queue
BASIC = [
    offered("c1", "22:15:00"),
    ev("call.answered", "22:15:04", call="c1", handler="h-1"),
    offered("c2", "22:16:00"),
    offered("c3", "22:17:00"),
    ev("call.abandoned", "22:17:03", call="c3"),
    offered("c4", "22:18:00"),
    offered("c5", "22:19:00"),
    ev("call.answered", "22:16:25.5", call="c2"),
    ev("call.ended", "22:19:45.5", call="c2"),
    ev("call.ended", "22:20:04", call="c1", outcome="resolved", wrap_seconds=30),
    ev("call.abandoned", "22:18:40", call="c4"),
    ev("call.callback_requested", "22:19:30", call="c5"),
    offered("c6", "22:21:00"),
    ev("call.answered", "22:22:10", call="c6"),
    offered("c8", "22:23:00"),
    ev("call.abandoned", "22:23:07", call="c8"),
    offered("c7", "22:29:59"),
    ev("callback.attempted", "22:40:00", call="c5", success=False),
    ev("callback.attempted", "22:50:00", call="c5", success=True),
]
KEY_999 = "north|999|2026-11-21T22:15:00Z"


def basic_final_record() -> dict[str, Any]:
    # offered 8 = answered 3 (c1, c2, c6) + abandoned 3 (c3, c4, c8) + callbacks 1 (c5)
    #            + orphaned 1 (c7: no exit, interval final) + in_queue 0.
    # short_abandoned 1 (c3: 3 < 5); answered within 10 s: c1 only -> 1;
    # abandoned within 10 s: c3 (3), c8 (7) -> 2.
    # SL answered 1/3; SL offered 1/(3+3-1) = 0.2; SL excl. early abandons 1/(3+3-2) = 0.25.
    # Abandonment (3-1)/(8-1) = 2/7.
    # Answer waits sorted [4, 25.5, 70]: ASA 99.5/3; p50 rank ceil(1.5)=2 -> 25.5;
    # p90 rank ceil(2.7)=3 -> 70. Max wait over all exits {4,25.5,3,40,30,70,7} = 70.
    # Bands: 4 -> under 10 s, 25.5 -> 10-60 s, 70 -> 60 s and over.
    # AHT over answered-and-ended c1, c2: (330 + 200)/2 = 265.
    # Callback: 1 requested, 1 with a successful attempt -> rate 1.0.
    # Queue time of the calls that left the queue: 4+25.5+3+40+30+70+7 = 179.5 s.
    return {
        "room": "north",
        "line": "999",
        "interval_start": "2026-11-21T22:15:00Z",
        "interval_end": "2026-11-21T22:30:00Z",
        "final": True,
        "definitions_version": 1,
        "threshold_seconds": 10,
        "short_abandon_seconds": 5,
        "offered": 8,
        "answered": 3,
        "abandoned": 3,
        "short_abandoned": 1,
        "callbacks_requested": 1,
        "in_queue": 0,
        "orphaned": 1,
        "answered_within_threshold": 1,
        "abandoned_within_threshold": 2,
        "service_level": {"answered": 1 / 3, "offered": 0.2, "excl_early_abandons": 0.25},
        "abandonment_rate": 2 / 7,
        "asa_seconds": 99.5 / 3,
        "answer_wait_p50_seconds": 25.5,
        "answer_wait_p90_seconds": 70.0,
        "max_wait_seconds": 70.0,
        "queue_seconds": 179.5,
        "answer_bands": {"under_10s": 1, "from_10s_to_60s": 1, "60s_and_over": 1},
        "aht_seconds": 265.0,
        "callback_successes": 1,
        "callback_success_rate": 1.0,
        "repeat_contacts": 0,
        "failure_demand": 0,
        "failure_demand_rate": 0.0,
    }


def test_final_interval_figures_match_the_hand_derivation() -> None:
    # A quiet 'online' call at 00:30 moves the watermark to 22:30 + 2 h grace: final.
    result = run([*BASIC, offered("tick", "2026-11-22T00:30:00Z", line="online")])
    assert result.intervals[KEY_999] == basic_final_record()
    assert result.rejected == {}
    assert result.waiting == 0
    assert result.watermarks == {"north": "2026-11-22T00:30:00Z"}
    # The tick itself: default profile (60 s / 5 s), still queued with a wait of 0 s.
    tick = result.intervals["north|online|2026-11-22T00:30:00Z"]
    assert (tick["threshold_seconds"], tick["short_abandon_seconds"]) == (60, 5)
    assert (tick["offered"], tick["in_queue"], tick["max_wait_seconds"]) == (1, 1, 0.0)
    assert tick["service_level"] == {"answered": None, "offered": None, "excl_early_abandons": None}
    assert tick["abandonment_rate"] == 0.0  # (0 - 0) / (1 - 0)
    assert tick["asa_seconds"] is None and tick["aht_seconds"] is None
    assert tick["answer_wait_p50_seconds"] is None
    assert tick["callback_success_rate"] is None


def test_open_interval_counts_the_queued_call_and_its_current_wait() -> None:
    # Now = watermark = 22:50:00 (the last attempt). c7 has waited 22:50:00 - 22:29:59 = 1201 s
    # < 3600 s: in queue, and its current wait is the interval's max wait.
    record = run(BASIC).intervals[KEY_999]
    expected = basic_final_record() | {
        "final": False,
        "in_queue": 1,
        "orphaned": 0,
        "max_wait_seconds": 1201.0,
    }
    assert record == expected


def test_call_queued_for_max_queue_seconds_is_orphaned_before_the_interval_is_final() -> None:
    # Now 23:29:59: c7 waited exactly 3600 s (>= max_queue_seconds) -> orphaned, not in queue,
    # and orphaned calls do not count towards max wait: 70 s again. 22:30 + 2 h > now: open.
    record = run([*BASIC, offered("tick", "23:29:59", line="online")]).intervals[KEY_999]
    assert record == basic_final_record() | {"final": False}


def test_percentiles_are_nearest_rank_and_profiles_override_the_threshold() -> None:
    # Eleven 101 calls answered after 1..11 s (out of order), threshold overridden to 5 s.
    waits = [7, 3, 11, 1, 9, 5, 2, 10, 4, 8, 6]
    lines = []
    for i, w in enumerate(waits):
        lines.append(offered(f"p{i}", f"10:00:{i:02d}", line="101"))
        lines.append(ev("call.answered", f"10:00:{i + w:02d}", call=f"p{i}"))
    profiles = {"101": {"threshold_seconds": 5, "short_abandon_seconds": 5}}
    record = run(lines, profiles=profiles).intervals["north|101|2026-11-21T10:00:00Z"]
    # n = 11: p50 rank ceil(5.5) = 6 -> 6 s; p90 rank ceil(9.9) = 10 -> 10 s; ASA 66/11 = 6.
    # Within 5 s (strictly): waits 1, 2, 3, 4 -> 4. Bands: 1..9 -> 9 under 10 s, 10, 11 -> 2.
    assert record["answer_wait_p50_seconds"] == 6.0
    assert record["answer_wait_p90_seconds"] == 10.0
    assert record["asa_seconds"] == 6.0
    assert record["threshold_seconds"] == 5
    assert record["answered_within_threshold"] == 4
    assert record["service_level"]["answered"] == 4 / 11
    assert record["answer_bands"] == {"under_10s": 9, "from_10s_to_60s": 2, "60s_and_over": 0}
    # Without the call that waited 11 s (p2): n = 10, p50 rank 5 -> 5 s, p90 rank 9 -> 9 s.
    ten = [line for line in lines if b'"p2"' not in line]
    record = run(ten).intervals["north|101|2026-11-21T10:00:00Z"]
    assert (record["answer_wait_p50_seconds"], record["answer_wait_p90_seconds"]) == (5.0, 9.0)
    assert record["threshold_seconds"] == 60 and record["answered_within_threshold"] == 10


# ---------------------------------------------------------------------------------------------
# Repeat contacts and failure demand
# ---------------------------------------------------------------------------------------------


def test_repeat_contacts_and_failure_demand() -> None:
    lines = [
        # A week earlier (14 Nov): k:e abandoned at 10:12:30; k:f called at 10:12:59.
        offered("e1", "2026-11-14T10:12:00Z", line="101", caller="k:e"),
        ev("call.abandoned", "2026-11-14T10:12:30Z", call="e1"),
        offered("f1", "2026-11-14T10:12:59Z", line="101", caller="k:f"),
        # 21 Nov, line 101 unless said otherwise.
        offered("a1", "10:00:00", line="101", caller="k:a"),
        ev("call.abandoned", "10:01:00", call="a1"),
        offered("b1", "10:02:00", line="101", caller="k:b"),
        ev("call.answered", "10:02:30", call="b1"),
        ev("call.ended", "10:06:00", call="b1", outcome="unresolved"),
        offered("c1", "10:03:00", line="101", caller="k:c"),
        offered("c2", "10:04:00", line="101", caller="k:c"),
        ev("call.abandoned", "10:09:00", call="c1"),
        offered("d1", "10:04:30", line="101", caller="k:d"),
        ev("call.answered", "10:04:40", call="d1"),
        ev("call.ended", "10:05:00", call="d1", outcome="resolved"),
        offered("a2", "10:05:00", line="999", caller="k:a"),
        ev("call.answered", "10:05:05", call="a2"),
        offered("b2", "10:07:00", line="101", caller="k:b"),
        offered("b3", "10:08:00", line="101", caller="k:b"),
        offered("d2", "10:10:00", line="101", caller="k:d", reason="progress_chase"),
        offered("n1", "10:11:00", line="101", reason="progress_chase"),
        offered("e2", "10:12:00", line="101", caller="k:e"),
        offered("f2", "10:13:00", line="101", caller="k:f"),
        offered("g1", "10:13:00", line="101", caller="k:g"),
        ev("call.abandoned", "10:13:20", call="g1"),
        offered("g2", "10:13:00", line="101", caller="k:g"),
        ev("call.answered", "10:13:05", call="g2"),
        offered("g3", "10:14:00", line="101", caller="k:g"),
    ]
    result = run(lines)
    # a2 (999): previous contact a1 on another line, abandoned 10:01 <= 10:05 -> repeat + FD.
    r999 = result.intervals["north|999|2026-11-21T10:00:00Z"]
    assert (r999["repeat_contacts"], r999["failure_demand"], r999["failure_demand_rate"]) == (
        1,
        1,
        1.0,
    )
    # Line 101, 10:00-10:15, 14 calls: a1 b1 c1 c2 d1 b2 b3 d2 n1 e2 f2 g1 g2 g3.
    #   c2: previous c1, but c1's abandon (10:09) is after 10:04     -> repeat, not FD
    #   b2: previous b1 ended 'unresolved' at 10:06 <= 10:07          -> repeat + FD
    #   b3: previous is the most recent, b2 (no exit), not b1         -> repeat, not FD
    #   d2: progress_chase with an earlier contact d1                  -> repeat + FD
    #   n1: progress_chase but no caller                               -> neither
    #   e2: e1 offered exactly W = 7 days earlier (window is closed)  -> repeat + FD (abandoned)
    #   f2: f1 offered 7 days + 1 s earlier                            -> neither
    #   g2: g1 has the same offered.at, not earlier                    -> neither
    #   g3: previous is g2 (tie at 10:13 -> later arrival), answered   -> repeat, not FD
    #       (picking g1, abandoned 10:13:20, would wrongly make it FD)
    # repeat = c2 b2 b3 d2 e2 g3 = 6; FD = b2 d2 e2 = 3; rate 3/14.
    r101 = result.intervals["north|101|2026-11-21T10:00:00Z"]
    assert r101["offered"] == 14
    assert (r101["repeat_contacts"], r101["failure_demand"]) == (6, 3)
    assert r101["failure_demand_rate"] == 3 / 14
    old = result.intervals["north|101|2026-11-14T10:00:00Z"]
    assert (old["offered"], old["repeat_contacts"], old["failure_demand"]) == (2, 0, 0)


def test_events_md_example() -> None:
    # The example of EVENTS.md: c-88 (101) abandoned after 96.75 s; c-91 (999) by the same
    # caller answered after 4.5 s, ended 185.5 s later + 45 s wrap; an incident for c-91.
    lines = [
        b'{"v":1,"id":"e-1","type":"call.offered","room":"north","at":"2026-11-21T22:15:03.250Z",'
        b'"call":"c-88","line":"101","caller":"k:7f3a9c"}',
        b'{"v":1,"id":"e-2","type":"call.abandoned","room":"north","at":"2026-11-21T22:16:40Z",'
        b'"call":"c-88"}',
        b'{"v":1,"id":"e-3","type":"call.offered","room":"north","at":"2026-11-21T22:18:00Z",'
        b'"call":"c-91","line":"999","caller":"k:7f3a9c"}',
        b'{"v":1,"id":"e-4","type":"call.answered","room":"north","at":"2026-11-21T22:18:04.5Z",'
        b'"call":"c-91","handler":"h-7"}',
        b'{"v":1,"id":"e-5","type":"call.ended","room":"north","at":"2026-11-21T22:21:10Z",'
        b'"call":"c-91","outcome":"incident","wrap_seconds":45}',
        b'{"v":1,"id":"e-6","type":"incident.created","room":"north","at":"2026-11-21T22:20:30Z",'
        b'"incident":"i-12","grade":"immediate","call":"c-91","area":"urban"}',
    ]
    result = run(lines)
    assert result.watermarks == {"north": "2026-11-21T22:21:10Z"}
    common = {
        "room": "north",
        "interval_start": "2026-11-21T22:15:00Z",
        "interval_end": "2026-11-21T22:30:00Z",
        "final": False,
        "definitions_version": 1,
        "short_abandon_seconds": 5,
        "offered": 1,
        "callbacks_requested": 0,
        "in_queue": 0,
        "orphaned": 0,
        "callback_successes": 0,
        "callback_success_rate": None,
    }
    # 101: one long abandon (96.75 s >= S and >= T=60): SL answered null (0 answered),
    # SL offered 0/(0+1-0) = 0, excl 0/(0+1-0) = 0, abandonment 1/1.
    assert result.intervals["north|101|2026-11-21T22:15:00Z"] == common | {
        "line": "101",
        "threshold_seconds": 60,
        "answered": 0,
        "abandoned": 1,
        "short_abandoned": 0,
        "answered_within_threshold": 0,
        "abandoned_within_threshold": 0,
        "service_level": {"answered": None, "offered": 0.0, "excl_early_abandons": 0.0},
        "abandonment_rate": 1.0,
        "asa_seconds": None,
        "answer_wait_p50_seconds": None,
        "answer_wait_p90_seconds": None,
        "max_wait_seconds": 96.75,
        "queue_seconds": 96.75,  # the one abandon's wait
        "answer_bands": {"under_10s": 0, "from_10s_to_60s": 0, "60s_and_over": 0},
        "aht_seconds": None,
        "repeat_contacts": 0,
        "failure_demand": 0,
        "failure_demand_rate": 0.0,
    }
    # 999: answered in 4.5 s (< 10), AHT 185.5 + 45 = 230.5; repeat of c-88, which had been
    # abandoned (22:16:40 <= 22:18:00) -> failure demand, rate 1/1.
    assert result.intervals["north|999|2026-11-21T22:15:00Z"] == common | {
        "line": "999",
        "threshold_seconds": 10,
        "answered": 1,
        "abandoned": 0,
        "short_abandoned": 0,
        "answered_within_threshold": 1,
        "abandoned_within_threshold": 0,
        "service_level": {"answered": 1.0, "offered": 1.0, "excl_early_abandons": 1.0},
        "abandonment_rate": 0.0,
        "asa_seconds": 4.5,
        "answer_wait_p50_seconds": 4.5,
        "answer_wait_p90_seconds": 4.5,
        "max_wait_seconds": 4.5,
        "queue_seconds": 4.5,  # the one answer's wait
        "answer_bands": {"under_10s": 1, "from_10s_to_60s": 0, "60s_and_over": 0},
        "aht_seconds": 230.5,
        "repeat_contacts": 1,
        "failure_demand": 1,
        "failure_demand_rate": 1.0,
    }
    # The incident: created, nothing dispatched or arrived yet; no clocks, 0 within target.
    assert result.attendance == {
        "north|grade:immediate|2026-11-21T22:15:00Z": {
            "room": "north",
            "grade": "immediate",
            "interval_start": "2026-11-21T22:15:00Z",
            "interval_end": "2026-11-21T22:30:00Z",
            "final": False,
            "created": 1,
            "dispatched": 0,
            "arrived": 0,
            "attend_from_call_mean_seconds": None,
            "attend_from_call_p90_seconds": None,
            "attend_from_dispatch_mean_seconds": None,
            "attend_from_dispatch_p90_seconds": None,
            "within_target_from_call": 0,
            "within_target_from_dispatch": 0,
            "attend_from_call_seconds": [],
            "attend_from_dispatch_seconds": [],
        }
    }
    assert result.handlers == {}


# ---------------------------------------------------------------------------------------------
# Arrival order: duplicates, reordering, conflicts, derivation rejections
# ---------------------------------------------------------------------------------------------

X1_ANSWERED = ev("call.answered", "12:00:20", call="x1")
X1_OFFERED = offered("x1", "12:00:00", line="101")
ORDERING = [
    X1_ANSWERED,  # before its call.offered: waits, then is adopted (wait 20 s)
    X1_OFFERED,
    X1_ANSWERED,  # exact duplicate
    X1_OFFERED,  # exact duplicate
    offered("x2", "12:01:00", line="101"),
    ev("call.abandoned", "12:01:30", call="x2"),
    ev("call.answered", "12:01:20", call="x2"),  # earlier in event time: the exit (wait 20)
    ev("call.callback_requested", "12:01:20", call="x2"),  # same at, later arrival: loses
    offered("x3", "12:02:00", line="101"),
    ev("call.abandoned", "12:01:59", call="x3"),  # before its offer: negative_wait
    ev("call.answered", "12:02:10", call="x3"),  # the exit (wait 10)
    offered("x4", "12:03:00", line="101"),
    ev("call.answered", "12:03:05", call="x4"),  # wait 5
    ev("call.ended", "12:03:00", call="x4"),  # before the answer: invalid_end
    ev("call.ended", "12:05:05", call="x4", wrap_seconds=10),  # the end: 120 + 10 = 130
    ev("call.ended", "12:06:00", call="x4"),  # a second end: invalid_end
    offered("x5", "12:04:00", line="101"),
    ev("call.abandoned", "12:04:30", call="x5"),  # wait 30
    ev("callback.attempted", "12:10:00", call="x5", success=True),  # invalid_callback
    ev("call.ended", "12:05:00", call="x5"),  # not answered: invalid_end
    offered("x1", "12:05:00", line="101"),  # x1 already accepted: conflict
]
KEY_101 = "north|101|2026-11-21T12:00:00Z"


def test_reordered_duplicate_and_conflicting_events() -> None:
    # Final at 12:15 + 2 h = 14:15:00 exactly (now >= end + grace).
    result = run([*ORDERING, offered("tick", "14:15:00", line="online")])
    record = result.intervals[KEY_101]
    # 5 calls: answered x1 (20), x2 (20), x3 (10), x4 (5); abandoned x5 (30, not short, < 60).
    # SL answered 4/4; offered 4/(4+1-0) = 0.8; excl 4/(4+1-1) = 1; abandonment 1/5.
    # Waits sorted [5, 10, 20, 20]: ASA 55/4 = 13.75; p50 rank 2 -> 10; p90 rank 4 -> 20.
    # Bands: 5 -> under 10; 10, 20, 20 -> 10-60 (10 s is in the middle band). Max wait 30.
    assert record["final"] is True
    assert (record["offered"], record["answered"], record["abandoned"]) == (5, 4, 1)
    assert (record["callbacks_requested"], record["in_queue"], record["orphaned"]) == (0, 0, 0)
    assert (record["answered_within_threshold"], record["abandoned_within_threshold"]) == (4, 1)
    assert record["short_abandoned"] == 0
    assert record["service_level"] == {"answered": 1.0, "offered": 0.8, "excl_early_abandons": 1.0}
    assert record["abandonment_rate"] == 0.2
    assert record["asa_seconds"] == 13.75
    assert record["answer_wait_p50_seconds"] == 10.0
    assert record["answer_wait_p90_seconds"] == 20.0
    assert record["max_wait_seconds"] == 30.0
    assert record["answer_bands"] == {"under_10s": 1, "from_10s_to_60s": 3, "60s_and_over": 0}
    assert record["aht_seconds"] == 130.0
    # Derivation verdicts count now that the interval is final: conflicting exits on x2 (the
    # abandon and the callback request), x3's negative wait, x4's two bad ends plus x5's end,
    # x5's attempt.
    assert result.rejected == {
        "duplicate": 2,
        "conflict": 1,
        "conflicting_exit": 2,
        "negative_wait": 1,
        "invalid_end": 3,
        "invalid_callback": 1,
    }


def test_derivation_rejections_wait_for_the_interval_to_be_final() -> None:
    # One microsecond before 14:15: still open, the figures are the same but only the
    # arrival-time rejections (duplicates, conflict) are counted yet.
    result = run([*ORDERING, offered("tick", "14:14:59.999999", line="online")])
    assert result.intervals[KEY_101]["final"] is False
    assert result.intervals[KEY_101]["answered"] == 4
    assert result.rejected == {"duplicate": 2, "conflict": 1}
    assert result.watermarks["north"] == "2026-11-21T14:14:59.999999Z"


# ---------------------------------------------------------------------------------------------
# Too late, orphans, waiting children
# ---------------------------------------------------------------------------------------------

LATE = [
    offered("y1", "08:00:00"),
    offered("z1", "10:15:00", line="101"),  # watermark 10:15 = 08:15 + 2 h: 08:00-08:15 final
    ev("call.answered", "08:00:05", call="y1"),  # its call's interval is final: too_late
    offered("y2", "08:14:00"),  # its own interval is final: too_late
    ev("call.abandoned", "08:01:00", call="ghost"),  # unknown call, own interval final: orphan
    ev("call.answered", "10:16:00", call="later"),  # unknown call, interval open: waits
    ev("call.answered", "10:20:00", call="never"),  # waits (until 10:30 + 2 h)
    ev("incident.dispatched", "08:00:00", incident="i-ghost"),  # waits (incident horizon 50 h)
    offered("later", "10:15:30"),  # adopts its answer: wait 30 s
    offered("z2", "12:29:59.999999", line="101"),  # 10:15-10:30 not final yet
]


def test_too_late_orphan_and_waiting_children() -> None:
    result = run(LATE)
    assert result.rejected == {"too_late": 2, "orphan": 1}
    assert result.waiting == 2  # 'never' and 'i-ghost'
    early = result.intervals["north|999|2026-11-21T08:00:00Z"]
    # y1 alone (y2 too late, its answer too late): no exit in a final interval -> orphaned.
    assert (early["final"], early["offered"], early["answered"], early["orphaned"]) == (
        True,
        1,
        0,
        1,
    )
    assert early["max_wait_seconds"] is None
    adopted = result.intervals["north|999|2026-11-21T10:15:00Z"]
    # 'later' answered after 30 s: not within 10 s, band 10-60 s.
    assert (adopted["final"], adopted["answered"], adopted["answered_within_threshold"]) == (
        False,
        1,
        0,
    )
    assert adopted["asa_seconds"] == 30.0
    assert adopted["answer_bands"]["from_10s_to_60s"] == 1


def test_waiting_child_becomes_orphan_when_its_own_interval_is_final() -> None:
    # At 12:30:00 the interval of 'never''s answer (10:15-10:30) is final: orphan.
    # Re-sending the too-late answer of y1 is a duplicate: a too-late event is valid, so its
    # id was remembered.
    result = run([*LATE, offered("z3", "12:30:00", line="101"), LATE[2]])
    assert result.rejected == {"too_late": 2, "orphan": 2, "duplicate": 1}
    assert result.waiting == 1  # 'i-ghost' still waits for its incident
    assert result.intervals["north|999|2026-11-21T10:15:00Z"]["final"] is True


def test_watermark_includes_the_arriving_event_before_it_is_judged() -> None:
    # Call q (10:00-10:15, final at 12:15). An end timed 12:15:00 moves the watermark to 12:15
    # first, so its own call's interval is final: too late. One timed 12:14:59 is accepted.
    start = [offered("q", "10:00:00", line="101"), ev("call.answered", "10:00:10", call="q")]
    late = run([*start, ev("call.ended", "12:15:00", call="q")])
    assert late.rejected == {"too_late": 1}
    assert late.intervals["north|101|2026-11-21T10:00:00Z"]["aht_seconds"] is None
    in_time = run([*start, ev("call.ended", "12:14:59", call="q", wrap_seconds=1.5)])
    assert in_time.rejected == {}
    # (12:14:59 - 10:00:10) + 1.5 = 8089 + 1.5 s
    assert in_time.intervals["north|101|2026-11-21T10:00:00Z"]["aht_seconds"] == 8090.5


# ---------------------------------------------------------------------------------------------
# Incidents and attendance
# ---------------------------------------------------------------------------------------------

INCIDENTS = [
    offered("c-91", "22:18:00"),
    ev("call.answered", "22:18:04.5", call="c-91"),
    ev("incident.created", "22:20:30", incident="i1", grade="immediate", call="c-91", area="urban"),
    ev("incident.dispatched", "22:21:00", incident="i1"),
    ev("incident.created", "22:22:00", incident="i2", grade="immediate"),  # no area: 1200 s
    ev("incident.dispatched", "22:25:00", incident="i2"),
    ev("incident.dispatched", "22:24:00", incident="i2"),  # earlier at: the one that counts
    ev("incident.created", "22:23:00", incident="i3", grade="immediate", call="nope", area="rural"),
    ev("incident.created", "22:29:00", incident="i4", grade="immediate", area="urban"),
    ev("incident.dispatched", "22:30:00", incident="i4"),
    ev("incident.created", "22:16:00", incident="i5", grade="resolution"),
    ev("incident.arrived", "22:50:00", incident="i6"),  # before its incident: waits, adopted
    ev("incident.created", "22:20:00", incident="i6", grade="priority"),
    ev("incident.dispatched", "22:21:00", incident="i6"),
    ev("incident.arrived", "22:33:00", incident="i1"),
    ev("incident.arrived", "22:40:00", incident="i3"),
    ev("incident.arrived", "22:45:00", incident="i2"),
    ev("incident.dispatched", "22:46:00", incident="i5"),
    ev("incident.arrived", "23:16:00", incident="i5"),
    ev("incident.created", "22:31:00", incident="i1", grade="immediate"),  # conflict
    ev("incident.arrived", "22:35:00", incident="i1"),  # a repeat arrival changes nothing
]


def test_attendance_with_both_clocks() -> None:
    result = run(INCIDENTS)
    assert result.rejected == {"conflict": 1}
    assert result.waiting == 0
    base = {"room": "north", "interval_start": "2026-11-21T22:15:00Z"}
    base |= {"interval_end": "2026-11-21T22:30:00Z", "final": False}
    # immediate: created i1 i2 i3 i4; dispatched i1 i2 i4; arrived i1 i2 i3.
    # From call: i1 22:33 - 22:18 (its call c-91) = 900; i2 22:45 - 22:22 (created, no call)
    #   = 1380; i3 22:40 - 22:23 (its call 'nope' is unknown: created) = 1020.
    #   Mean 3300/3 = 1100; p90 rank ceil(2.7) = 3 of [900, 1020, 1380] -> 1380.
    #   Within: i1 900 <= 900 (urban), i3 1020 <= 1200 (rural); i2 1380 > 1200 -> 2.
    # From dispatch: i1 22:33 - 22:21 = 720; i2 22:45 - 22:24 (first by at) = 1260; i3 none.
    #   Mean 990; p90 rank ceil(1.8) = 2 -> 1260. Within: i1 (720 <= 900) -> 1.
    assert result.attendance["north|grade:immediate|2026-11-21T22:15:00Z"] == base | {
        "grade": "immediate",
        "created": 4,
        "dispatched": 3,
        "arrived": 3,
        "attend_from_call_mean_seconds": 1100.0,
        "attend_from_call_p90_seconds": 1380.0,
        "attend_from_dispatch_mean_seconds": 990.0,
        "attend_from_dispatch_p90_seconds": 1260.0,
        "within_target_from_call": 2,
        "within_target_from_dispatch": 1,
        "attend_from_call_seconds": [900.0, 1020.0, 1380.0],
        "attend_from_dispatch_seconds": [720.0, 1260.0],
    }
    # priority i6 (arrival came first): 22:50 - 22:20 = 1800 and 22:50 - 22:21 = 1740,
    # both <= 3600.
    assert result.attendance["north|grade:priority|2026-11-21T22:15:00Z"] == base | {
        "grade": "priority",
        "created": 1,
        "dispatched": 1,
        "arrived": 1,
        "attend_from_call_mean_seconds": 1800.0,
        "attend_from_call_p90_seconds": 1800.0,
        "attend_from_dispatch_mean_seconds": 1740.0,
        "attend_from_dispatch_p90_seconds": 1740.0,
        "within_target_from_call": 1,
        "within_target_from_dispatch": 1,
        "attend_from_call_seconds": [1800.0],
        "attend_from_dispatch_seconds": [1740.0],
    }
    # resolution i5: 23:16 - 22:16 = 3600, 23:16 - 22:46 = 1800; no target -> null.
    assert result.attendance["north|grade:resolution|2026-11-21T22:15:00Z"] == base | {
        "grade": "resolution",
        "created": 1,
        "dispatched": 1,
        "arrived": 1,
        "attend_from_call_mean_seconds": 3600.0,
        "attend_from_call_p90_seconds": 3600.0,
        "attend_from_dispatch_mean_seconds": 1800.0,
        "attend_from_dispatch_p90_seconds": 1800.0,
        "within_target_from_call": None,
        "within_target_from_dispatch": None,
        "attend_from_call_seconds": [3600.0],
        "attend_from_dispatch_seconds": [1800.0],
    }
    assert len(result.attendance) == 3


def test_attendance_uses_the_long_horizon_for_late_and_orphaned_incident_events() -> None:
    lines = [
        *INCIDENTS,
        # Next morning: call intervals of the 21st are final, attendance ones are not.
        ev("incident.arrived", "2026-11-22T10:00:00Z", incident="i4"),
        # 22:30 + 50 h: the attendance records of 22:15-22:30 become final.
        offered("tick", "2026-11-24T00:30:00Z", line="online"),
        ev("incident.arrived", "2026-11-24T00:31:00Z", incident="i4"),  # too late
        ev("incident.dispatched", "22:20:00", incident="i-ghost"),  # orphan at once
    ]
    result = run(lines)
    assert result.rejected == {"conflict": 1, "too_late": 1, "orphan": 1}
    record = result.attendance["north|grade:immediate|2026-11-21T22:15:00Z"]
    # i4 now arrived: from call (created 22:29) 11 h 31 min = 41460 s; from dispatch (22:30)
    # 41400 s. From call [900, 1020, 1380, 41460]: mean 44760/4 = 11190, p90 rank 4 -> 41460.
    # From dispatch [720, 1260, 41400]: mean 43380/3 = 14460, p90 rank 3 -> 41400. Within
    # targets unchanged (2 and 1).
    assert record["final"] is True
    assert (record["created"], record["dispatched"], record["arrived"]) == (4, 3, 4)
    assert record["attend_from_call_mean_seconds"] == 11190.0
    assert record["attend_from_call_p90_seconds"] == 41460.0
    assert record["attend_from_dispatch_mean_seconds"] == 14460.0
    assert record["attend_from_dispatch_p90_seconds"] == 41400.0
    assert (record["within_target_from_call"], record["within_target_from_dispatch"]) == (2, 1)


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


def state(handler: str, at: str, value: str) -> bytes:
    return ev("handler.state", at, handler=handler, state=value, eid=f"{handler}:{at}:{value}")


HANDLERS = [
    state("h2", "09:05:00", "logged_out"),
    state("h1", "09:10:00", "available"),
    state("h3", "09:12:00", "available"),
    state("h3", "09:12:00", "unavailable"),  # same at, later arrival: 'available' lasts 0 s
    state("h1", "09:14:00", "on_call"),
    state("h2", "09:16:00", "on_call"),
    state("h1", "09:20:00", "wrap_up"),
    state("h1", "09:22:00", "available"),
    state("h2", "09:25:00", "unavailable"),
]


def handler_record(start: str, end: str, final: bool, **seconds: float) -> dict[str, Any]:
    spent = dict.fromkeys(("available", "on_call", "wrap_up", "unavailable", "logged_out"), 0.0)
    spent |= seconds
    busy = spent["on_call"] + spent["wrap_up"]
    base = spent["available"] + busy
    return {
        "room": "north",
        "interval_start": f"2026-11-21T{start}:00Z",
        "interval_end": f"2026-11-21T{end}:00Z",
        "final": final,
        "seconds": spent,
        "occupancy": busy / base if base else None,
    }


def test_handler_states_across_an_interval_boundary() -> None:
    # Now = 09:25 (last event). Records for 09:00 and 09:15 (the interval holding now).
    # 09:00-09:15: h2 logged_out 09:05-09:15 = 600; h1 available 09:10-09:14 = 240, on_call
    #   09:14-09:15 = 60; h3 unavailable 09:12-09:15 = 180. Occupancy 60/(240+60) = 0.2.
    # 09:15-09:25: h1 on_call 300, wrap_up 120, available 09:22-09:25 = 180; h2 logged_out 60,
    #   on_call 540; h3 unavailable 600. Occupancy (840+120)/(180+840+120) = 16/19.
    result = run(HANDLERS)
    assert result.handlers == {
        "north|handlers|2026-11-21T09:00:00Z": handler_record(
            "09:00", "09:15", False, available=240, on_call=60, unavailable=180, logged_out=600
        ),
        "north|handlers|2026-11-21T09:15:00Z": handler_record(
            "09:15",
            "09:30",
            False,
            available=180,
            on_call=840,
            wrap_up=120,
            unavailable=600,
            logged_out=60,
        ),
    }
    assert result.handlers["north|handlers|2026-11-21T09:00:00Z"]["occupancy"] == 0.2
    assert result.handlers["north|handlers|2026-11-21T09:15:00Z"]["occupancy"] == 16 / 19


def test_handler_records_run_up_to_now_and_close_with_grace() -> None:
    # A call at 11:30 moves now to 11:30 = 09:30 + 2 h: 09:00 and 09:15 are final; a state
    # change timed 09:20:30 then arrives too late. Records 09:00 ... 11:30 = 11 intervals.
    lines = [*HANDLERS, offered("tick", "11:30:00", line="101"), state("h1", "09:20:30", "on_call")]
    result = run(lines)
    assert result.rejected == {"too_late": 1}
    assert len(result.handlers) == 11
    # 09:15-09:30 now runs to its end: h1 available 09:22-09:30 = 480, h2 unavailable
    # 09:25-09:30 = 300, h3 unavailable 900 -> occupancy 960/(480+960) = 2/3.
    assert result.handlers["north|handlers|2026-11-21T09:15:00Z"] == handler_record(
        "09:15",
        "09:30",
        True,
        available=480,
        on_call=840,
        wrap_up=120,
        unavailable=1200,
        logged_out=60,
    )
    # 10:00-10:15: h1 available 900, h2 and h3 unavailable 1800; occupancy 0/900 = 0.
    # Final only at 12:15.
    assert result.handlers["north|handlers|2026-11-21T10:00:00Z"] == handler_record(
        "10:00", "10:15", False, available=900, unavailable=1800
    )
    assert result.handlers["north|handlers|2026-11-21T10:00:00Z"]["occupancy"] == 0.0
    # 11:30-11:45 holds now: no time spent yet, occupancy null.
    assert result.handlers["north|handlers|2026-11-21T11:30:00Z"] == handler_record(
        "11:30", "11:45", False
    )
    assert result.handlers["north|handlers|2026-11-21T09:00:00Z"]["final"] is True


# ---------------------------------------------------------------------------------------------
# Input handling: blank lines, batches, invalid events, rooms
# ---------------------------------------------------------------------------------------------


def test_batches_invalid_events_and_rooms() -> None:
    def obj(line: bytes) -> Any:
        return orjson.loads(line)

    naive = obj(offered("a3", "10:01:00", line="101")) | {"at": "2026-11-21T10:01:00"}
    no_line = obj(offered("a7", "10:03:00", line="101"))
    del no_line["line"]
    lines = [
        b"not json",  # malformed
        b"",
        b"   \n",  # blank lines are skipped
        orjson.dumps(
            [
                obj(offered("a1", "10:00:00", line="101")),
                obj(ev("call.answered", "10:00:04", call="a1")),
            ]
        ),
        orjson.dumps(
            [
                obj(offered("a2", "10:00:30", line="101")),
                obj(offered("s0", "10:00:30", line="101", room="south")),
            ]
        ),  # mixed_batch: rejected whole, a2 is not counted
        orjson.dumps([naive, obj(offered("a4", "10:02:00", line="101"))]),  # invalid + accepted
        offered("a5", "10:02:30", line="101", caller="+44 7700 900123"),  # raw_phone_number
        offered("a6", "2027-01-02T00:00:01Z", line="101"),  # > 1 day ahead of the wall clock
        orjson.dumps(no_line),  # invalid (no line), so its id is not remembered ...
        offered("a7", "10:03:00", line="101", eid=no_line["id"]),  # ... and this is accepted
        offered("e1", "2027-01-02T00:00:00Z", room="east"),  # exactly 1 day ahead: valid
        offered("s1", "23:00:00.25", room="south"),
    ]
    result = run(lines)
    assert result.rejected == {
        "malformed": 1,
        "mixed_batch": 1,
        "invalid": 3,
        "raw_phone_number": 1,
    }
    assert result.watermarks == {
        "north": "2026-11-21T10:03:00Z",
        "east": "2027-01-02T00:00:00Z",
        "south": "2026-11-21T23:00:00.25Z",
    }
    # North 101, 10:00-10:15: a1 (answered after 4 s), a4, a7 -> 3 offered, 2 still queued.
    north = result.intervals["north|101|2026-11-21T10:00:00Z"]
    assert (north["offered"], north["answered"], north["in_queue"]) == (3, 1, 2)
    assert north["final"] is False  # other rooms' watermarks never close north's intervals
    assert set(result.intervals) == {
        "north|101|2026-11-21T10:00:00Z",
        "east|999|2027-01-02T00:00:00Z",
        "south|999|2026-11-21T23:00:00Z",
    }


@pytest.mark.parametrize("grace", [0, 7200])
def test_grace_setting_decides_finality(grace: int) -> None:
    # With no grace an interval is final as soon as now reaches its end (22:30:00).
    lines = [offered("g", "22:20:00"), offered("t", "22:30:00", line="online")]
    record = run(lines, grace_seconds=grace).intervals["north|999|2026-11-21T22:15:00Z"]
    assert record["final"] is (grace == 0)
    # No exit: orphaned once final; otherwise in queue with a current wait of 600 s.
    assert (record["orphaned"], record["in_queue"]) == ((1, 0) if grace == 0 else (0, 1))
    assert record["max_wait_seconds"] == (None if grace == 0 else 600.0)


def test_thresholds_are_strict_at_their_boundaries() -> None:
    # 999 (T 10 s, S 5 s): an abandon after exactly 5 s is not short but is within T; an answer
    # after exactly 10 s is not within T (band 10-60); one after exactly 60 s is in '60 and over'.
    lines = [
        offered("k1", "10:00:00"),
        ev("call.abandoned", "10:00:05", call="k1"),
        offered("k2", "10:01:00"),
        ev("call.answered", "10:01:10", call="k2"),
        offered("k3", "10:02:00"),
        ev("call.answered", "10:03:00", call="k3"),
    ]
    record = run(lines).intervals["north|999|2026-11-21T10:00:00Z"]
    assert (record["short_abandoned"], record["abandoned_within_threshold"]) == (0, 1)
    assert record["answered_within_threshold"] == 0
    assert record["answer_bands"] == {"under_10s": 0, "from_10s_to_60s": 1, "60s_and_over": 1}
    # SL offered 0/(2+1-0) = 0; excl 0/(2+1-1) = 0; abandonment (1-0)/(3-0) = 1/3.
    assert record["service_level"] == {"answered": 0.0, "offered": 0.0, "excl_early_abandons": 0.0}
    assert record["abandonment_rate"] == 1 / 3
