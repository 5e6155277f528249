"""The monthly report from records equals a computation straight from the month's events."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pacesetter.cli import main
from services.contract.settings import Settings
from services.figures.monthly import MonthError, month_bounds, monthly_report, report_csv
from services.figures.monthly_page import render
from services.figures.report import compute_records
from services.history.store import HistoryStore

# 1 April 2026 00:00 in London is 31 March 23:00 UTC (summer time): the month starts there.
APRIL_START = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
THRESHOLD = {"999": 10.0}
TARGET_SECONDS = {"immediate": (900.0, 1200.0), "priority": (3600.0, 3600.0),
                  "scheduled": (172800.0, 172800.0), "resolution": (None, None)}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = tmp_path_factory.mktemp("month") / "events.jsonl"
    assert main(["simulate", "--rooms", "1", "--days", "1.5", "--start", "2026-03-31",
                 "--scale", "0.3", "--out", str(path)]) == 0
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def p90(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1] if ordered else None


def direct(events: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, Any]:
    """The month's figures from the events themselves, as METRICS.md defines them."""
    offered: dict[str, dict[str, Any]] = {}
    exits: dict[str, tuple[datetime, str]] = {}
    incidents: dict[str, dict[str, Any]] = {}
    for e in events:
        at = _at(e["at"])
        kind = e["type"]
        if kind == "call.offered":
            offered[e["call"]] = {"at": at, "line": e["line"]}
        elif kind in ("call.answered", "call.abandoned", "call.callback_requested"):
            if e["call"] not in exits or at < exits[e["call"]][0]:
                exits[e["call"]] = (at, kind)
        elif kind == "incident.created":
            incidents[e["incident"]] = {"at": at, "grade": e["grade"], "area": e.get("area"),
                                        "call": e.get("call")}
        elif kind in ("incident.dispatched", "incident.arrived"):
            slot = kind.split(".")[1]
            inc = incidents[e["incident"]]
            inc[slot] = at if inc.get(slot) is None else min(inc[slot], at)
    lines: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for call, info in offered.items():
        if not start <= info["at"] < end:
            continue
        line = lines[info["line"]]
        line["offered"] += 1
        if call not in exits:
            continue
        exit_at, kind = exits[call]
        wait = (exit_at - info["at"]).total_seconds()
        if kind == "call.answered":
            line["answered"] += 1
            line["wait"] += wait
            line["within"] += wait < THRESHOLD.get(info["line"], 60.0)
            line["under_10s" if wait < 10 else "from_10s_to_60s" if wait < 60
                 else "60s_and_over"] += 1
        elif kind == "call.abandoned":
            line["abandoned"] += 1
            line["short"] += wait < 5
    grades: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"incidents": 0, "call": [], "dispatch": [], "in_call": 0, "in_dispatch": 0})
    for inc in incidents.values():
        if not start <= inc["at"] < end:
            continue
        grade = grades[inc["grade"]]
        grade["incidents"] += 1
        if inc.get("arrived") is None:
            continue
        linked = offered.get(inc["call"]) if inc["call"] else None
        clock_start = linked["at"] if linked is not None else inc["at"]
        target = TARGET_SECONDS[inc["grade"]][0 if inc["area"] == "urban" else 1]
        from_call = (inc["arrived"] - clock_start).total_seconds()
        grade["call"].append(from_call)
        grade["in_call"] += target is not None and from_call <= target
        if inc.get("dispatched") is not None:
            from_dispatch = (inc["arrived"] - inc["dispatched"]).total_seconds()
            grade["dispatch"].append(from_dispatch)
            grade["in_dispatch"] += target is not None and from_dispatch <= target
    return {"lines": lines, "grades": grades}


def test_the_month_is_a_local_calendar_month() -> None:
    assert month_bounds("2026-04") == (APRIL_START, datetime(2026, 4, 30, 23, tzinfo=UTC))
    assert month_bounds("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)
    for bad in ("2026-13", "2026-4", "April", ""):
        with pytest.raises(MonthError, match="month"):
            month_bounds(bad)


def test_the_monthly_report_equals_the_figures_straight_from_the_events(
        simulated: list[dict[str, Any]]) -> None:
    lines = [orjson.dumps(e) for e in simulated]
    records = compute_records(lines, Settings())
    assert records.rejected == {}
    report = monthly_report("north", "2026-04", records.intervals.values(),
                            records.attendance.values(), Settings())
    start, end = month_bounds("2026-04")
    want = direct(simulated, start, end)

    assert {entry["line"] for entry in report["lines"]} == set(want["lines"])
    for entry in report["lines"]:
        w = want["lines"][entry["line"]]
        assert entry["offered"] == w["offered"] and entry["answered"] == w["answered"]
        assert entry["answer_bands"] == {b: w[b] for b in
                                         ("under_10s", "from_10s_to_60s", "60s_and_over")}
        assert entry["answer_band_shares"]["under_10s"] == pytest.approx(
            w["under_10s"] / w["answered"])
        assert entry["mean_answer_seconds"] == pytest.approx(w["wait"] / w["answered"])
        assert entry["abandoned"] == w["abandoned"]
        assert entry["abandonment_rate"] == pytest.approx(
            (w["abandoned"] - w["short"]) / (w["offered"] - w["short"]))
        assert entry["service_level"]["answered"] == pytest.approx(w["within"] / w["answered"])
        month_records = [r for r in records.intervals.values() if r["line"] == entry["line"]
                         and start <= _at(r["interval_start"]) < end]
        assert entry["failure_demand"] == sum(r["failure_demand"] for r in month_records)
        assert entry["repeat_contacts"] == sum(r["repeat_contacts"] for r in month_records)

    assert {g["grade"] for g in report["grades"]} == set(want["grades"])
    for entry in report["grades"]:
        w = want["grades"][entry["grade"]]
        assert entry["incidents"] == w["incidents"]
        assert entry["attended"] == len(w["call"])
        assert entry["attend_from_call_mean_seconds"] == pytest.approx(
            sum(w["call"]) / len(w["call"]) if w["call"] else None)
        assert entry["attend_from_call_p90_seconds"] == p90(w["call"])
        assert entry["attend_from_dispatch_p90_seconds"] == p90(w["dispatch"])
        if entry["grade"] != "resolution":
            assert entry["within_target_from_call"] == w["in_call"]
            assert entry["within_target_from_dispatch"] == w["in_dispatch"]
            assert entry["within_target_from_dispatch_share"] == pytest.approx(
                w["in_dispatch"] / len(w["dispatch"]) if w["dispatch"] else None)
        else:
            assert entry["within_target_from_call"] is None
        assert sum(entry["from_call_distribution"]) == len(w["call"])

    completeness = report["completeness"]
    assert completeness["hours"] == 720 and report["definitions_version"] == 1
    # the simulation covers 1 April 00:00 to 12:00 local time: the rest of April is silent
    assert 700 <= completeness["hours_with_no_events"] < 720
    assert completeness["spans_with_no_events"][-1]["end"] == "2026-04-30T23:00:00Z"


def test_csv_and_html_carry_the_same_figures(simulated: list[dict[str, Any]]) -> None:
    records = compute_records([orjson.dumps(e) for e in simulated], Settings())
    report = monthly_report("north", "2026-04", records.intervals.values(),
                            records.attendance.values(), Settings())
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    value = {(r["section"], r["subject"], r["measure"]): r["value"] for r in rows}
    for entry in report["lines"]:
        assert int(value[("line", entry["line"], "offered")]) == entry["offered"]
        assert int(value[("line", entry["line"], "answer_bands.under_10s")]) == \
            entry["answer_bands"]["under_10s"]
    for entry in report["grades"]:
        assert float(value[("grade", entry["grade"], "attend_from_call_p90_seconds")] or "nan") \
            == pytest.approx(entry["attend_from_call_p90_seconds"] or math.nan, nan_ok=True)
    page = render(report)
    assert "<script" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # self-contained: nothing fetched
    assert page.count("<svg") == len(report["lines"]) + len(report["grades"])
    for entry in report["lines"]:
        assert f"<td>{entry['offered']:,}</td>" in page


def test_report_monthly_from_an_export_through_the_store(
        tmp_path: Path, simulated: list[dict[str, Any]],
        capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in simulated) + b"\n")
    url = f"sqlite:///{tmp_path}/history.db"
    assert main(["report", str(events), "--store", url]) == 0
    capsys.readouterr()
    out_csv, out_html = tmp_path / "april.csv", tmp_path / "april.html"
    assert main(["report", "monthly", "--room", "north", "--month", "2026-04", "--store", url,
                 "--csv", str(out_csv), "--html", str(out_html), "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    start, end = month_bounds("2026-04")
    with HistoryStore.open(url) as store:
        expected = monthly_report("north", "2026-04", store.intervals("north", start=start,
                                                                      end=end),
                                  store.attendance("north", start, end), Settings())
    assert shown == orjson.loads(orjson.dumps(expected))
    assert out_csv.read_text() == report_csv(expected)
    assert out_html.read_text() == render(expected)
    # the store held only final intervals: the attendance of every incident is there
    records = compute_records([orjson.dumps(e) for e in simulated], Settings())
    want = monthly_report("north", "2026-04", records.intervals.values(),
                          records.attendance.values(), Settings())
    assert shown["grades"] == orjson.loads(orjson.dumps(want["grades"]))

    assert main(["report", "monthly", "--room", "nowhere", "--month", "2026-04",
                 "--store", url]) == 2
    assert "no records of room 'nowhere'" in capsys.readouterr().err
