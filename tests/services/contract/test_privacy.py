"""No raw phone number survives a rejected message: dead letters, log records, API answers."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.readmodel import ReadModel
from services.contract.privacy import install_log_redaction, redact, scrub_text
from services.contract.settings import Settings
from streams.worker import StreamWorker
from tests.streams.test_worker_publish import FakeProducer

WALL_US = 1_795_000_000 * 1_000_000  # 2026-11-18: the events are a few hours old


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


def grouped(number: str, sizes: list[int], sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(number[at:at + size])
        at += size
    parts.append(number[at:])
    return sep.join(p for p in parts if p)


SEPARATORS = st.sampled_from([" ", "-", ".", "", "  "])


@st.composite
def phone_numbers(draw: Any) -> str:
    """UK and international numbers as people write them."""
    kind = draw(st.sampled_from(["uk_mobile", "uk_landline", "uk_intl", "intl", "e164_bare",
                                 "london"]))
    sep = draw(SEPARATORS)
    if kind == "uk_mobile":
        return grouped("07" + draw(digits(9)), [5], sep)
    if kind == "uk_landline":
        number = "01" + draw(digits(8))
        return draw(st.sampled_from([grouped(number, [5], sep), f"({number[:5]}) {number[5:]}"]))
    if kind == "uk_intl":
        rest = "7" + draw(digits(9))
        return draw(st.sampled_from([f"+44 {grouped(rest, [4], sep)}", f"+44{rest}",
                                     f"+44 (0){grouped(rest, [4], sep)}", f"0044 {rest}"]))
    if kind == "london":
        return f"020 {draw(digits(4))} {draw(digits(4))}"
    if kind == "e164_bare":
        return "44" + "7" + draw(digits(9))
    country = draw(st.sampled_from(["1", "33", "49", "353", "61"]))
    return f"+{country} " + grouped(draw(digits(9)), [3, 3], sep)


def base_event(n: int) -> dict[str, Any]:
    return {"v": 1, "id": f"e-{n}", "type": "call.offered", "room": "north",
            "at": "2026-11-18T06:00:00Z", "call": f"c-{n}", "line": "999"}


FIELDS = ["caller", "room", "id", "call", "line", "type", "at", "reason", "ref", "extra",
          "nested", "key", "list"]
DEFECTS = ["none", "missing_at", "bad_version", "unknown_type", "cut_json", "not_utf8",
           "mixed_rooms"]


def place(event: dict[str, Any], where: str, phone: str) -> dict[str, Any]:
    event = dict(event)
    if where == "extra":
        event["note"] = f"ring back on {phone} please"
    elif where == "nested":
        event["meta"] = {"contact": {"tel": phone}}
    elif where == "key":
        event[phone] = True
    elif where == "list":
        event["numbers"] = ["x", phone]
    else:
        event[where] = phone
    return event


@st.composite
def messages(draw: Any) -> tuple[bytes, str]:
    """A message (any shape) with a phone number somewhere in it, and that number."""
    phone = draw(phone_numbers())
    where = draw(st.sampled_from(FIELDS))
    defect = draw(st.sampled_from(DEFECTS))
    event = place(base_event(draw(st.integers(0, 99))), where, phone)
    if defect == "missing_at" and where != "at":
        event.pop("at", None)
    elif defect == "bad_version":
        event["v"] = 99
    elif defect == "unknown_type" and where != "type":
        event["type"] = "call.teleported"
    value: Any = event
    if draw(st.booleans()) or defect == "mixed_rooms":  # a batch (JSON array)
        other = base_event(1000)
        if defect == "mixed_rooms":
            other["room"] = "south"
        value = [other, event] if draw(st.booleans()) else [event, other]
    raw = orjson.dumps(value)
    placed = raw.find(phone.encode())
    if defect == "cut_json":  # cut somewhere after the number: not JSON any more
        raw = raw[:draw(st.integers(placed + len(phone), len(raw) - 1))]
    elif defect == "not_utf8":  # bytes that are not UTF-8, before or after the number
        at = draw(st.sampled_from([placed, placed + len(phone)]))
        raw = raw[:at] + b"\xff\xfe" + raw[at:]
    return raw, phone


def leaks(phone: str, text: str) -> bool:
    """Whether ``text`` holds the number's digits, however they are spaced or punctuated."""
    wanted = re.sub(r"\D", "", phone)
    national = "0" + wanted[2:] if wanted.startswith("44") else wanted
    for run in re.findall(r"[\d\s().\-/+\\u]+", text):
        found = re.sub(r"\D", "", run)
        if wanted in found or national.lstrip("0") in found:
            return True
    return False


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def run_worker(raw: bytes, key: bytes | None, tmp: str) -> FakeProducer:
    worker = StreamWorker(Settings(data_dir=tmp), clock=lambda: WALL_US)
    producer = FakeProducer()
    worker.producer = producer  # type: ignore[assignment]
    worker.engine.process(raw, WALL_US, key)
    await worker.flush(force=True)
    for room in list(worker.engine.rooms):  # publish live states as the worker does
        worker.room_partition[room] = 0
    worker.partitions[0] = type("P", (), {"ready": asyncio.Event(), "rooms": set()})()
    worker.partitions[0].ready.set()
    await worker.flush(force=True)
    return producer


@pytest.fixture(scope="module")
def log_lines() -> Any:
    install_log_redaction()
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(messages())
def test_no_published_dead_letter_log_record_or_api_answer_holds_the_number(
        log_lines, tmp_path, message):
    raw, phone = message
    assert leaks(phone, raw.decode("utf-8", "replace"))  # the generator did place it
    log_lines.lines.clear()
    producer = asyncio.run(run_worker(raw, b"north", str(tmp_path)))
    published = [v for _topic, _p, records in producer.sent for _k, v in records]
    published += [v for _topic, _k, v in producer.singles]
    keys = [k for _topic, _p, records in producer.sent for k, _v in records]
    for value in published + keys:
        assert not leaks(phone, value.decode("utf-8", "replace")), value
    for line in log_lines.lines:
        assert not leaks(phone, line), line
    model = ReadModel(Settings())
    for topic, _p, records in producer.sent:
        for _k, value in records:
            model.apply(topic, orjson.loads(value))
    for topic, _k, value in producer.singles:
        model.apply(topic, orjson.loads(value))
    client = TestClient(create_app(Settings(), read_model=model))
    answers = [client.get("/api/v1/rooms"), client.get("/api/v1/alerts")]
    for room in model.rooms():
        for path in ("live", "intervals", "attendance", "handlers"):
            answers.append(client.get(f"/api/v1/rooms/{room['room']}/{path}"))
    for answer in answers:
        assert not leaks(phone, answer.text), answer.text


WORDS = st.text(st.characters(exclude_categories=["Nd"]), max_size=30)


@given(phone_numbers(), WORDS, WORDS)
def test_a_number_anywhere_in_text_is_scrubbed(phone, before, after):
    text = f"{before} {phone} {after}"
    assert not leaks(phone, scrub_text(text))
    assert not leaks(phone, redact(text.encode("utf-8")).decode("utf-8", "replace"))
    assert not leaks(phone, redact(text.encode("utf-16")).decode("latin-1"))


@pytest.mark.parametrize("raw", [
    b'[{"caller":"07700 900123"}]', b'{"caller":"07700 900123"', b"07700 900123 \xff",
    b'{"a": {"b": ["+44 7700 900123"]}}', b'"07700900123"', b"[447700900123]"])
def test_redaction_handles_every_shape(raw):
    assert not leaks("07700900123", redact(raw).decode("utf-8", "replace"))


def test_times_counts_and_identifiers_are_left_alone():
    text = ('{"id":"e-9","at":"2026-11-21T22:00:00.123Z","room":"north","call":"170010023",'
            '"offset":1207,"error":"at: 2026-11-21 22:00:00 has no time zone"}')
    assert redact(text.encode()) == text.encode()
