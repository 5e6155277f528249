"""The worker's history sink: records reach the store, through a database outage and restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.history.sink import HistorySink, episode_of
from services.history.store import HistoryStore


def interval(n: int, room: str = "north") -> tuple[str, dict[str, object]]:
    start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=15 * n)
    return "interval", {"room": room, "line": "999", "final": True, "offered": n,
                        "interval_start": start.strftime("%Y-%m-%dT%H:%M:%SZ")}


def alert(state: str, resolved: str | None = None) -> tuple[str, dict[str, object]]:
    return "alert", {"id": "north:long_wait:999", "rule": "long_wait", "room": "north",
                     "line": "999", "incident": None, "severity": "critical", "state": state,
                     "started_at": "2026-11-01T00:18:00Z", "resolved_at": resolved,
                     "value": 75.0, "threshold": 60.0, "message": "999: a caller waited"}


def test_an_alert_transition_becomes_an_episode_with_its_figures():
    episode = episode_of(alert("firing")[1])
    assert episode["subject"] == "999" and episode["resolved_at"] is None
    assert episode["figures"] == {"value": 75.0, "threshold": 60.0, "line": "999",
                                  "incident": None}


def test_every_kind_reaches_the_store(store_url, tmp_path):
    with HistoryStore.open(store_url, upgrade=True) as store:
        sink = HistorySink(store, tmp_path / "spool")
        sink.put([interval(1), alert("firing"),
                  ("handlers", {"room": "north", "interval_start": "2026-11-01T00:00:00Z",
                                "final": True, "occupancy": 0.5}),
                  ("attendance", {"room": "north", "grade": "priority", "final": True,
                                  "interval_start": "2026-11-01T00:00:00Z", "created": 2}),
                  ("interval", {"room": "north", "line": "999", "final": True,
                                "interval_start": "not a time"}),
                  alert("resolved", "2026-11-01T00:30:00Z")])
        assert sink.drain(30)
        sink.close()
        assert [r["offered"] for r in store.intervals("north")] == [1]
        assert [r["created"] for r in store.attendance("north")] == [2]
        assert [r["occupancy"] for r in store.handlers("north")] == [0.5]
        [episode] = store.alert_history("north", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
        assert episode["resolved_at"] == "2026-11-01T00:30:00Z"
        assert sink.skipped == 1


def test_a_malformed_alert_is_skipped_and_the_records_after_it_written(tmp_path):
    with HistoryStore.open(f"sqlite:///{tmp_path / 'history.db'}") as store:
        sink = HistorySink(store, tmp_path / "spool")
        _, broken = alert("firing")
        del broken["room"]
        sink.put([("alert", broken), interval(1)])
        assert sink.drain(30)
        sink.put([interval(2), alert("firing")])
        assert sink.drain(30)
        sink.close()
        assert [r["offered"] for r in store.intervals("north")] == [1, 2]
        assert len(store.alert_history("north", "2026-11-01T00:00:00Z",
                                       "2026-11-02T00:00:00Z")) == 1
        assert sink.skipped == 1


def test_records_wait_in_memory_and_on_disk_while_postgresql_is_down(postgres, tmp_path):
    postgres.reset()
    store = HistoryStore.open(postgres.url, upgrade=True)
    sink = HistorySink(store, tmp_path / "spool", memory_items=50)
    try:
        sink.put([interval(n) for n in range(10)])
        assert sink.drain(30)
        postgres.stop()
        sink.put([interval(n) for n in range(10, 400)])  # 50 in memory, the rest on disk
        assert not sink.drain(2)
        assert not sink.available
        assert list((tmp_path / "spool").rglob("*.jsonl"))
        postgres.start()
        assert sink.drain(60)
        assert sink.available
        assert [r["offered"] for r in store.intervals("north")] == list(range(400))
        assert not list((tmp_path / "spool").rglob("*.jsonl"))
    finally:
        if not postgres.running():
            postgres.start()
        sink.close(1)
        store.close()


def test_records_spooled_by_a_stopped_process_are_written_by_the_next(postgres, tmp_path):
    postgres.reset()
    store = HistoryStore.open(postgres.url, upgrade=True)
    try:
        postgres.stop()
        first = HistorySink(store, tmp_path / "spool", memory_items=10)
        first.put([interval(n) for n in range(100)])
        first.close(timeout=1)  # the store is down: everything stays on disk
        assert first.pending == 100
        postgres.start()
        second = HistorySink(store, tmp_path / "spool")
        assert second.drain(60)
        second.close()
        assert [r["offered"] for r in store.intervals("north")] == list(range(100))
    finally:
        if not postgres.running():
            postgres.start()
        store.close()


def test_a_full_spool_drops_records_and_counts_them(postgres, tmp_path):
    postgres.reset()
    store = HistoryStore.open(postgres.url, upgrade=True)
    try:
        postgres.stop()
        sink = HistorySink(store, tmp_path / "spool", memory_items=0, disk_bytes=2000)
        sink.put([interval(n) for n in range(100)])
        assert sink.dropped > 0 and sink.pending + sink.dropped == 100
        sink.close(0.5)
    finally:
        if not postgres.running():
            postgres.start()
        store.close()
