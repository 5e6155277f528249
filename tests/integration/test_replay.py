"""``pacesetter replay`` on the embedded broker: keys, order, exactly-once, pseudonyms, pacing."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient

from pacesetter.cli import main
from services.contract.events import decode_message, parse_event
from tests.integration.harness import ROOT, read_topic

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
RAW_NUMBER = "+44 7700 900123"


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event(eid: str, room: str, at: datetime, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"v": 1, "id": eid, "type": "call.offered", "room": room,
                           "at": stamp(at), "call": f"c-{eid}", "line": "101"}
    obj.update(fields)
    return obj


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """One line per item: dicts as JSON, bytes as they are."""
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else orjson.dumps(x) for x in lines)
                     + b"\n")
    return path


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch, bootstrap: str) -> str:
    """A topic of the test's own, named through the environment as an operator would."""
    for name in list(os.environ):
        if name.startswith("PACESETTER_"):
            monkeypatch.delenv(name)
    name = f"t{uuid.uuid4().hex[:10]}.events"
    monkeypatch.setenv("PACESETTER_TOPIC_EVENTS", name)
    monkeypatch.setenv("PACESETTER_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("PACESETTER_PARTITIONS", "4")
    return name


@pytest.fixture(scope="module", autouse=True)
def absent_broker_replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``pacesetter replay`` against a closed port, started first and run in the background.

    Giving up on an absent broker takes the command its full wait (15 s) by design; running it
    alongside the other tests of this module keeps the suite fast. The last test checks it.
    """
    path = write_jsonl(tmp_path_factory.mktemp("absent") / "e.jsonl",
                       [event("e-1", "north", START)])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound but never listening: connections are refused
    address = f"127.0.0.1:{closed.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACESETTER_")}
    done: dict[str, Any] = {"address": address}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pacesetter.cli", "replay", str(path), "--bootstrap", address],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    started = time.monotonic()

    def wait() -> None:
        stdout, stderr = proc.communicate()
        done["elapsed"] = time.monotonic() - started
        done["result"] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    done["thread"] = threading.Thread(target=wait, daemon=True)
    done["thread"].start()
    try:
        yield done
    finally:
        if proc.poll() is None:
            proc.kill()
        done["thread"].join(10)
        closed.close()


def topics(bootstrap: str) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        names = admin.list_topics()
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


def published(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any], int, int]]:
    """Every event on the topic as (key, event object, partition, offset), in offset order."""
    return flatten(read_topic(bootstrap, topic))


def flatten(
    messages: list[tuple[bytes | None, bytes, int, int]],
) -> list[tuple[str, dict[str, Any], int, int]]:
    """Messages (single events or batches) as events, each with its message's key."""
    out = []
    for key, value, partition, offset in sorted(messages, key=lambda m: (m[2], m[3])):
        assert key is not None
        room = key.decode()
        items = decode_message(value)  # one event or a batch of one room
        for item in items:
            assert item["room"] == room, "a message must be keyed by its events' room"
            out.append((room, item, partition, offset))
    return out


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_publishes_every_valid_event_once_keyed_by_room_in_file_order(
    tmp_path: Path, topic: str, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(20261121)
    rooms = ["north", "south", "east", "west"]
    lines: list[Any] = []
    valid: list[dict[str, Any]] = []
    invalid_lines: list[int] = []
    for i in range(900):
        room = rng.choices(rooms, weights=[5, 2, 1, 1])[0]  # north spans several batches
        at = START + timedelta(seconds=rng.randrange(0, 7200))  # file order is not time order
        obj = event(f"e-{i}", room, at)
        lines.append(obj)
        valid.append(obj)
        if i % 97 == 0:
            lines.append(b"")  # blank: skipped, but counted in line numbers
        if i % 150 == 0:
            lines.append(event(f"bad-{i}", room, at, line="Not A Line"))
            invalid_lines.append(len(lines))
        if i % 200 == 1:
            lines.append(obj)  # a duplicate of the line just before
            invalid_lines.append(len(lines))
    lines.append(b'{"v":1,"id":"broken"')
    invalid_lines.append(len(lines))
    path = write_jsonl(tmp_path / "events.jsonl", lines)
    assert topic not in topics(bootstrap)

    code, out, err = replay(capsys, str(path))

    assert code == 0, err
    assert f"{len(valid)} published" in out
    assert f"{len(invalid_lines)} invalid" in out
    reported = [line for line in err.splitlines() if line.startswith("line ")]
    assert [int(line.split(":")[0].split()[1]) for line in reported] == invalid_lines
    assert topics(bootstrap)[topic] == 4  # created, with PACESETTER_PARTITIONS partitions

    arrived = published(bootstrap, topic)
    counts = Counter((room, obj["id"]) for room, obj, _, _ in arrived)
    assert counts == Counter((obj["room"], obj["id"]) for obj in valid)  # each exactly once
    assert not any(obj["id"].startswith(("bad-", "broken")) for _, obj, _, _ in arrived)
    by_id = {(o["room"], o["id"]): o for o in valid}
    for room, obj, _, _ in arrived:
        assert parse_event(obj) == parse_event(by_id[(room, obj["id"])])
    for room in rooms:
        file_order = [o["id"] for o in valid if o["room"] == room]
        topic_order = [o["id"] for r, o, _, _ in arrived if r == room]
        assert topic_order == file_order, f"room {room} out of order"
        assert len({p for r, _, p, _ in arrived if r == room}) == 1  # one partition per room
    assert len(file_order) > 0


def test_replay_takes_the_bootstrap_option(
    tmp_path: Path, topic: str, bootstrap: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PACESETTER_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # overridden below
    path = write_jsonl(tmp_path / "e.jsonl", [event("e-1", "north", START)])
    code, out, err = replay(capsys, str(path), "--bootstrap", bootstrap)
    assert code == 0, err
    assert "1 published" in out
    assert [obj["id"] for _, obj, _, _ in published(bootstrap, topic)] == ["e-1"]


def test_hash_callers_publishes_keyed_pseudonyms_only(
    tmp_path: Path, topic: str, bootstrap: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_jsonl(tmp_path / "callers.jsonl", [
        event("e-1", "north", START, caller=RAW_NUMBER),
        event("e-2", "north", START + timedelta(seconds=5), caller="+447700900123"),
        event("e-3", "north", START + timedelta(seconds=9), caller="k:already-a-pseudonym"),
        event("e-4", "north", START + timedelta(seconds=12)),
    ])

    def run(key: str) -> tuple[dict[str, str | None], bytes]:
        name = f"t{uuid.uuid4().hex[:10]}.events"
        monkeypatch.setenv("PACESETTER_TOPIC_EVENTS", name)
        monkeypatch.setenv("PACESETTER_CALLER_KEY", key)
        code, out, err = replay(capsys, str(path), "--hash-callers")
        assert code == 0, err
        assert "7700" not in out + err
        messages = read_topic(bootstrap, name)
        values = b"".join(value for _, value, _, _ in messages)
        callers = {obj["id"]: obj.get("caller") for _, obj, _, _ in flatten(messages)}
        return callers, values

    first, first_bytes = run("first-secret-key")
    again, _ = run("first-secret-key")
    other, other_bytes = run("another-secret-key")

    assert set(first) == {"e-1", "e-2", "e-3", "e-4"}
    pseudonym = first["e-1"]
    assert pseudonym is not None and pseudonym.startswith("k:")
    assert first["e-2"] == pseudonym  # the same number, however it is written
    assert first["e-3"] == "k:already-a-pseudonym"
    assert first["e-4"] is None
    assert again == first  # deterministic for the same key
    assert other["e-1"] != pseudonym and other["e-1"].startswith("k:")  # type: ignore[union-attr]
    for raw in (first_bytes, other_bytes):
        for fragment in (b"7700", b"900123", b"+44"):
            assert fragment not in raw


def test_hash_callers_without_a_key_refuses_and_publishes_nothing(
    tmp_path: Path, topic: str, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "callers.jsonl", [event("e-1", "north", START,
                                                          caller=RAW_NUMBER)])
    code, _, err = replay(capsys, str(path), "--hash-callers")
    assert code != 0
    assert "PACESETTER_CALLER_KEY" in err
    assert topic not in topics(bootstrap)


def test_raw_numbers_without_hash_callers_are_reported_not_published(
    tmp_path: Path, topic: str, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "callers.jsonl", [
        event("e-1", "north", START, caller=RAW_NUMBER),
        event("e-2", "north", START, caller="k:abc"),
    ])
    code, out, err = replay(capsys, str(path))
    assert code == 0
    assert "1 published" in out and "1 invalid" in out
    assert err.splitlines()[0].startswith("line 1: caller")
    assert "7700" not in out + err
    assert [obj["id"] for _, obj, _, _ in published(bootstrap, topic)] == ["e-2"]


def test_speed_paces_by_event_time(
    tmp_path: Path, topic: str, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 4 s of event time at twice real time: at least 2 s, whatever the broker's speed
    path = write_jsonl(tmp_path / "paced.jsonl", [
        event(f"e-{i}", "north", START + timedelta(seconds=i)) for i in range(5)
    ])
    started = time.monotonic()
    code, _, err = replay(capsys, str(path), "--speed", "2")
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert elapsed >= 1.9, f"4 s of events at --speed 2 took only {elapsed:.2f} s"
    assert [obj["id"] for _, obj, _, _ in published(bootstrap, topic)] == [
        f"e-{i}" for i in range(5)]


def test_replay_of_a_missing_file_says_so(
    tmp_path: Path, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jsonl"
    code, _, err = replay(capsys, str(missing))
    assert code != 0
    assert str(missing) in err
    assert "Traceback" not in err


def test_replay_to_a_broker_that_is_not_there_fails_clearly_and_in_bounded_time(
    absent_broker_replay: dict[str, Any],
) -> None:
    done = absent_broker_replay
    done["thread"].join(60)
    assert "result" in done, "replay did not finish within 60 s"
    result, address = done["result"], done["address"]
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert address in last and "broker" in last.lower()
    assert "Traceback" not in result.stderr
    assert done["elapsed"] < 30, f"gave up only after {done['elapsed']:.0f} s"
