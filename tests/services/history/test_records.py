"""Attendance and handler records and alert episodes in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.history.store import HistoryStore, StoreError


@pytest.fixture
def store(store_url):
    opened = HistoryStore.open(store_url, upgrade=True)
    yield opened
    opened.close()


def attendance(start: str, grade: str = "immediate", created: int = 3, final: bool = True,
               room: str = "north") -> dict[str, object]:
    return {"room": room, "grade": grade, "interval_start": start,
            "interval_end": start.replace(":00:00Z", ":15:00Z"), "final": final,
            "created": created, "dispatched": created, "arrived": 2,
            "attend_from_call_mean_seconds": 842.5, "attend_from_call_p90_seconds": None,
            "within_target_from_call": 1, "within_target_from_dispatch": 2}


def handlers(start: str, on_call: float = 5400.0, final: bool = True) -> dict[str, object]:
    return {"room": "north", "interval_start": start,
            "interval_end": start.replace(":00:00Z", ":15:00Z"), "final": final,
            "seconds": {"available": 1800.0, "on_call": on_call, "wrap_up": 900.0,
                        "unavailable": 600.0, "logged_out": 0.0}, "occupancy": 0.75}


def episode(started: str, resolved: str | None = None, rule: str = "long_wait",
            subject: str = "999", **extra: object) -> dict[str, object]:
    return {"id": f"north:{rule}:{subject}", "room": "north", "rule": rule, "subject": subject,
            "severity": "critical", "started_at": started, "resolved_at": resolved,
            "message": "999: a caller has waited 1 min 15 s (limit 1 min)",
            "figures": {"value": 75.0, "threshold": 60.0, "line": "999"}, **extra}


def test_attendance_records_come_back_whole_oldest_first_then_by_grade(store):
    records = [attendance("2026-11-21T23:00:00Z", "priority"),
               attendance("2026-11-21T22:00:00Z", "priority"),
               attendance("2026-11-21T22:00:00Z", "immediate"),
               attendance("2026-11-21T22:00:00Z", room="south")]
    assert store.upsert_attendance(records) == 4
    assert store.upsert_attendance(records) == 4  # replayed: still one row each
    got = store.attendance("north", datetime(2026, 11, 21, tzinfo=UTC),
                           datetime(2026, 11, 22, tzinfo=UTC))
    assert got == [records[2], records[1], records[0]]
    assert store.attendance("north", "2026-11-21T22:00:00Z", "2026-11-21T23:00:00Z",
                            grade="priority") == [records[1]]


def test_a_final_attendance_record_is_never_replaced_by_an_earlier_update(store):
    store.upsert_attendance([attendance("2026-11-21T22:00:00Z", created=5, final=True)])
    store.upsert_attendance([attendance("2026-11-21T22:00:00Z", created=2, final=False)])
    assert [r["created"] for r in store.attendance("north")] == [5]


def test_handler_records_are_kept_per_interval(store):
    records = [handlers("2026-11-21T22:00:00Z", 10.0, final=False),
               handlers("2026-11-21T22:00:00Z", 20.0), handlers("2026-11-21T23:00:00Z", 30.0),
               handlers("2026-11-21T22:00:00Z", 15.0, final=False)]  # a stale replay
    store.upsert_handlers(records)
    got = store.handlers("north", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z")
    assert [r["seconds"]["on_call"] for r in got] == [20.0, 30.0]
    assert got[1] == records[2]


@pytest.mark.parametrize(("bad", "needle"), [({"grade": None}, "grade"),
                                             ({"interval_start": "2026-11-21T22:05:00Z"},
                                              "quarter hour")])
def test_bad_attendance_records_are_refused_naming_the_field(store, bad, needle):
    with pytest.raises(StoreError, match=needle):
        store.upsert_attendance([attendance("2026-11-21T22:00:00Z") | bad])


def test_an_alert_episode_is_saved_firing_then_resolved_and_never_reopened(store):
    firing = episode("2026-11-21T22:18:00.5Z")
    resolved = episode("2026-11-21T22:18:00.5Z", "2026-11-21T22:25:00Z")
    assert store.save_alert_episodes([firing]) == 1
    store.save_alert_episodes([resolved])
    store.save_alert_episodes([firing])  # the firing transition replayed after a restart
    [got] = store.alert_history("north", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z")
    assert got == {**resolved, "started_at": "2026-11-21T22:18:00.5Z",
                   "acknowledged_by": None, "acknowledged_at": None, "note": None}


def test_alert_history_holds_episodes_overlapping_the_range_oldest_first(store):
    store.save_alert_episodes([
        episode("2026-11-21T20:00:00Z", "2026-11-21T21:00:00Z", subject="101"),
        episode("2026-11-21T21:30:00Z", "2026-11-21T22:30:00Z"),       # overlaps the start
        episode("2026-11-21T22:10:00Z", None, rule="staffing_gap"),      # still firing
        episode("2026-11-21T22:05:00Z", "2026-11-21T22:06:00Z", subject="112"),
        episode("2026-11-21T23:00:00Z", None, subject="101"),            # after the end
    ])
    got = store.alert_history("north", datetime(2026, 11, 21, 22, tzinfo=UTC),
                              datetime(2026, 11, 21, 23, tzinfo=UTC))
    assert [(e["started_at"], e["subject"]) for e in got] == [
        ("2026-11-21T21:30:00Z", "999"), ("2026-11-21T22:05:00Z", "112"),
        ("2026-11-21T22:10:00Z", "999")]
    assert store.alert_history("south", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z") == []


def test_an_acknowledgement_is_kept_when_the_episode_resolves(store):
    store.save_alert_episodes([episode("2026-11-21T22:18:00Z")])
    at = datetime(2026, 11, 21, 22, 20, tzinfo=UTC)
    acked = store.acknowledge_alert("north", "north:long_wait:999", "2026-11-21T22:18:00Z",
                                    "sgt.jones", "two handlers called in", at)
    assert acked is not None
    assert (acked["acknowledged_by"], acked["acknowledged_at"], acked["note"]) == (
        "sgt.jones", "2026-11-21T22:20:00Z", "two handlers called in")
    store.save_alert_episodes([episode("2026-11-21T22:18:00Z", "2026-11-21T22:30:00Z")])
    [got] = store.alert_history("north", "2026-11-21T22:00:00Z", "2026-11-21T23:00:00Z")
    assert got["resolved_at"] == "2026-11-21T22:30:00Z" and got["acknowledged_by"] == "sgt.jones"


def test_acknowledging_an_unknown_episode_finds_nothing(store):
    store.save_alert_episodes([episode("2026-11-21T22:18:00Z")])
    at = datetime(2026, 11, 21, 22, 20, tzinfo=UTC)
    assert store.acknowledge_alert("north", "north:long_wait:999", "2026-11-21T22:00:00Z",
                                   "x", "", at) is None
    assert store.acknowledge_alert("south", "north:long_wait:999", "2026-11-21T22:18:00Z",
                                   "x", "", at) is None


def interval(start: str, offered: int, final: bool = True) -> dict[str, object]:
    return {"room": "north", "line": "999", "interval_start": start,
            "interval_end": start.replace(":00:00Z", ":15:00Z"), "final": final,
            "offered": offered, "answered": offered, "abandoned": 0, "aht_seconds": 210.0}


def test_records_of_every_kind_are_written_together_as_the_one_kind_calls_write(store):
    start = "2026-11-21T22:00:00Z"
    written = store.upsert_records({
        "interval": [interval(start, 4, final=False), interval(start, 6)],
        "attendance": [attendance(start, created=5), attendance(start, "priority")],
        "handlers": [handlers(start, 4000.0)],
    })
    assert written == 4  # the interval's two versions are one row
    store.upsert_records({"interval": [interval(start, 2, final=False)],  # a stale replay
                          "attendance": [attendance(start, created=9, final=False)],
                          "handlers": [handlers(start, 4500.0)]})
    assert [r["offered"] for r in store.intervals("north")] == [6]
    assert [(r["grade"], r["created"]) for r in store.attendance("north")] == [
        ("immediate", 5), ("priority", 3)]
    assert [r["seconds"]["on_call"] for r in store.handlers("north")] == [4500.0]
    # the same records through the one-kind calls are stored the same, to the byte
    texts = {kind: store.record_texts(kind, "north")
             for kind in ("interval", "attendance", "handlers")}
    store.upsert_intervals([interval(start, 6)])
    store.upsert_attendance([attendance(start, created=5), attendance(start, "priority")])
    store.upsert_handlers([handlers(start, 4500.0)])
    assert texts == {kind: store.record_texts(kind, "north") for kind in texts}


@pytest.mark.parametrize(("records", "needle"), [
    ({"interval": [interval("2026-11-21T22:00:00Z", 1)], "plans": [{"room": "north"}]},
     "plans"),
    ({"interval": [interval("2026-11-21T22:00:00Z", 1)],
      "attendance": [attendance("2026-11-21T22:00:00Z") | {"grade": None}]}, "grade"),
])
def test_a_bad_record_or_kind_refuses_the_whole_call_writing_nothing(store, records, needle):
    with pytest.raises(StoreError, match=needle):
        store.upsert_records(records)
    assert store.intervals("north") == []
