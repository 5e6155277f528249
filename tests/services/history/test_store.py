"""The history store: idempotent interval upserts, plans for the stream's alerts, two processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from services.history.store import HistoryStore, StoreError

ROOT = Path(__file__).resolve().parents[3]


def record(start: str, offered: int = 5, final: bool = True, line: str = "999",
           room: str = "north", **extra: object) -> dict[str, object]:
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return {"room": room, "line": line, "interval_start": start,
            "interval_end": (begin + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "final": final, "offered": offered, "answered": offered, "abandoned": 0,
            "aht_seconds": 200.0, "service_level": {"answered": 1.0}, **extra}


def plan_row(start: str, required: int = 7, line: str = "999") -> dict[str, object]:
    return {"room": "north", "line": line, "interval_start": start, "calls": 20.0,
            "calls_lower": 14.0, "calls_upper": 27.5, "aht_seconds": 210.0,
            "required_handlers": required, "required_handlers_upper": required + 2,
            "rostered_handlers": required / 0.65, "rostered_handlers_rounded": 11,
            "service_level": 0.91, "asa_seconds": 3.2, "occupancy": 0.71, "abandonment": None,
            "method": "prophet", "generated_at": "2026-11-21T06:00:00Z"}


@pytest.fixture
def store(store_url):
    """A fresh store on SQLite, then on the session's PostgreSQL server."""
    opened = HistoryStore.open(store_url, upgrade=True)
    yield opened
    opened.close()


def test_an_in_memory_store_works_from_several_threads():
    with HistoryStore.open("sqlite:///:memory:") as memory:
        threads = [threading.Thread(target=memory.upsert_intervals,
                                    args=([record("2026-11-21T22:00:00Z", line=str(100 + n))],))
                   for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(memory.intervals("north")) == 4


def test_replaying_the_same_records_never_double_counts(store):
    batch = [record("2026-11-21T22:00:00Z", 4), record("2026-11-21T22:15:00Z", 6)]
    assert store.upsert_intervals(batch) == 2
    assert store.upsert_intervals(batch) == 2
    rows = store.intervals("north")
    assert [r["offered"] for r in rows] == [4, 6]


def test_a_later_record_replaces_an_earlier_one_but_never_unfinalises_it(store):
    store.upsert_intervals([record("2026-11-21T22:00:00Z", 4, final=False)])
    store.upsert_intervals([record("2026-11-21T22:00:00Z", 7, final=True)])
    assert store.intervals("north")[0]["offered"] == 7
    store.upsert_intervals([record("2026-11-21T22:00:00Z", 5, final=False)])  # a stale replay
    assert store.intervals("north")[0]["offered"] == 7
    store.upsert_intervals([record("2026-11-21T22:00:00Z", 8, final=True)])  # a correction
    assert store.intervals("north")[0]["offered"] == 8


def test_the_whole_record_is_kept_and_queries_filter_half_open(store):
    store.upsert_intervals([
        record("2026-11-21T22:00:00Z", line="999"), record("2026-11-21T22:15:00Z", line="999"),
        record("2026-11-21T22:00:00Z", line="101", final=False),
        record("2026-11-21T22:00:00Z", room="south"),
    ])
    rows = store.intervals("north", line="999", start="2026-11-21T22:00:00Z",
                           end=datetime(2026, 11, 21, 22, 15, tzinfo=UTC))
    assert len(rows) == 1 and rows[0]["service_level"] == {"answered": 1.0}
    assert len(store.intervals("north")) == 3
    assert [r["line"] for r in store.intervals("north", final_only=True)] == ["999", "999"]
    assert store.rooms_lines() == [("north", "101"), ("north", "999"), ("south", "999")]
    series = store.interval_series("north", "999")
    assert series[0][:5] == ("2026-11-21T22:00:00Z", 5, 5, 0, 200.0)


def test_times_are_normalised_to_utc_with_a_z(store):
    store.upsert_intervals([record("2026-06-21T23:15:00+01:00")])
    assert store.intervals("north")[0]["interval_start"] == "2026-06-21T22:15:00Z"


@pytest.mark.parametrize(("bad", "needle"), [
    ({"interval_start": "2026-11-21T22:07:00Z"}, "quarter hour"),
    ({"interval_start": "2026-11-21 22:00:00"}, "time zone"),
    ({"room": None}, "room"),
    ({"offered": "many"}, "offered"),
])
def test_malformed_records_are_refused_with_the_field_named(store, bad, needle):
    with pytest.raises(StoreError, match=needle):
        store.upsert_intervals([record("2026-11-21T22:00:00Z") | bad])


def test_queries_refuse_naive_datetimes(store):
    with pytest.raises(StoreError, match="naive"):
        store.intervals("north", start=datetime(2026, 11, 21))  # noqa: DTZ001


def test_a_stream_record_is_kept_byte_for_byte_and_an_incomplete_one_completed(store):
    stream = record("2026-11-21T22:00:00Z", 4, definitions_version=1, answer_bands={"a": 1})
    bare = {"room": "north", "line": "101", "interval_start": "2026-11-21T23:00:00+01:00",
            "offered": 3}
    sent = (dict(stream), dict(bare))
    store.upsert_intervals([stream, bare])
    assert (stream, bare) == sent  # the caller's records are left as they were
    texts = store.record_texts("interval", "north")
    assert texts[1] == orjson.dumps(stream).decode()
    completed = orjson.loads(texts[0])
    assert list(completed) == ["room", "line", "interval_start", "offered", "interval_end",
                               "final"]
    assert completed["interval_start"] == "2026-11-21T22:00:00Z"
    assert completed["interval_end"] == "2026-11-21T22:15:00Z" and completed["final"] is False
    assert store.intervals("north", line="101", final_only=True) == []


def test_numbers_are_stored_in_their_column_types(store):
    store.upsert_intervals([record("2026-11-21T22:00:00Z", 5, aht_seconds=200, asa_seconds=1,
                                   answered=4.0, queue_seconds=None)])
    [row] = store.interval_series("north", "999")
    assert row == ("2026-11-21T22:00:00Z", 5, 4, 0, 200.0, 1.0, None)
    assert [type(v) for v in row[1:6]] == [int, int, int, float, float]


def test_a_large_batch_keeps_each_keys_latest_version_and_never_unfinalises(store):
    starts = [f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:00Z" for day in (20, 21)
              for hour in range(24) for minute in (0, 15, 30, 45)]  # 192 intervals
    batch = [record(s, 1, final=False, line=line) for s in starts for line in ("101", "999")]
    batch += [record(s, 2, final=True, line="999") for s in starts]
    batch += [record(s, 3, final=False, line=line) for s in starts for line in ("101", "999")]
    store.upsert_intervals(batch)  # 960 records: written as two transactions
    assert {r["offered"] for r in store.intervals("north", line="101")} == {3}
    kept = store.intervals("north", line="999")
    assert len(kept) == 192 and {(r["offered"], r["final"]) for r in kept} == {(2, True)}


def test_current_plan_is_the_row_of_the_interval_containing_the_instant(store):
    store.save_plan([plan_row("2026-11-21T22:00:00Z", 7), plan_row("2026-11-21T22:15:00Z", 9)])
    at = datetime(2026, 11, 21, 22, 14, 59, tzinfo=UTC)
    assert store.current_plan("north", "999", at)["required_handlers"] == 7
    assert store.current_plan("north", "999", at + timedelta(seconds=1))["required_handlers"] == 9
    assert store.current_plan("north", "999", at + timedelta(minutes=20)) is None
    assert store.current_plan("north", "101", at) is None
    rows = store.plan_rows("north", "999", "2026-11-21T22:00:00Z", "2026-11-21T23:00:00Z")
    assert [r["interval_end"] for r in rows] == ["2026-11-21T22:15:00Z", "2026-11-21T22:30:00Z"]
    store.save_plan([plan_row("2026-11-21T22:00:00Z", 8)])  # a new plan replaces the old
    assert store.current_plan("north", "999", at)["required_handlers"] == 8


def test_backtests_are_kept_per_line(store):
    assert store.latest_backtest("north", "999") is None
    store.save_backtest("north", "999", "2026-11-21T00:00:00Z", {"chosen": "prophet"})
    end, result = store.latest_backtest("north", "999")
    assert end == datetime(2026, 11, 21, tzinfo=UTC) and result == {"chosen": "prophet"}


def test_sqlite_urls_create_folders_and_use_wal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with HistoryStore.open("sqlite:///data/sub/history.db") as relative:
        relative.upsert_intervals([record("2026-11-21T22:00:00Z")])
    assert (tmp_path / "data/sub/history.db").exists()
    absolute = tmp_path / "abs" / "h.db"
    with HistoryStore.open(f"sqlite:///{absolute}") as opened:
        with opened.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
    assert absolute.exists()


@pytest.mark.parametrize("url", ["mysql://x/y", "history.db", "sqlite://nohost.db"])
def test_unknown_urls_are_refused_with_the_forms_that_work(url):
    with pytest.raises(StoreError, match="sqlite:///"):
        HistoryStore.open(url)


WRITER = """
import sys
from datetime import datetime, timedelta, timezone
from services.history.store import HistoryStore
store = HistoryStore.open(sys.argv[1])
first = datetime(2026, 10, 10, tzinfo=timezone.utc)
for i in range(40):
    store.upsert_intervals([
        {"room": "other", "line": "101", "final": True, "offered": j,
         "interval_start": (first + timedelta(minutes=15 * j)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for j in range(i * 25, i * 25 + 25)])
print("done")
"""


def test_two_processes_can_write_the_same_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with HistoryStore.open(url) as store:
        child = subprocess.Popen([sys.executable, "-c", WRITER, url], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(40):
            start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=15 * i)
            store.upsert_intervals([record(start.strftime("%Y-%m-%dT%H:%M:%SZ"), i)])
            store.current_plan("north", "999", start)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert len(store.intervals("north")) == 40
        assert len(store.intervals("other", line="101")) == 1000


OPENER = """
import sys, time
from services.history.store import HistoryStore
go = float(sys.argv[2])
while time.time() < go:
    pass
HistoryStore.open(sys.argv[1]).close()
print("opened")
"""


@pytest.mark.parametrize("attempt", range(3))
def test_processes_opening_a_new_sqlite_file_together_all_succeed(tmp_path, attempt):
    # Two workers starting side by side on a new store both switch it to WAL; SQLite reports
    # "database is locked" to one of them at once unless the open is retried (seen in CI).
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    go = time.time() + 1.5
    children = [subprocess.Popen([sys.executable, "-c", OPENER, url, str(go)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(6)]
    results = [child.communicate(timeout=60) for child in children]
    failures = [err for child, (_, err) in zip(children, results, strict=True)
                if child.returncode != 0]
    assert failures == []
    assert [out.strip() for out, _ in results] == ["opened"] * 6


def test_one_store_is_safe_to_share_between_threads(store_url):
    with HistoryStore.open(store_url, upgrade=True) as store:
        def write(room: str) -> None:
            for i in range(50):
                start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=15 * i)
                store.upsert_intervals([record(start.strftime("%Y-%m-%dT%H:%M:%SZ"), room=room)])
                store.intervals(room)

        threads = [threading.Thread(target=write, args=(f"r{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [len(store.intervals(f"r{n}")) for n in range(4)] == [50, 50, 50, 50]


def test_interval_floor_is_the_quarter_hour_containing_the_instant():
    from services.history.store import interval_floor

    at = datetime(2026, 11, 21, 21, 59, 59, 999999, tzinfo=UTC)
    assert interval_floor(at) == datetime(2026, 11, 21, 21, 45, tzinfo=UTC)
    assert interval_floor(at.replace(minute=0, second=0, microsecond=0)) == at.replace(
        minute=0, second=0, microsecond=0)
