"""History from CSV exports: interval counts, or per-call records aggregated per interval."""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.contract.errors import PacesetterError
from services.contract.events import LINE_RE, ROOM_RE, format_time
from services.history.store import INTERVAL_SECONDS, HistoryStore, interval_floor

logger = logging.getLogger(__name__)

INTERVAL_COLUMNS = ("room", "line", "interval_start", "offered")
INTERVAL_OPTIONAL = ("aht_seconds", "answered", "abandoned", "asa_seconds", "queue_seconds")
# History kept at a coarser resolution than quarter hours (an hourly export) is imported as is:
# forecasts work at the history's resolution and staffing spreads them over quarter hours.
INTERVAL_MINUTES = (15, 30, 60)
CALL_KEYS = ("offered_at", "answered_at", "abandoned_at", "ended_at", "line", "room")
CALL_OPTIONAL_KEYS = ("wrap_seconds",)
_BATCH = 2000
_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?$")


class HistoryImportError(PacesetterError):
    """An import that cannot start: unreadable file, missing columns, a bad mapping."""


@dataclass
class ImportCounts:
    """What an import did: rows read, rows rejected (with messages), records written."""

    rows: int = 0
    rejected: int = 0
    records: int = 0
    calls: int = 0
    errors: list[str] = field(default_factory=list)


class RowError(Exception):
    """One bad cell: the column and the problem with its fix."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"column {column}: {message}")


def parse_mapping(text: str | None) -> dict[str, str]:
    """Parse ``--map offered_at=Start,answered_at=Answer,…`` into key → CSV column.

    Keys not given map to a column of their own name.

    Raises:
        HistoryImportError: an unknown key or a malformed pair.
    """
    mapping = {key: key for key in CALL_KEYS + CALL_OPTIONAL_KEYS}
    if not text:
        return mapping
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, column = pair.partition("=")
        key, column = key.strip(), column.strip()
        if not sep or not column:
            raise HistoryImportError(f"--map: {pair!r} must be KEY=COLUMN, e.g. offered_at=Start")
        if key not in mapping:
            raise HistoryImportError(
                f"--map: unknown key {key!r}; keys are {', '.join(CALL_KEYS + CALL_OPTIONAL_KEYS)}")
        mapping[key] = column
    return mapping


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HistoryImportError(
            f"--timezone: {name!r} is not a time zone such as Europe/London") from None


def _time(row: dict[str, str], column: str, zone: ZoneInfo | None,
          required: bool = False) -> datetime | None:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise RowError(column, "is empty; every row needs it")
        return None
    if not _TIME_RE.match(text):
        raise RowError(column, f"{text!r} is not a time like 2026-11-21T22:15:00Z")
    try:
        value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise RowError(column, f"{text!r} is not a real date and time ({exc})") from None
    if value.tzinfo is None:
        if zone is None:
            raise RowError(column, f"{text!r} has no time zone: add 'Z' or an offset, "
                                   "or import with --timezone Europe/London")
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _name(row: dict[str, str], column: str, pattern: re.Pattern[str]) -> str:
    text = (row.get(column) or "").strip()
    if not pattern.match(text):
        raise RowError(column, f"{text!r} must be lower-case letters, digits, '-' or '_' "
                               "(e.g. north, 999)")
    return text


def _number(row: dict[str, str], column: str, integer: bool = False,
            required: bool = False) -> float | int | None:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise RowError(column, "is empty; give a number")
        return None
    try:
        value = float(text)
    except ValueError:
        raise RowError(column, f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise RowError(column, f"{text!r} must be a number ≥ 0")
    if integer:
        if value != int(value):
            raise RowError(column, f"{text!r} must be a whole number")
        return int(value)
    return value


def _open(path: str | Path) -> IO[str]:
    try:
        return open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise HistoryImportError(f"cannot read {path}: {exc.strerror}") from None


def _rows(handle: IO[str], needed: tuple[str, ...],
          what: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    missing = [c for c in needed if c not in header]
    if missing:
        raise HistoryImportError(
            f"the {what} CSV has no column {', '.join(missing)} (header: {', '.join(header)})"
            + ("; map the export's names with --map KEY=COLUMN" if what == "calls" else ""))
    start = reader.line_num
    for row in reader:
        yield start + 1, row
        start = reader.line_num


def import_intervals(store: HistoryStore, path: str | Path,
                     report: Callable[[str], None] | None = None,
                     zone: str | None = None) -> ImportCounts:
    """Import interval counts from a CSV with columns ``room,line,interval_start,offered``.

    Optional columns: ``aht_seconds``, ``answered``, ``abandoned``, ``asa_seconds``,
    ``queue_seconds``, and ``interval_minutes`` (15, 30 or 60; default 15) for history kept
    per half hour or hour. Rows become final interval records (idempotent: importing again
    replaces them). Bad rows are reported as ``line N: column X: problem`` and skipped; the
    rest is imported.

    Args:
        store: where to write.
        path: the CSV file.
        report: called with each error message as it is found.
        zone: time zone of times without one (e.g. ``Europe/London``); None rejects them.

    Returns:
        The counts.

    Raises:
        HistoryImportError: the file cannot be read or lacks a required column.
    """
    tz = _zone(zone)
    counts = ImportCounts()
    seen: dict[tuple[str, str, str], int] = {}
    batch: list[dict[str, Any]] = []
    with _open(path) as handle:
        for number, row in _rows(handle, INTERVAL_COLUMNS, "intervals"):
            counts.rows += 1
            try:
                record = _interval_record(row, tz)
                key = (record["room"], record["line"], record["interval_start"])
                if key in seen:
                    raise RowError("interval_start", f"repeats line {seen[key]} for the same "
                                                     "room and line; keep one row per interval")
                seen[key] = number
            except RowError as exc:
                _reject(counts, number, exc, report)
                continue
            batch.append(record)
            if len(batch) >= _BATCH:
                counts.records += store.upsert_intervals(batch)
                batch = []
    if batch:
        counts.records += store.upsert_intervals(batch)
    return counts


def _reject(counts: ImportCounts, number: int, exc: Exception,
            report: Callable[[str], None] | None) -> None:
    counts.rejected += 1
    message = f"line {number}: {exc}"
    if len(counts.errors) < 1000:
        counts.errors.append(message)
    if report is not None:
        report(message)


def _interval_record(row: dict[str, str], zone: ZoneInfo | None) -> dict[str, Any]:
    room = _name(row, "room", ROOM_RE)
    line = _name(row, "line", LINE_RE)
    start = _time(row, "interval_start", zone, required=True)
    assert start is not None
    minutes = 15
    if (row.get("interval_minutes") or "").strip():
        minutes = int(_number(row, "interval_minutes", integer=True) or 0)
        if minutes not in INTERVAL_MINUTES:
            raise RowError("interval_minutes", f"{minutes} is not 15, 30 or 60")
    if start != interval_floor(start) or start.minute % minutes:
        where = "a quarter hour (:00, :15, :30 or :45)" if minutes == 15 else (
            f"a {minutes}-minute boundary")
        raise RowError("interval_start", f"{format_time(start)} is not on {where}")
    offered = _number(row, "offered", integer=True, required=True)
    record: dict[str, Any] = {
        "room": room, "line": line, "interval_start": format_time(start),
        "interval_end": format_time(start + timedelta(minutes=minutes)),
        "final": True, "definitions_version": 1, "source": "import:intervals",
        "offered": offered,
    }
    for column in INTERVAL_OPTIONAL:
        if column in row:
            record[column] = _number(row, column, integer=column in ("answered", "abandoned"))
    if record.get("aht_seconds") == 0:
        raise RowError("aht_seconds", "0 is not a handling time; leave it empty when unknown")
    return record


@dataclass
class _Interval:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    orphaned: int = 0
    handled: int = 0
    handle_seconds: float = 0.0
    answer_wait_seconds: float = 0.0
    queue_seconds: float = 0.0


def import_calls(store: HistoryStore, path: str | Path, mapping: dict[str, str] | None = None,
                 report: Callable[[str], None] | None = None,
                 zone: str | None = None) -> ImportCounts:
    """Import per-call records of a telephony export, aggregated per (room, line, interval).

    Per METRICS.md: a call belongs to the interval in which it was offered; its exit is the
    earlier of answer and abandon; ``wait = exit − offered``; ``aht_seconds`` is the mean of
    ``(ended − answered) + wrap`` over answered calls that ended; ``asa_seconds`` the mean
    wait of answered calls. The records also carry ``queue_seconds`` (total wait of calls
    that left the queue), from which forecasting estimates the callers' patience.

    Args:
        store: where to write.
        path: the CSV file.
        mapping: key → CSV column (see :func:`parse_mapping`); None for the keys themselves.
        report: called with each error message as it is found.
        zone: time zone of times without one; None rejects them.

    Returns:
        The counts (``calls`` accepted, ``records`` written).

    Raises:
        HistoryImportError: the file cannot be read or lacks a mapped column.
    """
    columns = mapping or parse_mapping(None)
    tz = _zone(zone)
    counts = ImportCounts()
    needed = tuple(columns[k] for k in ("offered_at", "line", "room"))
    intervals: dict[tuple[str, str, datetime], _Interval] = {}
    with _open(path) as handle:
        header_checked = False
        for number, row in _rows(handle, needed, "calls"):
            if not header_checked:
                header_checked = True
                absent = [columns[k] for k in ("answered_at", "abandoned_at", "ended_at")
                          if columns[k] not in row]
                if absent:
                    logger.warning("calls CSV has no column %s: those figures stay empty",
                                   ", ".join(absent))
            counts.rows += 1
            try:
                key, call = _call(row, columns, tz)
            except RowError as exc:
                _reject(counts, number, exc, report)
                continue
            counts.calls += 1
            agg = intervals.setdefault(key, _Interval())
            agg.offered += 1
            exit_kind, wait, handled = call
            if exit_kind == "answered":
                agg.answered += 1
                agg.answer_wait_seconds += wait
                agg.queue_seconds += wait
                if handled is not None:
                    agg.handled += 1
                    agg.handle_seconds += handled
            elif exit_kind == "abandoned":
                agg.abandoned += 1
                agg.queue_seconds += wait
            else:
                agg.orphaned += 1
    records = [_call_record(key, agg) for key, agg in sorted(intervals.items())]
    for i in range(0, len(records), _BATCH):
        counts.records += store.upsert_intervals(records[i:i + _BATCH])
    return counts


def _call(row: dict[str, str], columns: dict[str, str], zone: ZoneInfo | None
          ) -> tuple[tuple[str, str, datetime], tuple[str | None, float, float | None]]:
    room = _name(row, columns["room"], ROOM_RE)
    line = _name(row, columns["line"], LINE_RE)
    offered = _time(row, columns["offered_at"], zone, required=True)
    assert offered is not None
    answered = _time(row, columns["answered_at"], zone)
    abandoned = _time(row, columns["abandoned_at"], zone)
    ended = _time(row, columns["ended_at"], zone)
    wrap = _number(row, columns["wrap_seconds"]) or 0.0
    exits = [(t, kind) for t, kind in ((answered, "answered"), (abandoned, "abandoned"))
             if t is not None]
    for t, kind in exits:
        if t < offered:
            column = columns[f"{kind}_at"]
            raise RowError(column, f"{format_time(t)} is before the call was offered "
                                   f"({format_time(offered)}); check the columns mapped by --map")
    exit_kind: str | None = None
    wait = 0.0
    handled: float | None = None
    if exits:
        exit_at, exit_kind = min(exits)
        wait = (exit_at - offered).total_seconds()
    if exit_kind == "answered" and ended is not None and answered is not None:
        if ended < answered:
            raise RowError(columns["ended_at"], f"{format_time(ended)} is before the answer "
                                                f"({format_time(answered)})")
        handled = (ended - answered).total_seconds() + float(wrap)
    return (room, line, interval_floor(offered)), (exit_kind, wait, handled)


def _call_record(key: tuple[str, str, datetime], agg: _Interval) -> dict[str, Any]:
    room, line, start = key
    return {
        "room": room, "line": line, "interval_start": format_time(start),
        "interval_end": format_time(start + timedelta(seconds=INTERVAL_SECONDS)),
        "final": True, "definitions_version": 1, "source": "import:calls",
        "offered": agg.offered, "answered": agg.answered, "abandoned": agg.abandoned,
        "callbacks_requested": 0, "in_queue": 0, "orphaned": agg.orphaned,
        "aht_seconds": agg.handle_seconds / agg.handled if agg.handled else None,
        "asa_seconds": agg.answer_wait_seconds / agg.answered if agg.answered else None,
        "queue_seconds": agg.queue_seconds,
    }
