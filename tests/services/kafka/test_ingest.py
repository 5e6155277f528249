"""Ingest: ``pacesetter validate``, streaming line checks and caller pseudonyms."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pacesetter.cli import main
from services.kafka.ingest import check_lines, pseudonymise, read_lines

ROOT = Path(__file__).resolve().parents[3]
RAW_NUMBER = "+44 7700 900123"


def ev(eid: str, room: str = "north", **fields: Any) -> bytes:
    obj = {"v": 1, "id": eid, "type": "call.offered", "room": room,
           "at": "2026-11-21T22:15:03Z", "call": f"c-{eid}", "line": "999"}
    obj.update(fields)
    return orjson.dumps(obj)


def run_validate(capsys: pytest.CaptureFixture[str], target: str) -> tuple[int, list[str], str]:
    code = main(["validate", target])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


# --- pacesetter validate ---------------------------------------------------------------------

def test_validate_reports_each_invalid_line_by_number_then_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        ev("e-1"),                                     # 1 valid
        b"",                                           # 2 blank: skipped, still counted
        b'{"v":1,"id":"e-2",',                         # 3 not JSON
        ev("e-3", at="2026-11-21T22:15:03"),           # 4 naive time
        ev("e-4"),                                     # 5 valid
        ev("e-1"),                                     # 6 duplicate of line 1
        ev("e-1", room="south"),                       # 7 same id, other room: valid
        ev("e-5", caller=RAW_NUMBER),                  # 8 raw phone number
        b"   \t ",                                     # 9 blank
        ev("e-6", type="call.answered"),               # 10 valid (extra `line` ignored)
        ev("e-7", line="Nine"),                        # 11 bad line
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    code, out, _ = run_validate(capsys, str(path))

    assert code == 1
    assert out[-1] == "4 valid, 5 invalid"
    reports = out[:-1]
    assert [line.split(":")[0] for line in reports] == [
        "line 3", "line 4", "line 6", "line 8", "line 11"]
    by_number = {int(r.split(":")[0].split()[1]): r for r in reports}
    assert "JSON" in by_number[3]
    assert "at" in by_number[4] and "zone" in by_number[4]
    assert "duplicate" in by_number[6] and "e-1" in by_number[6]
    assert "caller" in by_number[8]
    assert "line" in by_number[11].split(":", 1)[1] and "Nine" in by_number[11]
    assert "7700" not in "\n".join(out)  # the raw number is not echoed


def test_validate_of_a_clean_file_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "clean.jsonl"
    path.write_bytes(b"\r\n".join(ev(f"e-{i}") for i in range(5)) + b"\r\n\r\n")
    code, out, _ = run_validate(capsys, str(path))
    assert (code, out) == (0, ["5 valid, 0 invalid"])


def test_validate_of_an_empty_file_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"\n\n")
    code, out, _ = run_validate(capsys, str(path))
    assert (code, out) == (0, ["0 valid, 0 invalid"])


def test_validate_reads_standard_input_for_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = b"\n".join([ev("e-1"), b"[]", ev("e-2"), ev("e-2")]) + b"\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run_validate(capsys, "-")
    assert code == 1
    assert [line.split(":")[0] for line in out[:-1]] == ["line 2", "line 4"]
    assert out[-1] == "2 valid, 2 invalid"


def test_validate_of_a_missing_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    code, _, err = run_validate(capsys, str(missing))
    assert code != 0
    assert str(missing) in err
    assert "Traceback" not in err


def test_validate_streams_a_large_file_in_bounded_memory(tmp_path: Path) -> None:
    """A ~50 MB file is validated with far less extra memory than its size."""
    padding = "x" * 4000  # unknown fields are ignored: big lines, few of them, fast to check
    big = tmp_path / "big.jsonl"
    valid = invalid = 0
    with big.open("wb") as handle:
        for i in range(12_500):
            if i % 1000 == 999:
                handle.write(ev(f"e-{i}", line="BAD", pad=padding) + b"\n")
                invalid += 1
            else:
                handle.write(ev(f"e-{i}", pad=padding) + b"\n")
                valid += 1
    size = big.stat().st_size
    assert size > 50_000_000
    small = tmp_path / "small.jsonl"
    small.write_bytes(ev("e-0", pad=padding) + b"\n")

    def peak_kib(path: Path) -> tuple[int, str, int]:
        out_path = tmp_path / f"{path.stem}.out"
        with out_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pacesetter.cli", "validate", str(path)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
            proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, out_path.read_text(), usage.ru_maxrss

    small_code, _, small_peak = peak_kib(small)
    big_code, big_out, big_peak = peak_kib(big)

    assert small_code == 0
    assert big_code == 1
    assert big_out.splitlines()[-1] == f"{valid} valid, {invalid} invalid"
    assert len(big_out.splitlines()) == invalid + 1
    growth = (big_peak - small_peak) * 1024  # ru_maxrss is in KiB on Linux
    assert growth < size / 5, (
        f"validate grew by {growth / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"
    )


# --- streaming -------------------------------------------------------------------------------

def test_read_lines_yields_each_line_as_it_arrives(tmp_path: Path) -> None:
    fifo = tmp_path / "live.jsonl"
    os.mkfifo(fifo)
    release, done = threading.Event(), threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(ev("e-0") + b"\n")
            pipe.flush()
            release.wait(10)
            pipe.write(ev("e-1") + b"\n")
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    lines = read_lines(fifo)
    first = next(lines)  # must not wait for the end of the input
    before_the_end = not done.is_set()
    release.set()
    rest = list(lines)
    thread.join()
    assert before_the_end
    assert [orjson.loads(x)["id"] for x in [first, *rest]] == ["e-0", "e-1"]


def test_check_lines_pulls_input_only_as_results_are_taken() -> None:
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield ev(f"e-{i}")

    results = check_lines(source())
    first = list(itertools.islice(results, 3))
    assert [r.event.id for r in first if r.event] == ["e-0", "e-1", "e-2"]
    assert pulled <= 4


def test_check_lines_numbers_lines_and_skips_blanks() -> None:
    results = list(check_lines([ev("a"), b"\n", b"  \n", ev("b"), b"{"]))
    assert [(r.number, r.event is not None) for r in results] == [(1, True), (4, True), (5, False)]
    assert results[2].error is not None and results[2].error.reason == "malformed"


def test_duplicates_are_per_room_and_reported_as_duplicates() -> None:
    results = list(check_lines([ev("a"), ev("a", room="south"), ev("a"), ev("a", type="x")]))
    assert [r.event is not None for r in results] == [True, True, False, False]
    assert results[2].error is not None and results[2].error.reason == "duplicate"
    assert results[3].error is not None and results[3].error.field == "type"


# --- caller pseudonyms -----------------------------------------------------------------------

def test_pseudonyms_are_keyed_deterministic_and_hide_the_number() -> None:
    a = pseudonymise(RAW_NUMBER, b"key-one")
    assert a.startswith("k:")
    assert a == pseudonymise(RAW_NUMBER, b"key-one")
    assert a == pseudonymise("+447700900123", b"key-one")  # spacing does not matter
    assert a != pseudonymise(RAW_NUMBER, b"key-two")
    assert a != pseudonymise("+44 7700 900124", b"key-one")
    assert "7700" not in a and "900123" not in a


def test_check_lines_with_a_key_publishes_pseudonyms_only() -> None:
    lines = [ev("a", caller=RAW_NUMBER), ev("b", caller="k:already"), ev("c")]
    results = list(check_lines(lines, caller_key=b"secret"))
    callers = [r.event.caller for r in results if r.event]
    assert callers == [pseudonymise(RAW_NUMBER, b"secret"), "k:already", None]
    assert all(RAW_NUMBER.encode() not in r.event.to_json() for r in results if r.event)


def test_without_a_key_a_raw_number_is_rejected_and_redacted() -> None:
    (result,) = check_lines([ev("a", caller=RAW_NUMBER)])
    assert result.event is None
    assert result.error is not None and result.error.reason == "raw_phone_number"
    assert b"7700" not in result.raw
    assert orjson.loads(result.raw)["id"] == "a"  # the rest of the line is kept for the report
