"""Rows to events (MAPPING.md): fields, filters, local times, stage order, deterministic ids.

A run keeps, per event, 16 bytes of sort key (numpy arrays) and, per row, one small tuple of
the values its events carry: memory grows with the events of the run, not with the export's
other columns. Events are sorted by (time, stage order, row order) before they leave.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from services.contract.errors import PacesetterError
from services.contract.events import (
    AREAS,
    GRADES,
    LINE_RE,
    OUTCOMES,
    PHONE_RE,
    ROOM_RE,
    format_time,
    to_us,
)
from services.imports.mapping import Condition, FieldSpec, Mapping
from services.imports.rows import RowProblem, read_rows
from services.kafka.ingest import pseudonymise

# Stage codes: (event type, suffix of the id, stage order rank).
STAGES: tuple[tuple[str, str, int], ...] = (
    ("call.offered", "offered", 0),
    ("call.answered", "answered", 1),
    ("call.abandoned", "abandoned", 1),
    ("call.callback_requested", "callback_requested", 1),
    ("call.ended", "ended", 2),
    ("incident.created", "created", 0),
    ("incident.dispatched", "dispatched", 1),
    ("incident.arrived", "arrived", 2),
    ("incident.closed", "closed", 3),
)
_CALL_EXITS = (("answered", 1), ("abandoned", 2), ("callback_requested", 3))
_INCIDENT_STAGES = (("created", 5), ("dispatched", 6), ("arrived", 7), ("closed", 8))
_MAX_CALL_ID = 128 - len(":callback_requested")
_MAX_INCIDENT_ID = 128 - len(":dispatched")
_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)([Zz]|[+-]\d{2}(:?\d{2})?)?$")
_WITHHELD = "(value withheld: a pseudonymised column)"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REASONS = {
    "missing_id": "no identifier",
    "missing_value": "a required value is missing",
    "bad_time": "a time that cannot be read",
    "bad_value": "a value the event contract does not allow",
    "unknown_value": "a value not in the field's map, without a default",
    "stage_order": "a stage earlier than the one it follows",
    "duplicate_id": "an identifier an earlier row already used",
    "raw_phone_number": "a raw phone number in a column not pseudonymised",
    "not_a_row": "a line that is not a row",
}


class ImportFailure(PacesetterError):
    """A run that cannot go on: no caller key for a pseudonymised column and the like."""


class Refused(Exception):
    """One row refused: the column, the reason (a key of ``REASONS``) and the explanation."""

    def __init__(self, column: str, reason: str, message: str) -> None:
        assert reason in REASONS, reason  # the reasons users count by are a fixed list
        super().__init__(message)
        self.column = column
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Refusal:
    """What the user reads about one refused row."""

    file: str
    line: int
    column: str
    reason: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.reason}: {self.message}"


@dataclass
class Summary:
    """What a run read, made and refused."""

    files: int = 0
    rows: int = 0
    filtered: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    @property
    def refused_rows(self) -> int:
        """Rows refused, every reason together."""
        return sum(self.refused.values())

    def lines(self) -> list[str]:
        """The summary a user reads, a few lines."""
        out = [f"{self.rows} rows read from {self.files} file(s)"
               + (f", {self.filtered} left out by [where]" if self.filtered else "")]
        made = ", ".join(f"{t} {n}" for t, n in sorted(self.events.items()))
        out.append(f"{sum(self.events.values())} events made" + (f": {made}" if made else ""))
        refused = ", ".join(f"{r} {n}" for r, n in sorted(self.refused.items()))
        out.append(f"{self.refused_rows} rows refused" + (f": {refused}" if refused else ""))
        return out


# -- fields ---------------------------------------------------------------------------------

Value = tuple[str | None, str | None]  # (text or None, time format or None)
Getter = Callable[[list[str | None]], Value]


def _label(spec: FieldSpec) -> str:
    if spec.column is not None:
        return spec.column
    if spec.columns is not None:
        return "+".join(spec.columns)
    if spec.coalesce is not None:
        return "|".join(_label(s) for s in spec.coalesce)
    return "(constant)"


class Fields:
    """The mapping's fields compiled into getters over a row's cells."""

    def __init__(self, mapping: Mapping, caller_key: bytes | None) -> None:
        self.columns = mapping.columns()
        self.index = {name: i for i, name in enumerate(self.columns)}
        # an empty cell is no value whatever the mapping lists
        self.nulls = frozenset({""} | {v.strip() for v in mapping.source.null_values})
        self.key = caller_key
        if mapping.pseudonymised() and not caller_key:
            raise ImportFailure(
                "the mapping pseudonymises a column: set PACESETTER_CALLER_KEY to the secret key "
                "(keep it out of files)")
        self.getters: dict[str, Getter] = {}
        self.labels: dict[str, str] = {}
        self.secret: dict[str, bool] = {}
        for name, spec in mapping.rows.fields().items():
            self.getters[name] = self._compile(spec, name)
            self.labels[name] = _label(spec)
            self.secret[name] = spec.is_pseudonymised()

    def _compile(self, spec: FieldSpec, name: str) -> Getter:
        nulls = self.nulls | {v.strip() for v in spec.null_values}
        label = _label(spec)
        fmt = spec.format
        raw: Getter
        if spec.value is not None:
            constant = str(spec.value)

            def raw(_cells: list[str | None]) -> Value:
                return constant, fmt
        elif spec.column is not None:
            index = self.index[spec.column]

            def raw(cells: list[str | None]) -> Value:
                value = cells[index]
                if value is None:
                    return None, fmt
                value = value.strip()
                return (None if value in nulls else value), fmt
        elif spec.columns is not None:
            indices = [(self.index[c], c) for c in spec.columns]

            def raw(cells: list[str | None]) -> Value:
                parts, empty = [], []
                for index, column in indices:
                    value = cells[index]
                    value = value.strip() if value is not None else None
                    if value is None or value in nulls:
                        empty.append(column)
                    else:
                        parts.append(value)
                if not parts:
                    return None, fmt
                if empty:
                    raise Refused(label, "missing_value",
                                  f"{', '.join(empty)} is empty while the other column(s) of "
                                  f"{name} have a value")
                return " ".join(parts), fmt
        else:
            items = [self._compile(s, name) for s in spec.coalesce or ()]

            def raw(cells: list[str | None]) -> Value:
                for item in items:
                    text, item_fmt = item(cells)
                    if text is not None:
                        return text, item_fmt or fmt
                return None, fmt

        secret = spec.pseudonymise
        key = self.key
        mapped, default = spec.map, spec.default
        if not secret and mapped is None and default is None:
            return raw  # the common case: nothing more to do with the value

        def get(cells: list[str | None]) -> Value:
            text, text_fmt = raw(cells)
            if text is not None and secret:
                assert key is not None
                text = _pseudonym(text, key)
            if mapped is not None:
                if text is None:
                    return default, text_fmt
                found = mapped.get(text)
                if found is None:
                    if default is None:
                        shown = _WITHHELD if secret else repr(text)
                        raise Refused(label, "unknown_value",
                                      f"{shown} is not in the map of {name} and {name} has no "
                                      "default: add it to the map, or give a default")
                    return default, text_fmt
                return found, text_fmt
            if text is None:
                return default, text_fmt
            return text, text_fmt

        return get


def _pseudonym(value: str, key: bytes) -> str:
    if PHONE_RE.match(value):
        return pseudonymise(value, key)  # as replay --hash-callers: the same caller, same key
    return "k:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


# strptime directives read by a compiled pattern; any other makes the format use strptime.
_FAST = {"d": r"(?P<d>\d{1,2})", "m": r"(?P<m>\d{1,2})", "Y": r"(?P<Y>\d{4})",
         "y": r"(?P<y>\d{2})", "H": r"(?P<H>\d{1,2})", "I": r"(?P<I>\d{1,2})",
         "M": r"(?P<M>\d{1,2})", "S": r"(?P<S>\d{1,2})", "f": r"(?P<f>\d{1,6})",
         "p": r"(?P<p>[AaPp][Mm])"}


def fast_pattern(fmt: str) -> re.Pattern[str] | None:
    """A regular expression reading ``fmt`` as strptime does, or None when it cannot.

    strptime costs ~20 µs a call, most of an import's time; exports use few formats, all of
    plain numbers, so each is compiled once. Only directives that appear once are taken.
    """
    parts, seen = [], set()
    index = 0
    while index < len(fmt):
        char = fmt[index]
        if char == "%" and index + 1 < len(fmt):
            directive = fmt[index + 1]
            if directive == "%":
                parts.append("%")
            elif directive in _FAST and directive not in seen:
                parts.append(_FAST[directive])
                seen.add(directive)
            else:
                return None
            index += 2
            continue
        parts.append(r"\s+" if char.isspace() else re.escape(char))
        index += 1
    if not ({"Y", "y"} & seen and "m" in seen and "d" in seen) or ("I" in seen) != ("p" in seen):
        return None
    if "H" in seen and "I" in seen:
        return None
    return re.compile("^" + "".join(parts) + "$")


def _from_match(found: re.Match[str]) -> datetime:
    groups = found.groupdict()
    year = int(groups["Y"]) if groups.get("Y") else 2000 + int(groups["y"])
    if groups.get("y") and int(groups["y"]) >= 69:  # as strptime: 69-99 are 1969-1999
        year -= 100
    if groups.get("I") is not None:
        hour = int(groups["I"])
        if not 1 <= hour <= 12:
            raise ValueError("hour")
        hour = hour % 12 + (12 if groups["p"].upper() == "PM" else 0)
    else:
        hour = int(groups.get("H") or 0)
    micro = int((groups.get("f") or "0").ljust(6, "0"))
    return datetime(year, int(groups["m"]), int(groups["d"]), hour,  # noqa: DTZ001 - local
                    int(groups.get("M") or 0), int(groups.get("S") or 0), micro)


class Times:
    """Local and ISO times to epoch microseconds, remembered (exports repeat them a lot)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.cache: dict[tuple[str, str | None], int] = {}
        self.patterns: dict[str, re.Pattern[str] | None] = {}
        self.offsets: dict[tuple[int, int, int, int], int] = {}

    def _parse(self, text: str, fmt: str) -> datetime:
        if fmt not in self.patterns:
            self.patterns[fmt] = fast_pattern(fmt)
        pattern = self.patterns[fmt]
        if pattern is None:
            return datetime.strptime(text, fmt)  # noqa: DTZ007 - zone given by the caller
        found = pattern.match(text)
        if found is None:
            raise ValueError(text)
        return _from_match(found)

    def _local_us(self, value: datetime) -> int:
        """Epoch µs of a naive local time: fold=0, as zoneinfo resolves it."""
        key = (value.year, value.month, value.day, value.hour)
        offset = self.offsets.get(key)
        if offset is None:
            # fold=0: the first of a repeated hour; a skipped hour takes the offset before it.
            # An hour's offset is remembered only when it holds for the whole hour.
            probe = value.replace(tzinfo=self.zone)
            delta = probe.utcoffset()
            assert delta is not None
            offset = round(delta.total_seconds() * 1_000_000)
            first = probe.replace(minute=0, second=0, microsecond=0).utcoffset()
            last = probe.replace(minute=59, second=59, microsecond=999_999).utcoffset()
            if first != delta or last != delta:
                return to_us(probe.astimezone(UTC))  # a change inside the hour: no cache
            if len(self.offsets) > 100_000:
                self.offsets.clear()
            self.offsets[key] = offset
        return to_us(value.replace(tzinfo=UTC)) - offset

    def us(self, text: str, fmt: str | None, column: str, shown: str) -> int:
        """Epoch µs of a time text; a time without an offset is local, resolved with fold=0.

        Raises:
            Refused: the text is not a time in the format (reason ``bad_time``).
        """
        key = (text, fmt)
        found = self.cache.get(key)
        if found is not None:
            return found
        try:
            if fmt is None:
                if not _ISO_RE.match(text):
                    raise ValueError("not ISO 8601")
                value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
            else:
                value = self._parse(text, fmt)
        except ValueError:
            expected = f"the format {fmt!r}" if fmt else "ISO 8601 (2026-11-21T22:15:03Z)"
            raise Refused(column, "bad_time", f"{shown} is not a time in {expected}") from None
        us = to_us(value.astimezone(UTC)) if value.tzinfo is not None else self._local_us(value)
        if len(self.cache) > 200_000:
            self.cache.clear()
        self.cache[key] = us
        return us


def at_text(us: int, _hours: dict[int, str] = {}) -> str:  # noqa: B006 - a deliberate cache
    """RFC 3339 UTC text of epoch microseconds, as the contract's ``at``."""
    hour = us - us % 3_600_000_000
    prefix = _hours.get(hour)
    if prefix is None:
        prefix = format_time(EPOCH + timedelta(microseconds=hour))[:14]
        if len(_hours) > 100_000:
            _hours.clear()
        _hours[hour] = prefix
    minutes, micro = divmod(us - hour, 60_000_000)
    seconds, micro = divmod(micro, 1_000_000)
    if micro:
        return f"{prefix}{minutes:02d}:{seconds:02d}.{micro:06d}".rstrip("0") + "Z"
    return f"{prefix}{minutes:02d}:{seconds:02d}Z"


# -- the run --------------------------------------------------------------------------------


class Run:
    """One import run: rows of one or more exports in, events sorted by time out."""

    def __init__(self, mapping: Mapping, caller_key: bytes | None = None,
                 report: Callable[[Refusal], None] | None = None) -> None:
        self.mapping = mapping
        self.kind = mapping.kind
        self.fields = Fields(mapping, caller_key)
        self.times = Times(mapping.source.zone)
        self.report = report or (lambda _r: None)
        self.summary = Summary()
        self._at = array("q")
        self._key = array("q")
        self._payloads: list[tuple[Any, ...]] = []
        self._seen: dict[str, set[str]] = {}  # identifiers per room
        self._units: dict[tuple[str, str], list[Any]] = {}
        self._file = ""
        self._conditions = self._compile_where()
        self._room = self._compile_room()

    # -- rows ---------------------------------------------------------------------------
    def _compile_where(self) -> list[tuple[int, Callable[[str | None], bool]]]:
        out: list[tuple[int, Callable[[str | None], bool]]] = []
        nulls = self.fields.nulls
        for column, condition in self.mapping.where.items():
            index = self.fields.index[column]
            if isinstance(condition, Condition):
                test: Callable[[str | None], bool] = condition.holds
            else:
                expected = condition

                def test(value: str | None, expected: str = expected) -> bool:
                    return value == expected

            def check(value: str | None, test: Callable[[str | None], bool] = test) -> bool:
                value = value.strip() if value is not None else None
                return test(None if value is None or value in nulls else value)

            out.append((index, check))
        return out

    def _compile_room(self) -> Callable[[list[str | None]], str]:
        source = self.mapping.source
        if source.room is not None:
            room = source.room
            return lambda _cells: room
        column = source.room_column
        assert column is not None
        index = self.fields.index[column]
        room_map = source.room_map

        def pick(cells: list[str | None]) -> str:
            value = (cells[index] or "").strip()
            if room_map is not None:
                found = room_map.get(value)
                if found is None:
                    raise Refused(column, "unknown_value",
                                  f"{value!r} is not in room_map: add it")
                return found
            if not ROOM_RE.match(value):
                raise Refused(column, "bad_value",
                              f"{value!r} is not a room id (lower-case letters, digits, '-' "
                              "or '_'): map it with room_map")
            return value

        return pick

    def add_file(self, path: str | Path, progress: Any = None) -> None:
        """Read one export into the run; refused rows are reported and counted."""
        self._file = str(path)
        self.summary.files += 1
        source = self.mapping.source
        handle = self._call_row if self.kind == "calls" else (
            self._incident_row if self.kind == "incidents" else self._unit_row)
        conditions = self._conditions
        for item in read_rows(path, self.fields.columns, source.format, source.delimiter,
                              progress):
            self.summary.rows += 1
            if isinstance(item, RowProblem):
                self._refuse(item.line, Refused("", "not_a_row", str(item)))
                continue
            line, cells = item
            if conditions and not all(check(cells[i]) for i, check in conditions):
                self.summary.filtered += 1
                continue
            try:
                handle(line, cells)
            except Refused as refused:
                self._refuse(line, refused)

    def _refuse(self, line: int, refused: Refused) -> None:
        self.summary.refused[refused.reason] += 1
        self.report(Refusal(self._file, line, refused.column, refused.reason, refused.message))

    def _get(self, cells: list[str | None], name: str) -> Value:
        getter = self.fields.getters.get(name)
        return getter(cells) if getter is not None else (None, None)

    def _text(self, cells: list[str | None], name: str, required: bool = False,
              max_len: int = 128) -> str | None:
        text, _ = self._get(cells, name)
        if text is None:
            if required:
                reason = "missing_id" if name == "id" else "missing_value"
                raise Refused(self.fields.labels.get(name, name), reason,
                              f"{name} is empty; every row needs it")
            return None
        if len(text) > max_len:
            raise Refused(self.fields.labels[name], "bad_value",
                          f"{name} is {len(text)} characters long; at most {max_len}")
        return text

    def _enum(self, cells: list[str | None], name: str, allowed: frozenset[str],
              required: bool = False) -> str | None:
        text = self._text(cells, name, required)
        if text is not None and text not in allowed:
            shown = _WITHHELD if self.fields.secret[name] else repr(text)
            raise Refused(self.fields.labels[name], "bad_value",
                          f"{shown} is not a {name} ({', '.join(sorted(allowed))}): "
                          "map it with map = {{…}} and a default")
        return text

    def _time(self, cells: list[str | None], name: str, required: bool = False) -> int | None:
        text, fmt = self._get(cells, name)
        if text is None:
            if required:
                raise Refused(self.fields.labels.get(name, name), "missing_value",
                              f"{name} is empty; every row needs it")
            return None
        shown = _WITHHELD if self.fields.secret[name] else repr(text)
        return self.times.us(text, fmt, self.fields.labels[name], shown)

    def _emit(self, at_us: int, stage: int, seq: int) -> None:
        self._at.append(at_us)
        self._key.append((STAGES[stage][2] << 56) | (seq << 4) | stage)

    def _stages(self, cells: list[str | None], names: tuple[str, ...],
                required_first: bool) -> list[int | None]:
        """The times of stages that follow each other, each checked against the latest before."""
        times: list[int | None] = []
        latest: tuple[str, int] | None = None
        for position, name in enumerate(names):
            at = self._time(cells, name, required=required_first and position == 0)
            times.append(at)
            if at is None:
                continue
            if latest is not None and at < latest[1]:
                raise Refused(self.fields.labels[name], "stage_order",
                              f"{name} is {(latest[1] - at) / 1e6:g} s before {latest[0]}: a "
                              "stage cannot come before the one it follows")
            latest = (name, at)
        return times

    def _call_row(self, _line: int, cells: list[str | None]) -> None:
        room = self._room(cells)
        call_id = self._text(cells, "id", required=True, max_len=_MAX_CALL_ID)
        assert call_id is not None
        line_name = self._text(cells, "line", required=True)
        if line_name is not None and not LINE_RE.match(line_name):
            raise Refused(self.fields.labels["line"], "bad_value",
                          f"{line_name!r} is not a line like 999, 101 or online: map it")
        offered = self._time(cells, "offered", required=True)
        assert offered is not None
        exit_stage, exit_at = None, None
        for name, stage in _CALL_EXITS:  # the first present, in this order
            at = self._time(cells, name)
            if at is not None:
                exit_stage, exit_at = stage, at
                break
        if exit_at is not None and exit_at < offered:
            name = STAGES[exit_stage or 1][1]
            raise Refused(self.fields.labels[name], "stage_order",
                          f"{name} is {(offered - exit_at) / 1e6:g} s before offered")
        ended = self._time(cells, "ended") if exit_stage == 1 else None
        if ended is not None and exit_at is not None and ended < exit_at:
            raise Refused(self.fields.labels["ended"], "stage_order",
                          f"ended is {(exit_at - ended) / 1e6:g} s before answered")
        caller = self._text(cells, "caller")
        if caller is not None and not self.fields.secret["caller"] and PHONE_RE.match(caller):
            raise Refused(self.fields.labels["caller"], "raw_phone_number",
                          "caller looks like a raw phone number (not shown): mark the field "
                          "pseudonymise = true")
        reason = self._text(cells, "reason", max_len=256)
        handler = self._text(cells, "handler") if exit_stage == 1 else None
        outcome = self._enum(cells, "outcome", OUTCOMES) if ended is not None else None
        wrap = self._seconds(cells, "wrap_seconds") if ended is not None else None
        seen = self._seen.setdefault(room, set())
        if call_id in seen:
            raise Refused(self.fields.labels["id"], "duplicate_id",
                          f"call {call_id!r} was already imported from an earlier row: the "
                          "first row stands")
        seen.add(call_id)
        seq = len(self._payloads)
        self._payloads.append((room, call_id, line_name, caller, reason, handler, outcome, wrap))
        self._emit(offered, 0, seq)
        if exit_stage is not None and exit_at is not None:
            self._emit(exit_at, exit_stage, seq)
        if ended is not None:
            self._emit(ended, 4, seq)

    def _seconds(self, cells: list[str | None], name: str) -> float | None:
        text = self._text(cells, name)
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise Refused(self.fields.labels[name], "bad_value",
                          f"{text!r} is not a number of seconds ≥ 0 (decimal seconds)")
        return value

    def _incident(self, cells: list[str | None]) -> tuple[Any, ...]:
        room = self._room(cells)
        incident_id = self._text(cells, "id", required=True, max_len=_MAX_INCIDENT_ID)
        times = self._stages(cells, INCIDENT_NAMES, required_first=True)
        grade = self._enum(cells, "grade", GRADES, required=True)
        area = self._enum(cells, "area", AREAS)
        call = self._text(cells, "call")
        return room, incident_id, grade, area, call, times

    def _incident_row(self, _line: int, cells: list[str | None]) -> None:
        room, incident_id, grade, area, call, times = self._incident(cells)
        seen = self._seen.setdefault(room, set())
        if incident_id in seen:
            raise Refused(self.fields.labels["id"], "duplicate_id",
                          f"incident {incident_id!r} was already imported from an earlier row: "
                          "the first row stands")
        seen.add(incident_id)
        seq = len(self._payloads)
        self._payloads.append((room, incident_id, grade, area, call))
        for (_name, stage), at in zip(_INCIDENT_STAGES, times, strict=True):
            if at is not None:
                self._emit(at, stage, seq)

    def _unit_row(self, line: int, cells: list[str | None]) -> None:
        room, incident_id, grade, area, call, times = self._incident(cells)
        created, dispatched, arrived, closed = times
        group = self._units.get((room, incident_id))
        if group is None:
            # [created, grade, area, call, dispatched, arrived, closed, lines of each stage]
            self._units[(room, incident_id)] = [
                created, grade, area, call, dispatched, arrived, closed,
                [line, line if dispatched is not None else 0,
                 line if arrived is not None else 0, line if closed is not None else 0]]
            return
        lines = group[7]
        if created is not None and created < group[0]:
            group[0:4] = [created, grade, area, call]
            lines[0] = line
        for slot, at, earliest in ((4, dispatched, True), (5, arrived, True),
                                   (6, closed, False)):
            if at is None:
                continue
            if group[slot] is None or (at < group[slot] if earliest else at > group[slot]):
                group[slot] = at
                lines[slot - 3] = line

    def _finish_units(self) -> None:
        """Each incident of a ``[units]`` run, from its rows, checked and made into events."""
        for (room, incident_id), group in self._units.items():
            created, grade, area, call, dispatched, arrived, closed, lines = group
            times = (created, dispatched, arrived, closed)
            latest: tuple[str, int] | None = None
            refused = False
            for position, ((name, _stage), at) in enumerate(
                    zip(_INCIDENT_STAGES, times, strict=True)):
                if at is None:
                    continue
                if latest is not None and at < latest[1]:
                    self._refuse(lines[position], Refused(
                        self.fields.labels[name], "stage_order",
                        f"incident {incident_id!r}: the earliest {name} of its units is "
                        f"{(latest[1] - at) / 1e6:g} s before its {latest[0]}"))
                    refused = True
                    break
                latest = (name, at)
            if refused:
                continue
            seq = len(self._payloads)
            self._payloads.append((room, incident_id, grade, area, call))
            for (_name, stage), at in zip(_INCIDENT_STAGES, times, strict=True):
                if at is not None:
                    self._emit(at, stage, seq)
        self._units = {}

    # -- events -------------------------------------------------------------------------
    def order(self) -> np.ndarray:
        """Indices of the run's events sorted by (time, stage order, row order)."""
        if self._units:
            self._finish_units()
        at = np.frombuffer(self._at, dtype=np.int64) if len(self._at) else np.zeros(0, np.int64)
        key = np.frombuffer(self._key, dtype=np.int64) if len(self._key) else np.zeros(
            0, np.int64)
        return np.lexsort((key, at))

    def events(self) -> Iterator[tuple[str, bytes]]:
        """``(room, event JSON)`` of every event, sorted; counted by type in the summary."""
        order = self.order()
        ats, keys, payloads = self._at, self._key, self._payloads
        counts = self.summary.events
        calls = self.kind == "calls"
        for index in _chunked(order):
            key = keys[index]
            stage = key & 15
            seq = (key >> 4) & ((1 << 52) - 1)
            etype, suffix, _rank = STAGES[stage]
            payload = payloads[seq]
            room, ident = payload[0], payload[1]
            event: dict[str, Any] = {"v": 1, "id": f"{ident}:{suffix}", "type": etype,
                                     "room": room, "at": at_text(ats[index])}
            if calls:
                event["call"] = ident
                if stage == 0:
                    event["line"] = payload[2]
                    if payload[3] is not None:
                        event["caller"] = payload[3]
                    if payload[4] is not None:
                        event["reason"] = payload[4]
                elif stage == 1 and payload[5] is not None:
                    event["handler"] = payload[5]
                elif stage == 4:
                    if payload[6] is not None:
                        event["outcome"] = payload[6]
                    if payload[7] is not None:
                        event["wrap_seconds"] = payload[7]
            else:
                event["incident"] = ident
                if stage == 5:
                    event["grade"] = payload[2]
                    if payload[4] is not None:
                        event["call"] = payload[4]
                    if payload[3] is not None:
                        event["area"] = payload[3]
            counts[etype] += 1
            yield room, orjson.dumps(event)


INCIDENT_NAMES = tuple(name for name, _ in _INCIDENT_STAGES)


def _chunked(order: np.ndarray, size: int = 65_536) -> Iterator[int]:
    """The indices as Python ints a slice at a time: a list of millions costs 36 bytes each."""
    for first in range(0, len(order), size):
        yield from order[first:first + size].tolist()
