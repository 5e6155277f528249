"""The event contract, version 1 (EVENTS.md): parsing, validation and serialisation of events.

Validation is hand-written rather than a pydantic model per type: this is the per-event hot path
of the stream, and each rejection must name the field and the fix in words a user acts on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from services.errors import PacesetterError

VERSION = 1
ROOM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
LINE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}\Z")
TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)
# Something that looks like a raw phone number: digits with the usual separators.
PHONE_RE = re.compile(r"^\+?[\d\s().-]{7,}\Z")

OUTCOMES = frozenset({"resolved", "incident", "advice", "referred", "transferred", "unresolved"})
GRADES = frozenset({"immediate", "priority", "scheduled", "resolution"})
AREAS = frozenset({"urban", "rural"})
STATES = frozenset({"available", "on_call", "wrap_up", "unavailable", "logged_out"})

CALL_EXITS = frozenset({"call.answered", "call.abandoned", "call.callback_requested"})

# type -> (required fields, optional fields)
TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "call.offered": (("call", "line"), ("caller", "reason", "ref")),
    "call.answered": (("call",), ("handler",)),
    "call.abandoned": (("call",), ()),
    "call.callback_requested": (("call",), ()),
    "call.ended": (("call",), ("outcome", "wrap_seconds")),
    "callback.attempted": (("call", "success"), ()),
    "incident.created": (("incident", "grade"), ("call", "area")),
    "incident.dispatched": (("incident",), ()),
    "incident.arrived": (("incident",), ()),
    "incident.closed": (("incident",), ()),
    "handler.state": (("handler", "state"), ()),
}
ENVELOPE = ("v", "id", "type", "room", "at")
FIELD_ORDER = ENVELOPE + (
    "call",
    "line",
    "caller",
    "reason",
    "ref",
    "handler",
    "outcome",
    "wrap_seconds",
    "success",
    "incident",
    "grade",
    "area",
    "state",
)
_IDENTIFIERS = ("call", "handler", "incident")
_FREE_TEXT = ("reason", "ref")


class InvalidEvent(PacesetterError):
    """An event that breaks the contract; ``field`` names the culprit, the message the fix."""

    def __init__(self, field: str, message: str, reason: str = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class Event:
    """One valid event. Times are aware UTC; ``at_us`` is the event time in epoch microseconds.

    Integer microseconds keep every wait and duration exact (float seconds at today's epoch
    carry only ~0.2 µs of precision, enough to break exact agreement with a batch oracle).
    """


    v: int
    id: str
    type: str
    room: str
    at: datetime
    at_us: int
    at_text: str
    call: str | None
    line: str | None
    caller: str | None
    reason: str | None
    ref: str | None
    handler: str | None
    outcome: str | None
    wrap_seconds: float | None
    success: bool | None
    incident: str | None
    grade: str | None
    area: str | None
    state: str | None

    def __init__(self, **fields: Any) -> None:
        # A plain __dict__ update: this runs for every event, and absent optional fields
        # fall back to the class attributes (None) set below the class.
        self.__dict__.update(fields)
        at = fields["at"]
        if "at_us" not in fields:
            self.at_us = to_us(at)
        if not fields.get("at_text"):
            self.at_text = format_time(at)

    def to_dict(self) -> dict[str, Any]:
        """The event as its contract JSON object (only the fields it carries)."""
        out: dict[str, Any] = {}
        for name in FIELD_ORDER:
            value = getattr(self, name)
            if value is not None:
                out[name] = self.at_text if name == "at" else value
        return out

    def to_json(self) -> bytes:
        """The event as compact UTF-8 JSON."""
        return orjson.dumps(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in FIELD_ORDER)

    def __hash__(self) -> int:
        return hash((self.room, self.id))

    def __repr__(self) -> str:
        return f"Event({self.type} {self.room}/{self.id} at {self.at_text})"


for _name in FIELD_ORDER:
    if not hasattr(Event, _name):
        setattr(Event, _name, None)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(at: datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly."""
    delta = at - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """Aware UTC datetime of epoch microseconds."""
    from datetime import timedelta

    return EPOCH + timedelta(microseconds=us)


def format_time(at: datetime) -> str:
    """RFC 3339 UTC text with a ``Z``; microseconds only when present."""
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    if at.microsecond:
        text += f".{at.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(value: Any, field: str = "at") -> datetime:
    """Parse an RFC 3339 time with a zone designator into aware UTC.

    Raises:
        InvalidEvent: not a string, not RFC 3339, or naive.
    """
    if not isinstance(value, str):
        raise InvalidEvent(field, f"must be an RFC 3339 time string, got {_kind(value)}")
    if not TIME_RE.match(value):
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?\Z", value):
            raise InvalidEvent(
                field, f"{value!r} has no time zone: add 'Z' for UTC or an offset like '+01:00'"
            )
        raise InvalidEvent(
            field, f"{value!r} is not an RFC 3339 time such as '2026-11-21T22:15:03Z'"
        )
    try:
        if value[-1] == "Z" and value[10] == "T":  # the common case: already UTC
            return datetime.fromisoformat(value)
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # e.g. 9999-12-31T23:59:59-01:00 overflows UTC
        raise InvalidEvent(field, f"{value!r} is not a real date and time ({exc})") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "an object"
    )


def _text(obj: dict[str, Any], name: str, max_len: int = 128) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidEvent(name, f"must be a string, got {_kind(value)}")
    if not 1 <= len(value) <= max_len:
        raise InvalidEvent(name, f"must be 1 to {max_len} characters, got {len(value)}")
    return value


def parse_event(obj: Any, now_us: int | None = None, max_future_seconds: float = 86400.0) -> Event:
    """Validate one decoded JSON value against the contract and return the event.

    Args:
        obj: the decoded JSON value.
        now_us: the wall clock in epoch microseconds, for the ``max_future_seconds`` rule;
            ``None`` skips that rule (offline validation of historic files).
        max_future_seconds: how far ahead of ``now_us`` an event may be timed.

    Raises:
        InvalidEvent: the event breaks the contract; the message names the field and the fix.
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("event", f"must be a JSON object, got {_kind(obj)}")
    for name in ENVELOPE:
        if name not in obj or obj[name] is None:
            raise InvalidEvent(name, "is required")
    v = obj["v"]
    if type(v) is not int or v != VERSION:
        raise InvalidEvent("v", f"must be {VERSION} (the contract version), got {v!r}")
    event_id = _text(obj, "id")
    etype = obj["type"]
    spec = TYPES.get(etype) if isinstance(etype, str) else None
    if spec is None:
        raise InvalidEvent("type", f"{etype!r} is not one of: {', '.join(TYPES)}")
    room = obj["room"]
    if not isinstance(room, str) or not ROOM_RE.match(room):
        raise InvalidEvent(
            "room", f"{room!r} must be lower-case letters, digits, '-' or '_' (1-64, e.g. 'north')"
        )
    at_text = obj["at"]
    at = parse_time(at_text)
    at_us = to_us(at)
    if now_us is not None and at_us - now_us > max_future_seconds * 1_000_000:
        raise InvalidEvent(
            "at",
            f"{at_text} is more than {max_future_seconds:g} s ahead of the clock: fix the "
            "sending system's clock",
        )
    fields: dict[str, Any] = {
        "v": v,
        "id": event_id,
        "type": etype,
        "room": room,
        "at": at,
        "at_text": at_text,
        "at_us": at_us,
    }
    required, optional = spec
    for name in required:
        if name not in obj or obj[name] is None:
            raise InvalidEvent(name, f"is required for {etype}")
        fields[name] = _field(obj, name)
    for name in optional:
        if obj.get(name) is not None:
            fields[name] = _field(obj, name)
    return Event(**fields)


def _field(obj: dict[str, Any], name: str) -> Any:
    value = obj[name]
    if name in _IDENTIFIERS:
        return _text(obj, name)
    if name == "line":
        if not isinstance(value, str) or not LINE_RE.match(value):
            raise InvalidEvent(
                "line", f"{value!r} must be like '999', '101' or 'online' ({LINE_RE.pattern})"
            )
        return value
    if name == "caller":
        text = _text(obj, name)
        if PHONE_RE.match(text):
            raise InvalidEvent(
                "caller",
                "looks like a raw phone number: publish a keyed pseudonym instead "
                "(pacesetter replay --hash-callers)",
                reason="raw_phone_number",
            )
        return text
    if name in _FREE_TEXT:
        return _text(obj, name, 256)
    if name == "outcome":
        return _enum(value, name, OUTCOMES)
    if name == "grade":
        return _enum(value, name, GRADES)
    if name == "area":
        return _enum(value, name, AREAS)
    if name == "state":
        return _enum(value, name, STATES)
    if name == "wrap_seconds":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidEvent(name, f"must be a number of seconds, got {_kind(value)}")
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = float("inf")
        if not seconds >= 0 or seconds == float("inf"):
            raise InvalidEvent(name, f"must be a finite number ≥ 0, got {value!r}")
        return seconds
    if name == "success":
        if not isinstance(value, bool):
            raise InvalidEvent(name, f"must be true or false, got {_kind(value)}")
        return value
    raise AssertionError(name)  # pragma: no cover - every field of TYPES is handled above


def _enum(value: Any, name: str, allowed: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidEvent(name, f"{value!r} is not one of: {', '.join(sorted(allowed))}")
    return value


def decode_message(data: bytes) -> list[Any]:
    """Decode one Kafka message value into its list of JSON values (a batch or one event).

    Raises:
        InvalidEvent: not valid JSON, or a batch that mixes rooms (rejected whole).
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("message", f"is not valid JSON ({exc})", reason="malformed") from None
    if isinstance(value, list):
        # A list, not a set: a room may be any JSON value here, even an unhashable one.
        rooms = [item.get("room") for item in value if isinstance(item, dict)]
        if any(room != rooms[0] for room in rooms[1:]):
            raise InvalidEvent(
                "room",
                "a batch must hold events of one room only: send one batch per room",
                reason="mixed_batch",
            )
        return value
    return [value]


def encode_batch(events: Iterable[Event]) -> bytes:
    """Encode events of one room as a batch message value."""
    return orjson.dumps([e.to_dict() for e in events])


def iter_jsonl(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes, Any]]:
    """Yield ``(line_number, raw, decoded_or_exception)`` for each non-blank JSONL line."""
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        try:
            yield number, stripped, orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            yield number, stripped, InvalidEvent("line", f"is not valid JSON ({exc})", "malformed")
