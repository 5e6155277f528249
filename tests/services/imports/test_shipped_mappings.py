"""The shipped mappings on real data: SF Fire's units export gives the attendance records an
independent computation straight from the CSV rows gives."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pacesetter.cli import main
from services.contract.settings import Settings
from services.figures.report import compute_records

LOS_ANGELES = ZoneInfo("America/Los_Angeles")
SF_FORMAT = "%m/%d/%Y %I:%M:%S %p"
TARGETS = {"immediate": 900.0, "priority": 3600.0}  # urban (METRICS.md)


def _utc(text: str) -> datetime:
    return datetime.strptime(text, SF_FORMAT).replace(tzinfo=LOS_ANGELES).astimezone(UTC)


def _p90(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1] if ordered else None


def sf_attendance_oracle(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Attendance per (grade, interval) from the rows: one incident = its units' rows."""
    incidents: dict[str, dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            inc = incidents.setdefault(row["Incident Number"],
                                       {"created": None, "dispatched": None, "arrived": None})
            created = _utc(row["Received DtTm"])
            if inc["created"] is None or created < inc["created"]:
                inc["created"] = created
                inc["grade"] = {"3": "immediate", "2": "priority"}[row["Final Priority"]]
            for column, key in (("Dispatch DtTm", "dispatched"), ("On Scene DtTm", "arrived")):
                if row[column]:
                    at = _utc(row[column])
                    inc[key] = at if inc[key] is None else min(inc[key], at)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for inc in incidents.values():
        created = inc["created"]
        start = created.replace(minute=created.minute - created.minute % 15, second=0)
        groups[(inc["grade"], start.strftime("%Y-%m-%dT%H:%M:%SZ"))].append(inc)
    expected = {}
    for (grade, start), members in groups.items():
        arrived = [m for m in members if m["arrived"] is not None]
        from_call = [(m["arrived"] - m["created"]).total_seconds() for m in arrived]
        from_dispatch = [(m["arrived"] - m["dispatched"]).total_seconds() for m in arrived
                         if m["dispatched"] is not None]
        expected[(grade, start)] = {
            "created": len(members),
            "dispatched": sum(m["dispatched"] is not None for m in members),
            "arrived": len(arrived),
            "attend_from_call_mean_seconds":
                sum(from_call) / len(from_call) if from_call else None,
            "attend_from_call_p90_seconds": _p90(from_call),
            "attend_from_dispatch_mean_seconds":
                sum(from_dispatch) / len(from_dispatch) if from_dispatch else None,
            "attend_from_dispatch_p90_seconds": _p90(from_dispatch),
            "within_target_from_call": sum(x <= TARGETS[grade] for x in from_call),
            "within_target_from_dispatch": sum(x <= TARGETS[grade] for x in from_dispatch),
            "attend_from_call_seconds": sorted(from_call),
            "attend_from_dispatch_seconds": sorted(from_dispatch),
            "interval_end": (datetime.fromisoformat(start) + timedelta(minutes=15))
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    return expected


def test_sf_fire_units_give_the_attendance_an_independent_computation_gives(
        sf_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sf.jsonl"
    code = main(["import", "events", "--mapping", "sf-fire-units", str(sf_sample),
                 "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "2934 rows read" in stdout and "0 rows refused" in stdout

    report = compute_records(out.read_bytes().splitlines(), Settings())
    assert report.rejected == {}
    got = {(r["grade"], r["interval_start"]): r for r in report.attendance.values()}
    expected = sf_attendance_oracle(sf_sample)
    assert set(got) == set(expected)
    assert sum(e["created"] for e in expected.values()) == 1380
    for key, want in expected.items():
        record = got[key]
        assert record["room"] == "sf-fire"
        for name, value in want.items():
            if isinstance(value, float):
                assert record[name] == pytest.approx(value, rel=1e-12), (key, name)
            else:
                assert record[name] == value, (key, name)

    # per grade over the three days: the same incidents, attended and within target
    for grade in TARGETS:
        mine = [r for r in got.values() if r["grade"] == grade]
        theirs = [e for (g, _), e in expected.items() if g == grade]
        for name in ("created", "arrived", "within_target_from_call",
                     "within_target_from_dispatch"):
            assert sum(r[name] for r in mine) == sum(e[name] for e in theirs)


def test_calls_per_row_imports_an_acd_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PACESETTER_CALLER_KEY", "a-secret-key-for-tests")
    export = tmp_path / "acd.csv"
    export.write_text(
        "call_id,room,line,offered_at,answered_at,abandoned_at,callback_requested_at,ended_at,"
        "caller,reason,outcome,wrap_seconds,handler\n"
        "1001,north,999,2026-11-21T22:15:00Z,2026-11-21T22:15:06Z,,,2026-11-21T22:19:00Z,"
        "01632 960001,,resolved,20,h1\n"
        "1002,north,101,2026-11-21 22:20:00,,2026-11-21 22:21:30,,,01632 960001,"
        "progress_chase,,,\n", encoding="utf-8")
    out = tmp_path / "acd.jsonl"
    assert main(["import", "events", "--mapping", "calls-per-row", str(export),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    report = compute_records(out.read_bytes().splitlines(), Settings())
    by_line = {r["line"]: r for r in report.intervals.values()}
    assert by_line["999"]["answered"] == 1 and by_line["999"]["answer_bands"]["under_10s"] == 1
    assert by_line["101"]["abandoned"] == 1
    # the same pseudonymous caller rang twice: a repeat contact, and a progress chase
    assert by_line["101"]["repeat_contacts"] == 1 and by_line["101"]["failure_demand"] == 1
    assert "01632" not in out.read_text()


def test_a_monthly_report_from_an_export_through_the_store(
        sf_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import orjson

    url = f"sqlite:///{tmp_path}/history.db"
    assert main(["import", "events", "--mapping", "sf-fire-units", str(sf_sample),
                 "--out", str(tmp_path / "sf.jsonl"), "--store", url]) == 0
    capsys.readouterr()
    assert main(["report", "monthly", "--room", "sf-fire", "--month", "2017-01",
                 "--store", url, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    expected = sf_attendance_oracle(sf_sample)
    for grade in report["grades"]:
        theirs = [e for (g, _), e in expected.items() if g == grade["grade"]]
        assert grade["incidents"] == sum(e["created"] for e in theirs)
        assert grade["attended"] == sum(e["arrived"] for e in theirs)
        assert grade["within_target_from_call"] == sum(
            e["within_target_from_call"] for e in theirs)
        from_call = sorted(v for e in theirs for v in e["attend_from_call_seconds"])
        assert grade["attend_from_call_p90_seconds"] == _p90(from_call)
        assert grade["attend_from_call_mean_seconds"] == pytest.approx(
            sum(from_call) / len(from_call))
    assert {g["grade"] for g in report["grades"]} == {"immediate", "priority"}
    assert main(["import", "events", "--mapping", "sf-fire-units", str(sf_sample), "--check",
                 "--store", url]) == 2
