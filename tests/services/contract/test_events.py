"""The event contract (EVENTS.md): every rule, error messages, exact round trips, hostile input."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contract.events import (
    Event,
    InvalidEvent,
    decode_message,
    encode_batch,
    parse_event,
)

NOW = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000
AT = "2026-11-21T22:15:03Z"

# One valid event of every type, with every optional field filled in.
FULL: dict[str, dict[str, Any]] = {
    "call.offered": {"call": "c-1", "line": "101", "caller": "k:7f3a9c",
                     "reason": "progress_chase", "ref": "CAD-123"},
    "call.answered": {"call": "c-1", "handler": "h-7"},
    "call.abandoned": {"call": "c-1"},
    "call.callback_requested": {"call": "c-1"},
    "call.ended": {"call": "c-1", "outcome": "incident", "wrap_seconds": 45.5},
    "callback.attempted": {"call": "c-1", "success": True},
    "incident.created": {"incident": "i-1", "grade": "immediate", "call": "c-1", "area": "urban"},
    "incident.dispatched": {"incident": "i-1"},
    "incident.arrived": {"incident": "i-1"},
    "incident.closed": {"incident": "i-1"},
    "handler.state": {"handler": "h-7", "state": "on_call"},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "call.offered": ("call", "line"),
    "call.answered": ("call",),
    "call.abandoned": ("call",),
    "call.callback_requested": ("call",),
    "call.ended": ("call",),
    "callback.attempted": ("call", "success"),
    "incident.created": ("incident", "grade"),
    "incident.dispatched": ("incident",),
    "incident.arrived": ("incident",),
    "incident.closed": ("incident",),
    "handler.state": ("handler", "state"),
}
ENVELOPE = ("v", "id", "type", "room", "at")

# The example of EVENTS.md, verbatim.
EXAMPLE = b"""\
{"v":1,"id":"e-1","type":"call.offered","room":"north","at":"2026-11-21T22:15:03.250Z","call":"c-88","line":"101","caller":"k:7f3a9c"}
{"v":1,"id":"e-2","type":"call.abandoned","room":"north","at":"2026-11-21T22:16:40Z","call":"c-88"}
{"v":1,"id":"e-3","type":"call.offered","room":"north","at":"2026-11-21T22:18:00Z","call":"c-91","line":"999","caller":"k:7f3a9c"}
{"v":1,"id":"e-4","type":"call.answered","room":"north","at":"2026-11-21T22:18:04.5Z","call":"c-91","handler":"h-7"}
{"v":1,"id":"e-5","type":"call.ended","room":"north","at":"2026-11-21T22:21:10Z","call":"c-91","outcome":"incident","wrap_seconds":45}
{"v":1,"id":"e-6","type":"incident.created","room":"north","at":"2026-11-21T22:20:30Z","incident":"i-12","grade":"immediate","call":"c-91","area":"urban"}
"""


def make(etype: str = "call.abandoned", **changes: Any) -> dict[str, Any]:
    """A valid event object of ``etype`` (all optional fields set), with ``changes`` applied."""
    obj: dict[str, Any] = {"v": 1, "id": "e-1", "type": etype, "room": "north", "at": AT}
    obj.update(FULL[etype])
    obj.update(changes)
    return obj


def rejects(obj: Any, field: str, **kwargs: Any) -> InvalidEvent:
    """Assert ``obj`` is invalid because of ``field``, and the message says so."""
    with pytest.raises(InvalidEvent) as info:
        parse_event(obj, **kwargs)
    assert info.value.field == field
    assert field in str(info.value)
    assert len(str(info.value)) > len(field) + 5  # says what is wrong, not just where
    return info.value


# --- every type, required and optional fields ------------------------------------------------

@pytest.mark.parametrize("etype", sorted(FULL))
def test_every_type_with_all_its_fields_is_valid(etype: str) -> None:
    event = parse_event(make(etype))
    assert isinstance(event, Event)
    assert event.type == etype
    for name, value in FULL[etype].items():
        assert getattr(event, name) == value


@pytest.mark.parametrize("etype", sorted(FULL))
def test_every_type_needs_only_its_required_fields(etype: str) -> None:
    obj = {"v": 1, "id": "e-1", "type": etype, "room": "north", "at": AT}
    obj.update({k: v for k, v in FULL[etype].items() if k in REQUIRED[etype]})
    event = parse_event(obj)
    for name in set(FULL[etype]) - set(REQUIRED[etype]):
        assert getattr(event, name) is None
    assert event.to_dict() == obj


@pytest.mark.parametrize(
    ("etype", "field"), [(t, f) for t in sorted(REQUIRED) for f in REQUIRED[t]]
)
def test_a_missing_or_null_required_field_is_named(etype: str, field: str) -> None:
    obj = make(etype)
    del obj[field]
    assert etype in str(rejects(obj, field))
    rejects(make(etype, **{field: None}), field)


@pytest.mark.parametrize("field", ENVELOPE)
def test_a_missing_or_null_envelope_field_is_named(field: str) -> None:
    obj = make()
    del obj[field]
    rejects(obj, field)
    rejects(make(**{field: None}), field)


def test_a_null_optional_field_is_the_same_as_an_absent_one() -> None:
    event = parse_event(make("call.answered", handler=None))
    assert event.handler is None
    assert "handler" not in event.to_dict()


def test_fields_of_other_types_and_unknown_fields_are_ignored() -> None:
    obj = make("call.abandoned", line="999", grade="nonsense", colour="blue", nested={"a": [1]})
    event = parse_event(obj)
    assert event.line is None and event.grade is None
    assert event.to_dict() == {k: obj[k] for k in (*ENVELOPE, "call")}


def test_something_that_is_not_an_object_is_invalid() -> None:
    for value in ([make()], "event", 1, None, True):
        with pytest.raises(InvalidEvent) as info:
            parse_event(value)
        assert str(info.value)


# --- envelope --------------------------------------------------------------------------------

@pytest.mark.parametrize("v", [0, 2, "1", True, 1.0, -1, [1]])
def test_version_must_be_the_integer_1(v: Any) -> None:
    rejects(make(v=v), "v")


@pytest.mark.parametrize("etype", ["call.unknown", "CALL.OFFERED", "", "call", 7, ["call.offered"]])
def test_an_unknown_type_is_invalid(etype: Any) -> None:
    err = rejects(make(type=etype), "type")
    assert "call.offered" in str(err)  # lists the types that exist


@pytest.mark.parametrize("name", ["id", "call", "incident", "handler"])
def test_identifiers_are_strings_of_1_to_128_characters(name: str) -> None:
    etype = {"id": "call.answered", "call": "call.answered", "handler": "call.answered",
             "incident": "incident.closed"}[name]
    assert getattr(parse_event(make(etype, **{name: "x"})), name) == "x"
    assert getattr(parse_event(make(etype, **{name: "é" * 128})), name) == "é" * 128
    assert "129" in str(rejects(make(etype, **{name: "x" * 129}), name))
    rejects(make(etype, **{name: ""}), name)
    assert "number" in str(rejects(make(etype, **{name: 42}), name))


@pytest.mark.parametrize("room", ["north", "a", "0", "north_1-b", "r" * 64])
def test_valid_rooms(room: str) -> None:
    assert parse_event(make(room=room)).room == room


@pytest.mark.parametrize(
    "room", ["North", "-north", "_north", "", "r" * 65, "nörth", "north\n", "no rth", 5, ["north"]]
)
def test_invalid_rooms(room: Any) -> None:
    rejects(make(room=room), "room")


# --- times -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-21T22:15:03Z", datetime(2026, 11, 21, 22, 15, 3, tzinfo=UTC)),
        ("2026-11-21T22:15:03.250Z", datetime(2026, 11, 21, 22, 15, 3, 250000, tzinfo=UTC)),
        ("2026-11-21T23:15:03+01:00", datetime(2026, 11, 21, 22, 15, 3, tzinfo=UTC)),
        ("2026-11-21T17:45:03-04:30", datetime(2026, 11, 21, 22, 15, 3, tzinfo=UTC)),
        ("2026-11-21t22:15:03z", datetime(2026, 11, 21, 22, 15, 3, tzinfo=UTC)),
        ("2026-03-29T00:59:59+00:00", datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)),
    ],
)
def test_times_with_a_zone_are_held_as_aware_utc(text: str, utc: datetime) -> None:
    event = parse_event(make(at=text))
    assert event.at == utc
    assert event.at.utcoffset() == timedelta(0)
    assert event.to_dict()["at"] == text  # the original text travels on unchanged


@pytest.mark.parametrize(
    "text", ["2026-11-21T22:15:03", "2026-11-21T22:15:03.5", "2026-11-21 22:15:03"]
)
def test_naive_times_are_invalid_and_the_message_says_add_a_zone(text: str) -> None:
    err = rejects(make(at=text), "at")
    assert "zone" in str(err)


@pytest.mark.parametrize(
    "text",
    ["2026-11-21", "22:15:03Z", "2026-11-21T22:15:03+0100", "2026-02-30T00:00:00Z",
     "2026-11-21T24:00:00Z", "2026-11-21T22:15:03+25:00", "yesterday", "", "NaN",
     "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", 1763763303, None],
)
def test_malformed_or_impossible_times_are_invalid(text: Any) -> None:
    rejects(make(at=text), "at")


def test_events_too_far_ahead_of_the_given_clock_are_invalid() -> None:
    day_ahead = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    just_over = (NOW + timedelta(days=1, milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert parse_event(make(at=day_ahead), now_us=NOW_US).at == NOW + timedelta(days=1)
    assert "clock" in str(rejects(make(at=just_over), "at", now_us=NOW_US))
    # the limit is a parameter ...
    minute_ahead = (NOW + timedelta(seconds=61)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rejects(make(at=minute_ahead), "at", now_us=NOW_US, max_future_seconds=60)
    assert parse_event(make(at=minute_ahead), now_us=NOW_US, max_future_seconds=120)
    # ... old events are fine, and without a clock the rule is not applied (historic files)
    assert parse_event(make(at="2001-01-01T00:00:00Z"), now_us=NOW_US)
    assert parse_event(make(at="2099-01-01T00:00:00Z")).at.year == 2099


# --- enumerations and typed fields -----------------------------------------------------------

@pytest.mark.parametrize("line", ["999", "101", "online", "a", "l" * 32, "web_chat-2"])
def test_valid_lines(line: str) -> None:
    assert parse_event(make("call.offered", line=line)).line == line


@pytest.mark.parametrize("line", ["", "Online", "-999", "l" * 33, "9 9 9", 999, ["999"]])
def test_invalid_lines(line: Any) -> None:
    rejects(make("call.offered", line=line), "line")


ENUMS = {
    "outcome": ("call.ended",
                ["resolved", "incident", "advice", "referred", "transferred", "unresolved"]),
    "grade": ("incident.created", ["immediate", "priority", "scheduled", "resolution"]),
    "area": ("incident.created", ["urban", "rural"]),
    "state": ("handler.state", ["available", "on_call", "wrap_up", "unavailable", "logged_out"]),
}


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, (_, vs) in ENUMS.items() for v in vs])
def test_every_enumeration_value_is_accepted(field: str, value: str) -> None:
    etype = ENUMS[field][0]
    assert getattr(parse_event(make(etype, **{field: value})), field) == value


@pytest.mark.parametrize("field", sorted(ENUMS))
@pytest.mark.parametrize("value", ["other", "", "URBAN", "On_Call", 1, True, ["urban"]])
def test_values_outside_an_enumeration_are_invalid(field: str, value: Any) -> None:
    err = rejects(make(ENUMS[field][0], **{field: value}), field)
    assert ENUMS[field][1][0] in str(err)  # the message lists the allowed values


@pytest.mark.parametrize(("wrap", "held"), [(0, 0.0), (45, 45.0), (12.5, 12.5), (0.0, 0.0)])
def test_wrap_seconds_is_a_number_of_at_least_zero(wrap: Any, held: float) -> None:
    assert parse_event(make("call.ended", wrap_seconds=wrap)).wrap_seconds == held


@pytest.mark.parametrize(
    "wrap",
    [-1, -0.001, "45", True, math.nan, math.inf, -math.inf, [1],
     pytest.param(10**400, id="10**400"), pytest.param(-(10**400), id="-10**400")],
)
def test_invalid_wrap_seconds(wrap: Any) -> None:
    rejects(make("call.ended", wrap_seconds=wrap), "wrap_seconds")


@pytest.mark.parametrize("success", [True, False])
def test_success_is_a_boolean(success: bool) -> None:
    assert parse_event(make("callback.attempted", success=success)).success is success


@pytest.mark.parametrize("success", ["true", 1, 0, "yes", []])
def test_success_that_is_not_a_boolean_is_invalid(success: Any) -> None:
    rejects(make("callback.attempted", success=success), "success")


@pytest.mark.parametrize("caller", ["k:7f3a9c", "withheld-123", "k:" + "a" * 126])
def test_pseudonymous_callers_are_valid(caller: str) -> None:
    assert parse_event(make("call.offered", caller=caller)).caller == caller


@pytest.mark.parametrize(
    "caller", ["+44 7700 900123", "07700900123", "(0161) 496-0000", "+447700900123", "999 999 9"]
)
def test_a_caller_that_looks_like_a_raw_phone_number_is_invalid(caller: str) -> None:
    err = rejects(make("call.offered", caller=caller), "caller")
    assert err.reason == "raw_phone_number"
    assert caller not in str(err)  # the number itself is not repeated anywhere
    assert "--hash-callers" in str(err)


@pytest.mark.parametrize("field", ["caller", "reason", "ref"])
def test_optional_text_fields_must_be_non_empty_strings(field: str) -> None:
    rejects(make("call.offered", **{field: ""}), field)
    rejects(make("call.offered", **{field: 12}), field)
    rejects(make("call.offered", **{field: "x" * 1000}), field)


# --- round trip ------------------------------------------------------------------------------

def test_the_events_md_example_round_trips_exactly() -> None:
    for line in EXAMPLE.splitlines():
        original = orjson.loads(line)
        event = parse_event(original)
        assert event.to_dict() == original  # every field, including the original `at` text
        again = parse_event(orjson.loads(event.to_json()))
        assert again == event
        assert again.to_dict() == original


@pytest.mark.parametrize("etype", sorted(FULL))
def test_every_type_round_trips_through_json(etype: str) -> None:
    original = make(etype, at="2026-11-21T23:15:03.123456+01:00")
    event = parse_event(original)
    assert event.to_dict() == original
    again = parse_event(orjson.loads(event.to_json()))
    assert again == event and again.at == event.at
    assert again.to_dict() == original


def test_events_of_different_content_are_not_equal() -> None:
    a = parse_event(make("call.answered"))
    assert a != parse_event(make("call.answered", handler="h-8"))
    assert a != parse_event(make("call.answered", at="2026-11-21T22:15:04Z"))
    assert a == parse_event(make("call.answered", at="2026-11-21T23:15:03+01:00"))


# --- batches (Kafka message values) ---------------------------------------------------------

def test_a_message_holding_one_event_decodes_to_that_event() -> None:
    obj = make("call.answered")
    assert decode_message(orjson.dumps(obj)) == [obj]


def test_a_batch_decodes_to_its_events_in_order() -> None:
    objs = [make("call.offered", id=f"e-{i}", call=f"c-{i}") for i in range(5)]
    assert decode_message(orjson.dumps(objs)) == objs
    events = [parse_event(o) for o in objs]
    assert [parse_event(o) for o in decode_message(encode_batch(events))] == events


def test_a_batch_that_mixes_rooms_is_rejected_whole() -> None:
    batch = [make(id="e-1"), make(id="e-2", room="south"), make(id="e-3")]
    with pytest.raises(InvalidEvent) as info:
        decode_message(orjson.dumps(batch))
    assert info.value.field == "room"
    assert "room" in str(info.value) and "one room" in str(info.value)


def test_an_invalid_event_inside_a_batch_is_rejected_alone() -> None:
    batch = [make(id="e-1"), make(id="e-2", at="2026-11-21T22:15:03"), make(id="e-3")]
    good, rejected = [], []
    for item in decode_message(orjson.dumps(batch)):
        try:
            good.append(parse_event(item).id)
        except InvalidEvent as exc:
            rejected.append(exc.field)
    assert good == ["e-1", "e-3"]
    assert rejected == ["at"]


@pytest.mark.parametrize("room", [[], {"a": 1}, [["north"]]])
def test_a_batch_with_a_room_that_is_not_a_string_does_not_crash(room: Any) -> None:
    batch = orjson.dumps([make(id="e-1", room=room), make(id="e-2", room=room)])
    for item in decode_message(batch):
        rejects(item, "room")
    with pytest.raises(InvalidEvent):
        decode_message(orjson.dumps([make(id="e-1"), make(id="e-2", room=room)]))


@pytest.mark.parametrize(
    "data", [b"", b"{", b"not json", b'{"v":1,}', b"[1,", b"\xff\xfe", b'{"v": NaN}']
)
def test_a_message_that_is_not_json_is_rejected(data: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_message(data)
    assert info.value.field == "message"
    assert "JSON" in str(info.value)


# --- hostile input ---------------------------------------------------------------------------

KNOWN = ENVELOPE + ("call", "line", "caller", "reason", "ref", "handler", "outcome",
                    "wrap_seconds", "success", "incident", "grade", "area", "state")
NASTY_STRINGS = st.sampled_from([
    "", " ", "NaN", "nan", "Infinity", "-Infinity", "-0", "1e999", "0x10", "null", "true",
    "1", "+44 7700 900123", "k:", "999", "２０２６-11-21T22:15:03Z", "2026-11-21T22:15:03",
    "9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00Z", "\x00", "\u202e", "north\n",
    "call.offered", "on_call", "x" * 129, "💥" * 64,
])
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(10**1000), max_value=10**1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), NASTY_STRINGS,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)
FIELD_NAMES = st.one_of(st.sampled_from(KNOWN), st.text(max_size=12))


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid event of a random type, mutated at random; sometimes not an object at all."""
    obj = copy.deepcopy(make(draw(st.sampled_from(sorted(FULL)))))
    if draw(st.booleans()):
        obj["at"] = draw(
            st.sampled_from([AT, "2026-11-21T23:15:03.5+01:00", "2027-06-01T00:00:00Z"])
        )
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["drop", "set", "set", "type", "swap"]))
        name = draw(FIELD_NAMES)
        if action == "drop":
            obj.pop(name, None)
        elif action == "set":
            obj[name] = draw(VALUES)
        elif action == "type":
            obj["type"] = draw(st.sampled_from(sorted(FULL)))
        else:
            obj[name] = draw(NASTY_STRINGS)
    return draw(st.one_of(st.just(obj), st.just(obj), st.just(obj), VALUES))


def check_outcome(value: Any) -> None:
    """Either a valid Event (which round-trips exactly) or InvalidEvent with a message."""
    try:
        event = parse_event(value, now_us=NOW_US, max_future_seconds=86400)
    except InvalidEvent as exc:
        assert str(exc).strip()
        assert exc.field and exc.field in str(exc)
        return
    assert isinstance(event, Event)
    assert event.at.utcoffset() == timedelta(0)
    again = parse_event(orjson.loads(event.to_json()))
    assert again == event
    assert again.to_dict() == event.to_dict()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_events_are_valid_or_invalid_never_a_crash(value: Any) -> None:
    check_outcome(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=4), st.booleans())
def test_mutated_messages_on_the_wire_are_valid_or_invalid_never_a_crash(
    values: list[Any], as_batch: bool
) -> None:
    try:
        data = orjson.dumps(values if as_batch else values[0])
    except orjson.JSONEncodeError:
        return  # not expressible as JSON (an int beyond 64 bits): cannot arrive on the wire
    try:
        items = decode_message(data)
    except InvalidEvent as exc:
        assert str(exc).strip()
        return
    for item in items:
        check_outcome(item)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        items = decode_message(data)
    except InvalidEvent as exc:
        assert exc.field == "message" and str(exc).strip()
        return
    for item in items:
        check_outcome(item)


