"""CSV imports: interval counts, and per-call exports aggregated by the METRICS.md definitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.history.imports import (
    HistoryImportError,
    import_calls,
    import_intervals,
    parse_mapping,
)
from services.history.store import HistoryStore


@pytest.fixture
def store():
    opened = HistoryStore.open("sqlite:///:memory:")
    yield opened
    opened.close()


def write(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_interval_rows_become_final_records_and_bad_rows_are_reported(store, tmp_path):
    path = write(tmp_path, "\n".join([
        "room,line,interval_start,offered,aht_seconds",
        "north,999,2026-11-21T22:00:00Z,41,312.4",
        "north,999,2026-11-21T22:15:00Z,38,",
        "north,999,2026-11-21T22:07:00Z,3,200",
        "North,999,2026-11-21T22:30:00Z,3,200",
        "north,999,2026-11-21 22:45:00,3,200",
        "north,999,2026-11-21T23:00:00Z,-2,200",
        "north,999,2026-11-21T23:15:00Z,2.5,200",
        "north,999,2026-11-21T22:00:00Z,40,300",
        "north,101,2026-11-21T23:00:00+00:00,12,410",
    ]) + "\n")
    reported: list[str] = []
    counts = import_intervals(store, path, report=reported.append)
    assert (counts.rows, counts.records, counts.rejected) == (9, 3, 6)
    assert reported == counts.errors
    assert reported[0].startswith("line 4: column interval_start:")
    assert "quarter hour" in reported[0]
    assert reported[1].startswith("line 5: column room:")
    assert "time zone" in reported[2] and "--timezone" in reported[2]
    assert "≥ 0" in reported[3] and "whole number" in reported[4]
    assert "repeats line 2" in reported[5]
    rows = store.intervals("north", line="999")
    assert [(r["offered"], r["aht_seconds"], r["final"]) for r in rows] == [
        (41, 312.4, True), (38, None, True)]
    assert store.intervals("north", line="101")[0]["interval_end"] == "2026-11-21T23:15:00Z"
    # Importing again replaces, never adds.
    import_intervals(store, path)
    assert len(store.intervals("north")) == 3


def test_naive_times_are_local_with_a_timezone(store, tmp_path):
    path = write(tmp_path, "room,line,interval_start,offered\n"
                           "north,999,2026-07-01 10:00,5\nnorth,999,2026-12-01 10:00,6\n")
    counts = import_intervals(store, path, zone="Europe/London")
    assert counts.rejected == 0
    assert [r["interval_start"] for r in store.intervals("north")] == [
        "2026-07-01T09:00:00Z", "2026-12-01T10:00:00Z"]


def test_a_missing_column_stops_the_import_with_the_header_shown(store, tmp_path):
    path = write(tmp_path, "room,line,start,offered\nnorth,999,2026-11-21T22:00:00Z,3\n")
    with pytest.raises(HistoryImportError, match="no column interval_start"):
        import_intervals(store, path)
    with pytest.raises(HistoryImportError, match="cannot read"):
        import_intervals(store, tmp_path / "missing.csv")


CALLS = """Site,Queue,Start,Answer,Abandon,End,Wrap
north,999,2026-11-21T22:00:05Z,2026-11-21T22:00:09Z,,2026-11-21T22:03:09Z,20
north,999,2026-11-21T22:14:59Z,2026-11-21T22:15:30Z,,2026-11-21T22:20:30Z,
north,999,2026-11-21T22:05:00Z,,2026-11-21T22:05:40Z,,
north,999,2026-11-21T22:06:00Z,,,,
north,999,2026-11-21T22:15:00Z,2026-11-21T22:15:02Z,,,
north,999,2026-11-21T22:16:00Z,2026-11-21T22:15:00Z,,,
north,999,not a time,,,,
north,101,2026-11-21T22:20:00Z,2026-11-21T22:21:00Z,2026-11-21T22:20:30Z,,
"""


def test_calls_are_aggregated_per_offered_interval_by_the_definitions(store, tmp_path):
    path = write(tmp_path, CALLS)
    mapping = parse_mapping("offered_at=Start,answered_at=Answer,abandoned_at=Abandon,"
                            "ended_at=End,line=Queue,room=Site,wrap_seconds=Wrap")
    reported: list[str] = []
    counts = import_calls(store, path, mapping, report=reported.append)
    assert (counts.rows, counts.calls, counts.rejected) == (8, 6, 2)
    assert reported[0].startswith("line 7: column Answer:") and "before" in reported[0]
    assert reported[1].startswith("line 8: column Start:")
    first, second = store.intervals("north", line="999")
    assert first["interval_start"] == "2026-11-21T22:00:00Z"
    # 4 offered 22:00-22:15 (by offered time, whatever the answer time): 2 answered, 1
    # abandoned, 1 with no exit.
    assert (first["offered"], first["answered"], first["abandoned"], first["orphaned"]) == (
        4, 2, 1, 1)
    assert first["aht_seconds"] == pytest.approx(((180 + 20) + 300) / 2)
    assert first["asa_seconds"] == pytest.approx((4 + 31) / 2)
    assert first["queue_seconds"] == pytest.approx(4 + 31 + 40)
    assert first["final"] is True
    # answered, but never ended: in ASA, not in AHT
    assert (second["offered"], second["answered"], second["aht_seconds"]) == (1, 1, None)
    # The earlier exit wins: an abandon at 30 s before an answer at 60 s is an abandon.
    line_101 = store.intervals("north", line="101")[0]
    assert (line_101["answered"], line_101["abandoned"]) == (0, 1)


def test_the_mapping_defaults_to_the_keys_and_rejects_unknown_keys():
    assert parse_mapping(None)["offered_at"] == "offered_at"
    assert parse_mapping("room=Site")["room"] == "Site"
    with pytest.raises(HistoryImportError, match="unknown key"):
        parse_mapping("start=Start")
    with pytest.raises(HistoryImportError, match="KEY=COLUMN"):
        parse_mapping("offered_at")


def test_a_calls_export_without_the_mapped_columns_names_them(store, tmp_path):
    path = write(tmp_path, CALLS)
    with pytest.raises(HistoryImportError, match="offered_at.*--map"):
        import_calls(store, path)
