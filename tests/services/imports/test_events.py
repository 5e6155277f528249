"""``pacesetter import events``: rows in, contract events out, bad rows reported by line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from pacesetter.cli import main
from services.contract.events import parse_event
from services.kafka.ingest import pseudonymise

KEY = "test-caller-key-15"
CALLS_MAPPING = """\
version = 1
[source]
timezone = "Europe/London"
null_values = ["", "NULL"]
room_column = "site"
room_map = { "N" = "north", "S" = "south" }
[where]
"kind" = { not_in = ["TEST"] }
[calls]
id = "call_id"
line = { column = "queue", map = { "EMERG" = "999", "NONEMERG" = "101" }, default = "online" }
offered = "offered_at"
answered = { coalesce = ["answered_at", \
  { columns = ["ans_date", "ans_time"], format = "%d/%m/%Y %H:%M:%S" }] }
abandoned = "abandoned_at"
callback_requested = "callback_at"
ended = "ended_at"
caller = { column = "cli", pseudonymise = true, null_values = ["WITHHELD"] }
outcome = { column = "result", map = { "R" = "resolved", "U" = "unresolved" } }
wrap_seconds = "wrap"
handler = "agent"
reason = { value = "general" }
"""
HEADER = ("call_id,site,kind,queue,offered_at,answered_at,ans_date,ans_time,abandoned_at,"
          "callback_at,ended_at,cli,result,wrap,agent\n")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def events_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def caller_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_CALLER_KEY", KEY)


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    return write(tmp_path / "calls.toml", CALLS_MAPPING)


def test_calls_become_events_sorted_with_deterministic_ids(
        tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = write(tmp_path / "calls.csv", HEADER + "\n".join([
        # answered then ended, a caller number pseudonymised, wrap and outcome on the end
        "c1,N,LIVE,EMERG,2026-11-21T22:15:00Z,2026-11-21T22:15:07.5Z,,,,,"
        "2026-11-21T22:20:00Z,07700 900123,R,30.5,h-7",
        # abandoned; an end time without an answer makes no call.ended
        "c2,N,LIVE,NONEMERG,2026-11-21 22:10:00,,,,2026-11-21 22:11:00,,2026-11-21 22:12:00,"
        "WITHHELD,,,",
        # answered from the date and time columns (the coalesce's second choice)
        "c3,S,LIVE,OTHER,2026-11-21T22:15:00+00:00,,21/11/2026,22:15:09,,,,,,,",
        # a callback request; a filtered test row
        "c4,S,LIVE,EMERG,2026-11-21T22:14:00Z,,,,,2026-11-21T22:16:00Z,,,,,",
        "c5,S,TEST,EMERG,2026-11-21T22:14:00Z,,,,,,,,,,",
    ]) + "\n")
    out = tmp_path / "events.jsonl"
    code, stdout, err = run(["import", "events", "--mapping", str(mapping), str(export),
                             "--out", str(out)], capsys)
    assert code == 0, err
    events = events_of(out)
    for event in events:
        parse_event(event)  # every event is valid under the contract
    assert [(e["id"], e["room"]) for e in events] == [
        ("c2:offered", "north"), ("c2:abandoned", "north"), ("c4:offered", "south"),
        ("c1:offered", "north"), ("c3:offered", "south"), ("c1:answered", "north"),
        ("c3:answered", "south"), ("c4:callback_requested", "south"), ("c1:ended", "north"),
    ]
    by_id = {e["id"]: e for e in events}
    assert by_id["c1:offered"]["line"] == "999" and by_id["c3:offered"]["line"] == "online"
    assert by_id["c1:offered"]["caller"] == pseudonymise("07700 900123", KEY.encode())
    assert "caller" not in by_id["c2:offered"]  # WITHHELD is this field's null value
    assert by_id["c1:offered"]["reason"] == "general"
    assert by_id["c1:answered"] == {"v": 1, "id": "c1:answered", "type": "call.answered",
                                   "room": "north", "at": "2026-11-21T22:15:07.5Z",
                                   "call": "c1", "handler": "h-7"}
    assert by_id["c1:ended"]["outcome"] == "resolved" and by_id["c1:ended"]["wrap_seconds"] == 30.5
    assert by_id["c3:answered"]["at"] == "2026-11-21T22:15:09Z"
    assert "07700" not in out.read_text() + stdout + err
    assert "rows read" in stdout and "left out by [where]" in stdout

    again = tmp_path / "again.jsonl"
    assert run(["import", "events", "--mapping", str(mapping), str(export), "--out",
                str(again)], capsys)[0] == 0
    assert again.read_bytes() == out.read_bytes()  # the same export, the same ids and order


def test_local_times_resolve_across_clock_changes(
        tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = write(tmp_path / "dst.csv", HEADER + "\n".join([
        # 01:30 on 29 March 2026 does not exist in London: the offset before the change (GMT)
        "gap,N,LIVE,EMERG,2026-03-29 01:30:00,,,,,,,,,,",
        # 01:30 on 25 October 2026 happens twice: its first occurrence (BST)
        "fold,N,LIVE,EMERG,2026-10-25 01:30:00,,,,,,,,,,",
        "summer,N,LIVE,EMERG,2026-07-01 12:00:00,,,,,,,,,,",
        "winter,N,LIVE,EMERG,2026-12-01 12:00:00.25,,,,,,,,,,",
    ]) + "\n")
    out = tmp_path / "dst.jsonl"
    assert run(["import", "events", "--mapping", str(mapping), str(export), "--out",
                str(out)], capsys)[0] == 0
    at = {e["call"]: e["at"] for e in events_of(out)}
    assert at == {"gap": "2026-03-29T01:30:00Z", "fold": "2026-10-25T00:30:00Z",
                  "summer": "2026-07-01T11:00:00Z", "winter": "2026-12-01T12:00:00.25Z"}


def test_bad_rows_are_reported_with_line_column_and_reason_and_the_rest_go_on(
        tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = write(tmp_path / "bad.csv", HEADER + "\n".join([
        "ok1,N,LIVE,EMERG,2026-11-21T22:15:00Z,,,,,,,,,,",                   # line 2
        ",N,LIVE,EMERG,2026-11-21T22:15:00Z,,,,,,,,,,",                      # 3 no id
        "t1,N,LIVE,EMERG,NULL,,,,,,,,,,",                                    # 4 NULL time
        "t2,N,LIVE,EMERG,21/11/2026 22:15,,,,,,,,,,",                        # 5 bad time
        "t3,N,LIVE,EMERG,2026-11-21T22:15:00Z,2026-11-21T22:14:00Z,,,,,,,,,",  # 6 order
        "t4,X,LIVE,EMERG,2026-11-21T22:15:00Z,,,,,,,,,,",                    # 7 room
        "ok1,N,LIVE,EMERG,2026-11-21T22:16:00Z,,,,,,,,,,",                   # 8 duplicate
        "t5,N,LIVE,EMERG,2026-11-21T22:15:00Z,2026-11-21T22:15:05Z,,,,,"
        "2026-11-21T22:16:00Z,07700 900999,X,,",                             # 9 outcome
        "t6,N,LIVE,EMERG,2026-11-21T22:15:00Z,2026-11-21T22:15:05Z,,,,,"
        "2026-11-21T22:16:00Z,,,-3,",                                        # 10 wrap
        "t7,N,LIVE,EMERG,2026-11-21T22:15:00Z,,21/11/2026,,,,,,,,",          # 11 half a time
        "ok2,S,LIVE,NONEMERG,2026-11-21T22:15:00Z,,,,,,,,,,",                # 12
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(["import", "events", "--mapping", str(mapping), str(export),
                             "--out", str(out)], capsys)
    assert code == 1
    reported = {int(line.split(" line ")[1].split(",")[0].split(":")[0]): line
                for line in err.splitlines() if " line " in line}
    expected = {3: ("call_id", "missing_id"), 4: ("offered_at", "missing_value"),
                5: ("offered_at", "bad_time"), 6: ("answered_at|ans_date+ans_time", "stage_order"),
                7: ("site", "unknown_value"), 8: ("call_id", "duplicate_id"),
                9: ("result", "unknown_value"), 10: ("wrap", "bad_value"),
                11: ("ans_date+ans_time", "missing_value")}
    assert set(reported) == set(expected)
    for line, (column, reason) in expected.items():
        assert f"column {column}: {reason}:" in reported[line], reported[line]
    assert "07700" not in err + stdout + out.read_text()
    assert sorted(e["call"] for e in events_of(out)) == ["ok1", "ok2"]
    assert "9 rows refused" in stdout and "duplicate_id 1" in stdout


def test_a_raw_number_in_a_column_not_pseudonymised_is_refused_without_showing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = write(tmp_path / "m.toml", CALLS_MAPPING.replace(
        'caller = { column = "cli", pseudonymise = true, null_values = ["WITHHELD"] }',
        'caller = "cli"'))
    export = write(tmp_path / "e.csv", HEADER
                   + "c1,N,LIVE,EMERG,2026-11-21T22:15:00Z,,,,,,,+44 7700 900123,,,\n")
    code, stdout, err = run(["import", "events", "--mapping", str(mapping), str(export),
                             "--check"], capsys)
    assert code == 1
    assert "line 2, column cli: raw_phone_number" in err
    assert "7700" not in err + stdout


def test_a_pseudonymising_mapping_without_a_key_stops_before_reading(
        tmp_path: Path, mapping: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PACESETTER_CALLER_KEY")
    export = write(tmp_path / "e.csv", HEADER)
    code, _, err = run(["import", "events", "--mapping", str(mapping), str(export), "--check"],
                       capsys)
    assert code == 2 and "PACESETTER_CALLER_KEY" in err


def test_a_mapping_error_stops_the_run_before_any_row(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = write(tmp_path / "m.toml", CALLS_MAPPING.replace('handler = "agent"',
                                                               'handlr = "agent"'))
    code, out, err = run(["import", "events", "--mapping", str(mapping), "/nonexistent.csv",
                          "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2
    assert "m.toml line 20: calls.handlr: unknown key" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_column_the_export_lacks_is_named(tmp_path: Path, mapping: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    export = write(tmp_path / "e.csv", HEADER.replace("agent", "operator") + "\n")
    code, _, err = run(["import", "events", "--mapping", str(mapping), str(export), "--check"],
                       capsys)
    assert code == 2 and "'agent'" in err


def test_jsonl_and_gzip_exports_give_the_same_events_as_csv(
        tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"call_id": "a", "site": "N", "kind": "LIVE", "queue": "EMERG",
         "offered_at": "2026-11-21T22:15:00Z", "answered_at": "2026-11-21T22:15:04Z",
         "ended_at": "2026-11-21T22:18:00Z", "wrap": 12, "result": "U"},
        {"call_id": "b", "site": "S", "kind": "LIVE", "queue": "NONEMERG",
         "offered_at": "2026-11-21T22:14:00Z", "abandoned_at": None,
         "callback_at": "2026-11-21T22:17:00Z"},
    ]
    columns = HEADER.strip().split(",")
    csv_text = HEADER + "".join(
        ",".join("" if r.get(c) is None else str(r[c]) for c in columns) + "\n" for r in rows)
    exports = {
        "csv": write(tmp_path / "e.csv", csv_text),
        "csv.gz": tmp_path / "e.csv.gz",
        "jsonl": write(tmp_path / "e.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
    }
    exports["csv.gz"].write_bytes(gzip.compress(csv_text.encode()))
    jsonl_mapping = write(tmp_path / "j.toml", CALLS_MAPPING.replace(
        'timezone =', 'format = "jsonl"\ntimezone ='))
    made = {}
    for name, export in exports.items():
        out = tmp_path / f"{name}.out.jsonl"
        used = jsonl_mapping if name == "jsonl" else mapping
        assert run(["import", "events", "--mapping", str(used), str(export), "--out",
                    str(out)], capsys)[0] == 0
        made[name] = out.read_bytes()
    assert made["csv"] == made["csv.gz"] == made["jsonl"]
    assert len(made["csv"].splitlines()) == 5


def test_check_reports_and_writes_nothing(tmp_path: Path, mapping: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    export = write(tmp_path / "e.csv", HEADER + "a,N,LIVE,EMERG,2026-11-21T22:15:00Z,,,,,,,,,,\n")
    code, out, _ = run(["import", "events", "--mapping", str(mapping), str(export), "--check"],
                       capsys)
    assert code == 0
    assert "1 events made: call.offered 1" in out
    assert list(tmp_path.glob("*.jsonl")) == []


INCIDENTS_MAPPING = """\
version = 1
[source]
timezone = "Europe/London"
null_values = ["", "NULL", "-9999"]
room = "north"
[where]
"Agency" = "POLICE"
[{kind}]
id = "ref"
created = "start"
dispatched = "dispatch"
arrived = "arrive"
closed = "close"
grade = {{ column = "pri", map = {{ "1" = "immediate", "2" = "priority" }} }}
area = {{ column = "beat", map = {{ "U" = "urban", "R" = "rural" }}, default = "rural" }}
call = "call_ref"
"""
INCIDENTS_HEADER = "ref,Agency,start,dispatch,arrive,close,pri,beat,call_ref\n"


def test_incidents_rows_and_their_bad_rows(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    mapping = write(tmp_path / "i.toml", INCIDENTS_MAPPING.format(kind="incidents"))
    export = write(tmp_path / "i.csv", INCIDENTS_HEADER + "\n".join([
        "i1,POLICE,2026-11-21T22:00:00Z,2026-11-21T22:01:00Z,2026-11-21T22:09:00Z,"
        "2026-11-21T23:00:00Z,1,U,c9",                                          # 2
        "i2,POLICE,2026-11-21T22:00:00Z,2026-11-21T22:05:00Z,2026-11-21T22:04:00Z,,2,,",  # 3
        "i3,POLICE,-9999,,,,1,U,",                                              # 4 sentinel
        "i4,POLICE,2026-11-21T22:00:00Z,,,,9,U,",                               # 5 priority
        "i1,POLICE,2026-11-21T22:30:00Z,,,,1,U,",                               # 6 duplicate
        "i5,FIRE,2026-11-21T22:00:00Z,,,,1,U,",                                 # filtered
        "i6,POLICE,2026-11-21T22:00:00Z,-9999,2026-11-21T22:20:00Z,,2,X,",      # 8 area
        "i7,POLICE,2026-11-21T22:00:00Z,NULL,2026-11-21T22:20:00Z,,2,R,",       # 9 ok
    ]) + "\n")
    out = tmp_path / "i.jsonl"
    code, stdout, err = run(["import", "events", "--mapping", str(mapping), str(export),
                             "--out", str(out)], capsys)
    assert code == 1
    for line, column, reason in ((3, "arrive", "stage_order"), (4, "start", "missing_value"),
                                 (5, "pri", "unknown_value"), (6, "ref", "duplicate_id")):
        assert f"i.csv line {line}, column {column}: {reason}:" in err, err
    events = events_of(out)
    assert sorted({e["incident"] for e in events}) == ["i1", "i6", "i7"]
    created = {e["incident"]: e for e in events if e["type"] == "incident.created"}
    assert created["i1"]["call"] == "c9" and created["i1"]["area"] == "urban"
    assert created["i6"]["area"] == "rural"  # X is not in the map: the default
    assert [e["type"] for e in events if e["incident"] == "i1"] == [
        "incident.created", "incident.dispatched", "incident.arrived", "incident.closed"]
    assert "4 rows refused" in stdout and "1 left out by [where]" in stdout


def test_units_are_grouped_into_incidents(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    mapping = write(tmp_path / "u.toml", INCIDENTS_MAPPING.format(kind="units"))
    export = write(tmp_path / "u.csv", INCIDENTS_HEADER + "\n".join([
        # three units of i1: created from the earliest row, first dispatch and arrival, last close
        "i1,POLICE,2026-11-21T22:02:00Z,2026-11-21T22:06:00Z,,2026-11-21T22:30:00Z,2,U,",
        "i1,POLICE,2026-11-21T22:00:00Z,2026-11-21T22:03:00Z,2026-11-21T22:12:00Z,"
        "2026-11-21T23:10:00Z,1,U,c1",
        "i1,POLICE,2026-11-21T22:01:00Z,2026-11-21T22:04:00Z,2026-11-21T22:10:00Z,,1,R,",
        # i2: a unit on scene (without dispatch) before the other unit's dispatch
        "i2,POLICE,2026-11-21T22:00:00Z,,2026-11-21T22:05:00Z,,1,U,",
        "i2,POLICE,2026-11-21T22:00:00Z,2026-11-21T22:07:00Z,,,1,U,",
    ]) + "\n")
    out = tmp_path / "u.jsonl"
    code, _stdout, err = run(["import", "events", "--mapping", str(mapping), str(export),
                              "--out", str(out)], capsys)
    assert code == 1
    assert "u.csv line 5, column arrive: stage_order:" in err  # the arrival before dispatch
    events = {e["id"]: e for e in events_of(out)}
    assert set(events) == {"i1:created", "i1:dispatched", "i1:arrived", "i1:closed"}
    assert events["i1:created"]["at"] == "2026-11-21T22:00:00Z"
    assert events["i1:created"]["grade"] == "immediate" and events["i1:created"]["call"] == "c1"
    assert events["i1:dispatched"]["at"] == "2026-11-21T22:03:00Z"
    assert events["i1:arrived"]["at"] == "2026-11-21T22:10:00Z"
    assert events["i1:closed"]["at"] == "2026-11-21T23:10:00Z"


def test_a_coalesce_takes_its_own_map_default_and_pseudonym(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = write(tmp_path / "c.toml", """\
version = 1
[source]
null_values = ["NULL"]
room = "north"
[calls]
id = "id"
line = { coalesce = ["q1", "q2"], map = { "E" = "999" }, default = "101" }
offered = { coalesce = ["t1", { column = "t2", format = "%d/%m/%Y %H:%M" }] }
caller = { coalesce = ["cli", "cli2"], pseudonymise = true }
""")
    export = write(tmp_path / "c.csv", "id,q1,q2,t1,t2,cli,cli2\n"
                   "a,NULL,E,2026-11-21T22:00:00Z,,,07700 900555\n"
                   "b,X,,,21/11/2026 22:05,,\n")
    out = tmp_path / "c.jsonl"
    code, stdout, err = run(["import", "events", "--mapping", str(mapping), str(export),
                             "--out", str(out)], capsys)
    assert code == 0, err
    offered = {e["call"]: e for e in events_of(out)}
    assert offered["a"]["line"] == "999" and offered["b"]["line"] == "101"
    assert offered["b"]["at"] == "2026-11-21T22:05:00Z"
    assert offered["a"]["caller"] == pseudonymise("07700 900555", KEY.encode())
    assert "caller" not in offered["b"]
    assert "07700" not in out.read_text() + stdout + err
