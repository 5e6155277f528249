"""The event contract, version 1 (EVENTS.md): parsing, validation and serialisation of events.

Validation is hand-written rather than a pydantic model per type: this is the per-event hot path
of the stream, and each rejection must name the field and the fix in words a user acts on.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

import msgspec
import orjson

from services.contract.errors import PacesetterError
from services.contract.privacy import PHONE_RE

VERSION = 1
# Rooms and lines are names shown everywhere: one with 9 or more digits could be a caller's
# phone number (privacy.py), so none is accepted.
_NOT_A_NUMBER = r"(?!(?:[^0-9]*[0-9]){9})"
ROOM_RE = re.compile(r"^" + _NOT_A_NUMBER + r"[a-z0-9][a-z0-9_-]{0,63}\Z")
LINE_RE = re.compile(r"^" + _NOT_A_NUMBER + r"[a-z0-9][a-z0-9_-]{0,31}\Z")
TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)
# Something that looks like a raw phone number: digits with the usual separators.

OUTCOMES = frozenset({"resolved", "incident", "advice", "referred", "transferred", "unresolved"})
GRADES = frozenset({"immediate", "priority", "scheduled", "resolution"})
AREAS = frozenset({"urban", "rural"})
STATES = frozenset({"available", "on_call", "wrap_up", "unavailable", "logged_out"})


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


# msgspec constraints: exactly what ``parse_event`` accepts, or less (never more), for the
# fast path. The room, the time, the clock, and the line and caller of a call.offered are
# checked after decoding (``services.figures.engine.decode_fast``): msgspec matches a pattern
# by calling the compiled expression's ``search`` through Python, which cost a quarter of
# decoding a stream's events; lines are few, so a line once matched is remembered.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Seconds = Annotated[float, msgspec.Meta(ge=0, le=sys.float_info.max)]


class Event(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """One valid event; one subclass per type (``EVENT_TYPES``), so fields are the type's own.

    ``at_text`` is the event's ``at`` exactly as sent; ``at_us`` its time in epoch
    microseconds: integer microseconds keep every wait and duration exact (float seconds at
    today's epoch carry only ~0.2 µs of precision, enough to break exact agreement with a
    batch oracle). Fields another type carries read as ``None``.

    The classes double as a msgspec schema, so that a whole well-formed batch is decoded and
    type-checked in C (``decode_structs``); anything that schema refuses goes through
    ``parse_event``, which names the field and the fix.
    """

    v: Literal[1]  # VERSION: checked in C, as parse_event checks it (an int, equal to 1)
    id: _Id
    room: str
    at_text: str = msgspec.field(name="at")
    # Never read from JSON (the name cannot be sent by accident): set from ``at`` on parsing.
    at_us: int = msgspec.field(default=0, name=" at_us (derived)")

    type: ClassVar[str]
    if TYPE_CHECKING:  # each type's own fields, as every event reads them (None if not its)
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

    @property
    def at(self) -> datetime:
        """The event time, aware UTC."""
        return from_us(self.at_us)

    def to_dict(self) -> dict[str, Any]:
        """The event as its contract JSON object (only the fields it carries)."""
        out: dict[str, Any] = {}
        for name in FIELD_ORDER:
            value = self.at_text if name == "at" else getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> bytes:
        """The event as compact UTF-8 JSON."""
        return orjson.dumps(self.to_dict())

    def __eq__(self, other: object) -> bool:
        """Same type and fields, ``at`` compared as an instant (whatever its offset)."""
        if not isinstance(other, Event):
            return NotImplemented
        return type(self) is type(other) and self.at_us == other.at_us and all(
            getattr(self, n) == getattr(other, n) for n in self.__struct_fields__
            if n != "at_text")

    def __hash__(self) -> int:
        return hash((self.room, self.id))

    def __repr__(self) -> str:
        return f"Event({self.type} {self.room}/{self.id} at {self.at_text})"


class CallOffered(Event, tag="call.offered", kw_only=True):
    """A call offered to a queue."""

    call: _Id
    line: str  # LINE_RE: checked after decoding (engine.decode_fast, parse_event)
    caller: _Id | None = None  # and not a phone number (PHONE_RE): checked alike
    reason: _Text | None = None
    ref: _Text | None = None


class CallAnswered(Event, tag="call.answered", kw_only=True):
    """A call answered by a handler."""

    call: _Id
    handler: _Id | None = None


class CallAbandoned(Event, tag="call.abandoned", kw_only=True):
    """A caller hung up in the queue."""

    call: _Id


class CallbackRequested(Event, tag="call.callback_requested", kw_only=True):
    """A caller asked to be called back."""

    call: _Id


class CallEnded(Event, tag="call.ended", kw_only=True):
    """An answered call ended."""

    call: _Id
    outcome: Literal["resolved", "incident", "advice", "referred", "transferred",
                     "unresolved"] | None = None
    wrap_seconds: _Seconds | None = None


class CallbackAttempted(Event, tag="callback.attempted", kw_only=True):
    """A callback was tried."""

    call: _Id
    success: bool


class IncidentCreated(Event, tag="incident.created", kw_only=True):
    """An incident was created."""

    incident: _Id
    grade: Literal["immediate", "priority", "scheduled", "resolution"]
    call: _Id | None = None
    area: Literal["urban", "rural"] | None = None


class IncidentDispatched(Event, tag="incident.dispatched", kw_only=True):
    """A resource was dispatched."""

    incident: _Id


class IncidentArrived(Event, tag="incident.arrived", kw_only=True):
    """A resource arrived."""

    incident: _Id


class IncidentClosed(Event, tag="incident.closed", kw_only=True):
    """An incident was closed."""

    incident: _Id


class HandlerState(Event, tag="handler.state", kw_only=True):
    """A handler changed state."""

    handler: _Id
    state: Literal["available", "on_call", "wrap_up", "unavailable", "logged_out"]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (CallOffered, CallAnswered, CallAbandoned, CallbackRequested, CallEnded,
                CallbackAttempted, IncidentCreated, IncidentDispatched, IncidentArrived,
                IncidentClosed, HandlerState)
}
for _etype, _cls in EVENT_TYPES.items():
    _cls.type = _etype
    for _name in FIELD_ORDER:
        if _name not in _cls.__struct_fields__ and _name not in ("type", "at"):
            setattr(_cls, _name, None)  # another type's field reads as None
_AnyEvent: Any = Union[tuple(EVENT_TYPES.values())]  # noqa: UP007 - built at runtime
_BATCH = msgspec.json.Decoder(list[_AnyEvent])
_ONE = msgspec.json.Decoder(_AnyEvent)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(at: datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly."""
    delta = at - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """Aware UTC datetime of epoch microseconds."""
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


def _digit_count(value: Any) -> int:
    return sum(c.isdigit() for c in value) if isinstance(value, str) else 0


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
            "room", "must be lower-case letters, digits, '-' or '_' (1-64, at most 8 digits: "
            f"not a phone number), e.g. 'north'; got {room!r}",
            reason="raw_phone_number" if _digit_count(room) >= 9 else "invalid",
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
        "room": room,
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
    return EVENT_TYPES[etype](**fields)


def _field(obj: dict[str, Any], name: str) -> Any:
    value = obj[name]
    if name in _IDENTIFIERS:
        return _text(obj, name)
    if name == "line":
        if not isinstance(value, str) or not LINE_RE.match(value):
            raise InvalidEvent(
                "line", f"{value!r} must be like '999', '101' or 'online' (lower-case letters, "
                "digits, '-' or '_', at most 8 digits: not a phone number)",
                reason="raw_phone_number" if _digit_count(value) >= 9 else "invalid",
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(data: bytes) -> Any:
    """Decode JSON text, reading numbers beyond a double (``1e400``) as infinity.

    A valid JSON text may hold them; refusing the whole text would be wrong.

    Raises:
        ValueError: not valid JSON (orjson.JSONDecodeError is a ValueError).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not str(exc).startswith("number is infinity"):
            raise
    import json  # valid JSON orjson will not read: only the overflowing number differs

    return json.loads(data, parse_constant=_no_constant)


def decode_message(data: bytes) -> list[Any]:
    """Decode one Kafka message value into its list of JSON values (a batch or one event).

    Raises:
        InvalidEvent: not valid JSON, or a batch that mixes rooms (rejected whole).
    """
    try:
        value = load_json(data)
    except ValueError as exc:
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
            yield number, stripped, load_json(stripped)
        except ValueError as exc:
            yield number, stripped, InvalidEvent("line", f"is not valid JSON ({exc})", "malformed")


# The epoch microseconds of each "YYYY-MM-DDTHH:MM" seen, for the canonical UTC form of ``at``,
# and of each valid rest of it (":SS.fffZ"): both repeat a great deal in a stream.
_MINUTES: dict[str, int] = {}
_TAILS: dict[str, int] = {}


def _tail_us(tail: str) -> int | None:
    """Microseconds into the minute of ``:SS[.fraction]Z``, or None if not in that form."""
    seconds = tail[1:3]
    if tail[0] != ":" or tail[-1] != "Z" or not tail.isascii() or not seconds.isdigit():
        return None
    if seconds > "59":
        return None
    if len(tail) == 4:
        return int(seconds) * 1_000_000
    fraction = tail[4:-1]
    if tail[3] != "." or not 1 <= len(fraction) <= 9 or not fraction.isdigit():
        return None
    # beyond microseconds the digits are dropped, as datetime.fromisoformat does
    return int(seconds) * 1_000_000 + int((fraction + "00000")[:6])


def _canonical_at_us(text: str) -> int | None:
    """Epoch µs of ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``, as ``parse_time`` gives it.

    None when the text is in any other form or its minute is not yet known.
    """
    base = _MINUTES.get(text[:16])
    if base is None:
        return None
    tail = text[16:]
    offset = _TAILS.get(tail)
    if offset is None:
        offset = _tail_us(tail)
        if offset is None:
            return None
        if len(_TAILS) >= 200_000:
            _TAILS.clear()
        _TAILS[tail] = offset
    return base + offset


def _at_us(text: str) -> int:
    """Epoch µs of a valid ``at`` (raises InvalidEvent otherwise), remembering its minute."""
    at_us = _canonical_at_us(text)
    if at_us is not None:
        return at_us
    at_us = to_us(parse_time(text))
    if len(text) >= 20 and text[-1] == "Z" and text[10] == "T" and text.isascii():
        if len(_MINUTES) >= 100_000:
            _MINUTES.clear()
        _MINUTES[text[:16]] = at_us - at_us % 60_000_000
    return at_us


def decode_structs(data: bytes) -> list[Event] | None:
    """A message's events as decoded and type-checked in C by msgspec, or None if it refused.

    The first half of the fast path (``services.figures.engine.decode_fast``, compiled with
    the engine): what msgspec cannot check (the room, the time, the clock, the line and
    caller of a call.offered) it checks next, with the helpers above. Anything refused goes
    through ``decode_message`` and ``parse_event``, which name the field and the fix.
    """
    try:
        if data[:1] == b"[":
            events: list[Event] = _BATCH.decode(data)
            return events
        return [_ONE.decode(data)]
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
