"""The history store: every record kind the stream finalises, staffing plans and backtests.

Built on SQLAlchemy Core (``database.py``: SQLite or PostgreSQL, pooled, reconnecting) with the
tables of ``schema.py``, versioned by the Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from services.contract.errors import PacesetterError
from services.contract.events import format_time, parse_time
from services.history import schema
from services.history.database import (
    SchemaBehind,
    StoreError,
    StoreUnavailable,
    brief,
    check_schema,
    create_engine,
    safe_url,
)

__all__ = [
    "INTERVAL_SECONDS", "PLAN_FIELDS", "Checkpoint", "HistoryStore", "LazyStore", "SchemaBehind",
    "StoreError", "StoreUnavailable", "interval_floor",
]

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 900
_BATCH_ROWS = 500
PLAN_FIELDS = (
    "room", "line", "interval_start", "interval_end", "calls", "calls_lower", "calls_upper",
    "aht_seconds", "required_handlers", "required_handlers_upper", "rostered_handlers",
    "rostered_handlers_rounded", "service_level", "asa_seconds", "occupancy", "abandonment",
    "method", "generated_at",
)


def _as_time(value: datetime | str, field: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise StoreError(f"{field}: {value!r} is naive; pass an aware UTC datetime")
        return value.astimezone(UTC)
    try:
        return parse_time(value, field)
    except PacesetterError as exc:
        raise StoreError(str(exc)) from None


def _time_text(value: datetime | str, field: str) -> str:
    return format_time(_as_time(value, field))


def _instant_key(value: datetime | str, field: str) -> str:
    """Fixed-width UTC text (microseconds always): text order is time order."""
    return _as_time(value, field).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _instant_out(key: str | None) -> str | None:
    return None if key is None else format_time(parse_time(key, "instant"))


def interval_floor(at: datetime) -> datetime:
    """The start of the 15-minute interval containing the aware instant ``at``."""
    at = at.astimezone(UTC)
    minute = at.minute - at.minute % (INTERVAL_SECONDS // 60)
    return at.replace(minute=minute, second=0, microsecond=0)


def _number(record: dict[str, Any], name: str, kind: type = float) -> Any:
    value = record.get(name)
    if value is None or type(value) is kind:  # as a rule it is: no conversion to make
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"{name}: must be a number or null, got {value!r}")
    return kind(value)


def _interval_bounds(start_value: str, end_value: Any) -> tuple[str, str]:
    """The checked, normalised ``(interval_start, interval_end)`` texts of a record."""
    start = _as_time(start_value, "interval_start")
    if start != interval_floor(start):
        raise StoreError(
            f"interval_start: {start_value} is not on a quarter hour (intervals are 15 minutes)"
        )
    end = (
        _as_time(end_value, "interval_end")
        if end_value
        else start + timedelta(seconds=INTERVAL_SECONDS)
    )
    return format_time(start), format_time(end)


# Many records share an interval (lines, rooms, republished finals): parse each pair once.
_interval_bounds_cached = functools.lru_cache(maxsize=8192)(_interval_bounds)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _record_json(record: dict[str, Any]) -> str:
    """A record's JSON, its fields in the order they came (the API serves it undecoded)."""
    try:
        return orjson.dumps(record).decode()
    except TypeError:  # a value orjson cannot encode (an import's numpy number): as before
        return _json(record)


def _record_row(record: Any, kind: str, keys: Sequence[str], now_text: str, *,
                end_column: bool = False) -> dict[str, Any]:
    """The common columns of a per-interval record: its keys, start, final flag and JSON.

    ``end_column`` adds ``interval_end`` (the intervals table has that column).
    """
    if not isinstance(record, dict):
        raise StoreError(f"{kind} record must be a JSON object, got {type(record).__name__}")
    row: dict[str, Any] = {}
    for name in (*keys, "interval_start"):
        value = record.get(name)
        if not value or not isinstance(value, str):
            raise StoreError(f"{name}: required text is missing in {kind} record")
        row[name] = value
    start_value = row["interval_start"]
    end_value = record.get("interval_end")
    bounds = _interval_bounds_cached if isinstance(end_value, str | None) else _interval_bounds
    start, end = bounds(start_value, end_value)
    final = record.get("final")
    if start == start_value and end == end_value and (final is True or final is False):
        stored = record  # already in its stored form (the stream's records are): no copy
    else:
        stored = dict(record)
        stored["interval_start"], stored["interval_end"] = start, end
        stored["final"] = final = bool(final)
    row["interval_start"] = start
    row["final"] = 1 if final else 0
    row["record_json"] = _record_json(stored)
    row["updated_at"] = now_text
    if end_column:
        row["interval_end"] = end
    return row


_INTERVAL_NUMBERS = (("offered", int), ("answered", int), ("abandoned", int),
                     ("aht_seconds", float), ("asa_seconds", float), ("queue_seconds", float))


def _interval_row(record: Any, now_text: str) -> dict[str, Any]:
    row = _record_row(record, "an interval", ("room", "line"), now_text, end_column=True)
    for name, kind in _INTERVAL_NUMBERS:
        row[name] = _number(record, name, kind)
    return row


def _attendance_row(record: Any, now_text: str) -> dict[str, Any]:
    return _record_row(record, "an attendance", ("room", "grade"), now_text)


def _handlers_row(record: Any, now_text: str) -> dict[str, Any]:
    return _record_row(record, "a handler", ("room",), now_text)


# the per-interval record kinds: table, keys and row of a record
_RECORD_KINDS: dict[str, tuple[sa.Table, tuple[str, ...],
                               Callable[[Any, str], dict[str, Any]]]] = {
    "interval": (schema.intervals, ("room", "line", "interval_start"), _interval_row),
    "attendance": (schema.attendance, ("room", "grade", "interval_start"), _attendance_row),
    "handlers": (schema.handlers, ("room", "interval_start"), _handlers_row),
}


def _plan_row(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("room", "line", "interval_start"):
        if not isinstance(row.get(name), str) or not row[name]:
            raise StoreError(f"{name}: required text is missing in a plan row")
    stored = dict(row)
    start = _as_time(row["interval_start"], "interval_start")
    stored["interval_start"] = format_time(start)
    stored["interval_end"] = (
        _time_text(row["interval_end"], "interval_end")
        if row.get("interval_end")
        else format_time(start + timedelta(seconds=INTERVAL_SECONDS))
    )
    if stored.get("generated_at") is not None:
        stored["generated_at"] = _time_text(stored["generated_at"], "generated_at")
    values = {name: stored.get(name) for name in PLAN_FIELDS}
    values["row_json"] = _json(stored)
    return values


def _episode_row(episode: Any) -> dict[str, Any]:
    if not isinstance(episode, dict):
        raise StoreError(f"an alert episode must be a JSON object, got {type(episode).__name__}")
    for name in ("id", "room", "rule", "subject"):
        if not isinstance(episode.get(name), str) or not episode[name]:
            raise StoreError(f"{name}: required text is missing in an alert episode")
    if not episode.get("started_at"):
        raise StoreError("started_at: required in an alert episode")
    figures = episode.get("figures") or {}
    if not isinstance(figures, dict):
        raise StoreError(f"figures: must be an object, got {type(figures).__name__}")
    resolved = episode.get("resolved_at")
    return {
        "id": episode["id"], "room": episode["room"], "rule": episode["rule"],
        "subject": episode["subject"], "severity": episode.get("severity") or "warning",
        "started_at": _instant_key(episode["started_at"], "started_at"),
        "resolved_at": None if resolved is None else _instant_key(resolved, "resolved_at"),
        "message": episode.get("message"), "figures": figures,
    }


def _episode_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "room": row.room, "rule": row.rule, "subject": row.subject,
        "severity": row.severity, "started_at": _instant_out(row.started_at),
        "resolved_at": _instant_out(row.resolved_at), "message": row.message,
        "figures": row.figures if isinstance(row.figures, dict) else json.loads(row.figures),
        "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": _instant_out(row.acknowledged_at), "note": row.note,
    }


def _latest_per_key(rows: Iterable[dict[str, Any]], keys: Sequence[str],
                    final_column: str | None = "final") -> list[dict[str, Any]]:
    """One row per key, the later winning unless it would unfinalise an earlier final row.

    PostgreSQL refuses an upsert that touches a row twice in one statement.
    """
    latest: dict[Any, dict[str, Any]] = {}
    key_of = operator.itemgetter(*keys)
    for row in rows:
        key = key_of(row)
        kept = latest.get(key)
        if kept is None or final_column is None or row[final_column] >= kept[final_column]:
            latest[key] = row
    return list(latest.values())


@dataclass(frozen=True)
class _Upsert:
    """An upsert statement built and compiled once for a table and a set of columns.

    Building and compiling an ``INSERT … ON CONFLICT`` per batch, and letting SQLAlchemy
    process every row's parameters, cost the history sink more CPU than the database's own
    work (a thread of the stream worker: it holds the GIL while it runs). The compiled SQL
    runs through the driver's ``executemany`` with the rows' values as they are, the
    columns' bind processors (SQLite's float, a JSON column) applied; a statement whose
    parameters are not plainly its column names runs the SQLAlchemy way.
    """

    stmt: Any
    sql: str | None  # None: execute ``stmt`` through SQLAlchemy
    parameters: Callable[[dict[str, Any]], Any] | None  # a row's DBAPI parameters

    @classmethod
    def compile(cls, stmt: Any, columns: Sequence[str], dialect: sa.Dialect) -> _Upsert:
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        processors = dict(compiled._bind_processors)
        positional = compiled.positiontup
        names = list(positional) if positional is not None else list(
            compiled.bind_names.values())
        if sorted(names) != sorted(columns) or len(names) < 2 or compiled.escaped_bind_names:
            return cls(stmt, None, None)
        parameters: Callable[[dict[str, Any]], Any] | None
        if positional is None:
            parameters = None if not processors else functools.partial(
                _named_values, tuple(processors.items()))
        else:
            get = operator.itemgetter(*names)
            converted = tuple((i, processors[n]) for i, n in enumerate(names) if n in processors)
            parameters = get if not converted else functools.partial(
                _positional_values, get, converted)
        return cls(stmt, compiled.string, parameters)

    def execute(self, rows: list[dict[str, Any]], conn: sa.Connection) -> None:
        if self.sql is None:
            conn.execute(self.stmt, rows)
        elif self.parameters is None:
            conn.exec_driver_sql(self.sql, rows)  # type: ignore[arg-type]
        else:
            conn.exec_driver_sql(self.sql, list(map(self.parameters, rows)))


def _execute_all(work: list[tuple[_Upsert, list[dict[str, Any]]]], conn: sa.Connection) -> None:
    for upsert, rows in work:
        upsert.execute(rows, conn)


def _named_values(processors: tuple[tuple[str, Callable[[Any], Any]], ...],
                  row: dict[str, Any]) -> dict[str, Any]:
    values = dict(row)
    for name, process in processors:
        values[name] = process(values[name])
    return values


def _positional_values(get: Callable[[dict[str, Any]], tuple[Any, ...]],
                       processors: tuple[tuple[int, Callable[[Any], Any]], ...],
                       row: dict[str, Any]) -> tuple[Any, ...]:
    values = list(get(row))
    for i, process in processors:
        values[i] = process(values[i])
    return tuple(values)


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _window(table: sa.Table, start: datetime | str | None,
            end: datetime | str | None) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if start is not None:
        where.append(table.c.interval_start >= _time_text(start, "start"))
    if end is not None:
        where.append(table.c.interval_start < _time_text(end, "end"))
    return where


class HistoryStore:
    """History records, staffing plans and backtest results behind one small interface.

    Open it with :meth:`open`. Every call checks a connection out of the engine's pool for
    itself, so one instance may be used by any number of threads, and a database that
    restarted is reconnected to. While the database cannot be reached calls raise
    :class:`StoreUnavailable`. Several processes may share one SQLite file (WAL mode and a
    busy timeout).
    """

    def __init__(self, engine: sa.Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        # ``sqlite:///:memory:`` is one connection shared by every thread: serialise its use
        memory = self.dialect == "sqlite" and engine.url.database in (None, "", ":memory:")
        self._serial: Any = threading.RLock() if memory else contextlib.nullcontext()
        self._upserts: dict[tuple[Any, ...], _Upsert] = {}
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            self._insert: Callable[[sa.Table], Any] = pg_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            self._insert = sqlite_insert

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, upgrade: bool | None = None) -> HistoryStore:
        """Open the store at ``url``, its schema at the newest revision.

        Args:
            url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
                ``sqlite:///:memory:`` or ``postgresql://user:pass@host:port/db``.
            upgrade: apply missing migrations. By default a SQLite file is upgraded on open
                (a local file has one owner, and the demo needs no extra step); a
                PostgreSQL database is shared, so its owner upgrades it with
                ``pacesetter db upgrade`` and a program finding it behind stops.

        Raises:
            SchemaBehind: the schema is behind (message: both revisions and the command).
            StoreUnavailable: the database cannot be reached.
            StoreError: the URL is not understood or the database cannot be opened.
        """
        engine = create_engine(url)
        auto = engine.dialect.name == "sqlite" if upgrade is None else upgrade
        try:
            check_schema(engine, url, auto)
        except StoreError:
            engine.dispose()
            raise
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the history store {safe_url(url)}: {brief(exc)}") \
                from None
        return cls(engine, url)

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL plumbing ---------------------------------------------------------------------------
    def _unavailable(self, exc: sa.exc.DBAPIError) -> StoreError:
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or \
                exc.connection_invalidated:
            return StoreUnavailable(
                f"history store {safe_url(self.url)} unavailable: {brief(exc)}")
        return StoreError(f"history store {safe_url(self.url)}: {brief(exc)}")

    def _read(self, work: Callable[[sa.Connection], Any]) -> Any:
        try:
            with self._serial, self.engine.connect() as conn:
                return work(conn)
        except sa.exc.DBAPIError as exc:
            raise self._unavailable(exc) from None

    def _write(self, work: Callable[[sa.Connection], Any]) -> Any:
        try:
            with self._serial, self.engine.connect() as conn:
                conn.execution_options(write=True)
                with conn.begin():
                    return work(conn)
        except sa.exc.DBAPIError as exc:
            raise self._unavailable(exc) from None

    def _upsert(self, table: sa.Table, rows: Iterable[dict[str, Any]], keys: Sequence[str],
                guard: Callable[[Any], sa.ColumnElement[bool]] | None = None,
                keep: Sequence[str] = ()) -> int:
        """Insert or update ``rows`` by ``keys``, a batch per transaction.

        Rows are prepared outside any transaction, and one batch is written at a time: a
        reader waits for one batch at most, not for the whole upsert.
        """
        written = 0
        for batch in _batches(rows, _BATCH_ROWS):
            batch = _latest_per_key(batch, keys, "final" if "final" in batch[0] else None)
            upsert = self._prepared(table, tuple(batch[0]), keys, guard, keep)
            self._write(functools.partial(upsert.execute, batch))
            written += len(batch)
        return written

    def _prepared(self, table: sa.Table, columns: tuple[str, ...], keys: Sequence[str],
                  guard: Callable[[Any], sa.ColumnElement[bool]] | None,
                  keep: Sequence[str]) -> _Upsert:
        """The upsert of ``columns`` into ``table``, compiled on first use.

        A table is always upserted with the same guard (or none), so the guard's presence is
        all the key needs of it.
        """
        key = (table.name, columns, tuple(keys), tuple(keep), guard is not None)
        upsert = self._upserts.get(key)
        if upsert is None:
            stmt = self._insert(table)
            updates = {c: stmt.excluded[c] for c in columns if c not in keys and c not in keep}
            stmt = stmt.on_conflict_do_update(
                index_elements=list(keys), set_=updates,
                where=guard(stmt) if guard is not None else None)
            upsert = self._upserts[key] = _Upsert.compile(stmt, columns, self.engine.dialect)
        return upsert

    def _records(self, table: sa.Table, where: Sequence[sa.ColumnElement[bool]],
                 order: Sequence[sa.ColumnElement[Any]]) -> list[dict[str, Any]]:
        query = sa.select(table.c.record_json).where(*where).order_by(*order)
        rows = self._read(lambda conn: conn.execute(query).scalars().all())
        return [json.loads(text) for text in rows]

    @staticmethod
    def _now_text() -> str:
        return format_time(datetime.now(UTC).replace(microsecond=0))

    @staticmethod
    def _final_guard(table: sa.Table) -> Callable[[Any], sa.ColumnElement[bool]]:
        # a replayed update from before the interval closed must not undo its final figures
        return lambda stmt: stmt.excluded.final >= table.c.final

    # -- intervals ------------------------------------------------------------------------------
    def upsert_intervals(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert or replace interval records keyed by ``(room, line, interval_start)``.

        Idempotent: writing the same record twice leaves one row. A later record replaces an
        earlier one, except that a non-final record never replaces a final one (a replayed
        update from before the interval closed must not undo its final figures).

        Args:
            records: interval records in the API.md shape; the whole record is kept as JSON.

        Returns:
            How many records were written.

        Raises:
            StoreError: a record lacks room, line or interval_start, or has a bad time.
        """
        now_text = self._now_text()
        table = schema.intervals
        return self._upsert(table, (_interval_row(r, now_text) for r in records),
                            ("room", "line", "interval_start"), self._final_guard(table))

    def intervals(
        self,
        room: str,
        line: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        final_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Stored interval records, oldest first, with ``start ≤ interval_start < end``.

        Args:
            room: the room.
            line: one line, or None for all lines.
            start: inclusive lower bound (aware datetime or RFC 3339 text), or None.
            end: exclusive upper bound, or None.
            final_only: only records with ``final: true`` (what forecasting uses).

        Returns:
            The records as they were written (JSON objects).
        """
        t = schema.intervals
        where = [t.c.room == room, *_window(t, start, end)]
        if line is not None:
            where.append(t.c.line == line)
        if final_only:
            where.append(t.c.final == 1)
        return self._records(t, where, (t.c.interval_start, t.c.line))

    def interval_series(
        self, room: str, line: str, start: datetime | str | None = None,
        end: datetime | str | None = None, *, final_only: bool = True,
    ) -> list[tuple[Any, ...]]:
        """The compact columns of a line's intervals: what forecasting reads, without the JSON.

        ``queue_seconds`` is the total wait of the interval's calls that left the queue
        (answered, abandoned or callback), when the record carries it (imports of per-call
        data do); it gives the callers' patience for Erlang A.

        Returns:
            ``(interval_start, offered, answered, abandoned, aht_seconds, asa_seconds,
            queue_seconds)`` tuples, oldest first.
        """
        t = schema.intervals
        where = [t.c.room == room, t.c.line == line, *_window(t, start, end)]
        if final_only:
            where.append(t.c.final == 1)
        query = sa.select(t.c.interval_start, t.c.offered, t.c.answered, t.c.abandoned,
                          t.c.aht_seconds, t.c.asa_seconds, t.c.queue_seconds
                          ).where(*where).order_by(t.c.interval_start)
        return self._read(lambda conn: [tuple(r) for r in conn.execute(query)])

    def rooms_lines(self) -> list[tuple[str, str]]:
        """Every ``(room, line)`` with stored intervals, sorted."""
        t = schema.intervals
        query = sa.select(t.c.room, t.c.line).distinct().order_by(t.c.room, t.c.line)
        return self._read(lambda conn: [(r[0], r[1]) for r in conn.execute(query)])

    # -- attendance and handlers ------------------------------------------------------------
    def upsert_attendance(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert or replace attendance records keyed by ``(room, grade, interval_start)``.

        Like :meth:`upsert_intervals`: idempotent, and a final record is never replaced by a
        non-final one.

        Returns:
            How many records were written.

        Raises:
            StoreError: a record lacks room, grade or interval_start, or has a bad time.
        """
        now_text = self._now_text()
        table = schema.attendance
        rows = (_attendance_row(r, now_text) for r in records)
        return self._upsert(table, rows, ("room", "grade", "interval_start"),
                            self._final_guard(table))

    def attendance(self, room: str, start: datetime | str | None = None,
                   end: datetime | str | None = None, *,
                   grade: str | None = None) -> list[dict[str, Any]]:
        """Attendance records with ``start ≤ interval_start < end``, oldest first, then grade."""
        t = schema.attendance
        where = [t.c.room == room, *_window(t, start, end)]
        if grade is not None:
            where.append(t.c.grade == grade)
        return self._records(t, where, (t.c.interval_start, t.c.grade))

    def upsert_handlers(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert or replace handler records keyed by ``(room, interval_start)``.

        Returns:
            How many records were written.

        Raises:
            StoreError: a record lacks room or interval_start, or has a bad time.
        """
        now_text = self._now_text()
        table = schema.handlers
        rows = (_handlers_row(r, now_text) for r in records)
        return self._upsert(table, rows, ("room", "interval_start"), self._final_guard(table))

    def upsert_records(self, records: dict[str, list[dict[str, Any]]]) -> int:
        """Insert or replace records of several kinds in one transaction.

        What the history sink writes as it comes: a transaction has a fixed cost (a pooled
        connection checked out and pinged, BEGIN, commit), so one serves every kind. The
        rows, and the final guard, are those of
        :meth:`upsert_intervals`, :meth:`upsert_attendance` and :meth:`upsert_handlers`; a
        bad record refuses the whole call, before anything is written.

        Args:
            records: the records of each kind, ``interval``, ``attendance`` or ``handlers``
                (a bounded number: they are written as one transaction).

        Returns:
            How many records were written.

        Raises:
            StoreError: an unknown kind, or a record lacking its keys or with a bad time.
        """
        now_text = self._now_text()
        work = []
        for kind, kind_records in records.items():
            if kind not in _RECORD_KINDS:
                raise StoreError(f"unknown record kind {kind!r}: expected one of "
                                 f"{', '.join(_RECORD_KINDS)}")
            table, keys, row_of = _RECORD_KINDS[kind]
            rows = _latest_per_key([row_of(r, now_text) for r in kind_records], keys)
            if rows:
                guard = self._final_guard(table)
                work.append((self._prepared(table, tuple(rows[0]), keys, guard, ()), rows))
        self._write(functools.partial(_execute_all, work))
        return sum(len(rows) for _, rows in work)

    def record_texts(self, kind: str, room: str, start: datetime | str | None = None,
                     end: datetime | str | None = None, *,
                     sub: str | None = None) -> list[str]:
        """The JSON texts of stored records, oldest first: what the API serves without decoding.

        Args:
            kind: ``interval``, ``attendance`` or ``handlers``.
            room: the room.
            start: inclusive lower bound of ``interval_start``, or None.
            end: exclusive upper bound, or None.
            sub: one line (intervals) or grade (attendance), or None for all.
        """
        table, column = {"interval": (schema.intervals, "line"),
                         "attendance": (schema.attendance, "grade"),
                         "handlers": (schema.handlers, None)}[kind]
        where = [table.c.room == room, *_window(table, start, end)]
        order = [table.c.interval_start]
        if column is not None:
            order.append(table.c[column])
            if sub is not None:
                where.append(table.c[column] == sub)
        query = sa.select(table.c.record_json).where(*where).order_by(*order)
        texts: list[str] = self._read(lambda conn: conn.execute(query).scalars().all())
        return texts

    def handlers(self, room: str, start: datetime | str | None = None,
                 end: datetime | str | None = None) -> list[dict[str, Any]]:
        """Handler records with ``start ≤ interval_start < end``, oldest first."""
        t = schema.handlers
        return self._records(t, [t.c.room == room, *_window(t, start, end)],
                             (t.c.interval_start,))

    # -- alert episodes -----------------------------------------------------------------------
    def save_alert_episodes(self, episodes: Iterable[dict[str, Any]]) -> int:
        """Insert or update alert episodes keyed by ``(id, started_at)``.

        An episode is saved when it fires and again when it resolves; a replayed "firing"
        never reopens a resolved episode, and saving never clears an acknowledgement.

        Args:
            episodes: ``id, room, rule, subject, severity, started_at, resolved_at`` (None
                while firing), ``message`` and ``figures`` (an object).

        Returns:
            How many episodes were written.
        """
        t = schema.alert_episodes
        return self._upsert(
            t, (_episode_row(e) for e in episodes), ("id", "started_at"),
            lambda stmt: sa.or_(stmt.excluded.resolved_at.is_not(None),
                                t.c.resolved_at.is_(None)),
        )

    def acknowledge_alert(self, room: str, alert_id: str, started_at: datetime | str, by: str,
                          note: str | None, at: datetime) -> dict[str, Any] | None:
        """Record who acknowledged an alert episode, when, and their note.

        The first acknowledgement of an episode stays: a second one changes nothing.

        Returns:
            The episode with the acknowledgement that holds, or None when the room has no such
            episode.
        """
        t = schema.alert_episodes
        key = (t.c.room == room, t.c.id == alert_id,
               t.c.started_at == _instant_key(started_at, "started_at"))

        def work(conn: sa.Connection) -> dict[str, Any] | None:
            conn.execute(sa.update(t).where(*key, t.c.acknowledged_at.is_(None)).values(
                acknowledged_by=by, acknowledged_at=_instant_key(at, "at"), note=note))
            row = conn.execute(sa.select(t).where(*key)).first()
            return None if row is None else _episode_out(row)

        result: dict[str, Any] | None = self._write(work)
        return result

    def alert_history(self, room: str, start: datetime | str,
                      end: datetime | str) -> list[dict[str, Any]]:
        """Alert episodes overlapping ``[start, end)``, oldest first.

        An episode overlaps when it started before ``end`` and is firing or resolved after
        ``start``. Each carries ``acknowledged_by``, ``acknowledged_at`` and ``note`` (None
        when not acknowledged).
        """
        t = schema.alert_episodes
        query = sa.select(t).where(
            t.c.room == room, t.c.started_at < _instant_key(end, "end"),
            sa.or_(t.c.resolved_at.is_(None), t.c.resolved_at >= _instant_key(start, "start")),
        ).order_by(t.c.started_at, t.c.id)
        return self._read(lambda conn: [_episode_out(r) for r in conn.execute(query)])

    # -- staffing plans -------------------------------------------------------------------------
    def save_plan(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert or replace staffing plan rows keyed by ``(room, line, interval_start)``.

        Returns:
            How many rows were written.
        """
        return self._upsert(schema.plans, (_plan_row(r) for r in rows),
                            ("room", "line", "interval_start"))

    def plan_rows(
        self, room: str, line: str, start: datetime | str, end: datetime | str
    ) -> list[dict[str, Any]]:
        """Saved plan rows of a line with ``start ≤ interval_start < end``, oldest first."""
        t = schema.plans
        query = sa.select(t.c.row_json).where(
            t.c.room == room, t.c.line == line, *_window(t, start, end)
        ).order_by(t.c.interval_start)
        return [json.loads(r) for r in self._read(lambda c: c.execute(query).scalars().all())]

    def current_plan(self, room: str, line: str, at: datetime) -> dict[str, Any] | None:
        """The saved plan row of the interval containing ``at``, or None without a plan."""
        at_text = _time_text(at, "at")
        t = schema.plans
        query = sa.select(t.c.row_json).where(
            t.c.room == room, t.c.line == line, t.c.interval_start <= at_text,
            t.c.interval_end > at_text,
        ).order_by(t.c.interval_start.desc()).limit(1)
        found = self._read(lambda conn: conn.execute(query).scalar())
        return None if found is None else dict(json.loads(found))

    # -- backtests ------------------------------------------------------------------------------
    def save_backtest(self, room: str, line: str, history_end: datetime | str,
                      result: dict[str, Any]) -> None:
        """Keep the latest backtest of a line (the plan reuses it to choose its method)."""
        row = {"room": room, "line": line, "history_end": _time_text(history_end, "history_end"),
               "computed_at": self._now_text(),
               "result": json.dumps(result, separators=(",", ":"), default=str)}
        self._upsert(schema.backtests, [row], ("room", "line"))

    def latest_backtest(self, room: str, line: str) -> tuple[datetime, dict[str, Any]] | None:
        """``(history_end, result)`` of the line's latest backtest, or None."""
        t = schema.backtests
        query = sa.select(t.c.history_end, t.c.result).where(t.c.room == room, t.c.line == line)
        row = self._read(lambda conn: conn.execute(query).first())
        if row is None:
            return None
        return parse_time(row[0], "history_end"), json.loads(row[1])

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` as its partition's one (replacing the one before).

        Any checkpoint is a valid state of its partition at its offset, whichever worker took
        it, so the latest written wins: an older one only means a longer replay.
        """
        row = {"topic": checkpoint.topic, "partition": checkpoint.partition,
               "next_offset": checkpoint.next_offset, "taken_at": checkpoint.taken_at,
               "format_version": checkpoint.format_version,
               "fingerprint": checkpoint.fingerprint, "anchor_offset": checkpoint.anchor_offset,
               "anchor_digest": checkpoint.anchor_digest, "state": checkpoint.state}
        self._upsert(schema.checkpoints, [row], ("topic", "partition"))

    def checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        """The partition's checkpoint, or None."""
        t = schema.checkpoints
        query = sa.select(t).where(t.c.topic == topic, t.c.partition == partition)
        row = self._read(lambda conn: conn.execute(query).first())
        if row is None:
            return None
        return Checkpoint(row.topic, row.partition, row.next_offset, row.taken_at,
                          row.format_version, row.fingerprint, bytes(row.state),
                          row.anchor_offset, row.anchor_digest)


@dataclass(frozen=True)
class Checkpoint:
    """The stream's room state of one events partition after every message below an offset.

    ``state`` is ``services.figures.checkpoint``'s encoding; a rebuild uses it only when
    ``format_version`` and ``fingerprint`` are the worker's own, and the events topic still
    holds the message ``anchor_offset`` named (``anchor_digest``: its time and a digest of its
    value, ``streams.worker.message_digest``), the newest one the state applied.
    """

    topic: str
    partition: int
    next_offset: int  # the next message to apply after importing the state
    taken_at: str
    format_version: int
    fingerprint: str
    state: bytes
    anchor_offset: int
    anchor_digest: str


class LazyStore:
    """The history store, opened on first use and again after a failure to open it.

    The API must start, and serve what memory holds, while the database is down or its schema
    is behind; a history request then gets a 503 naming the store and the reason, and the
    store is opened by itself once it can be (a failed open is retried after a few seconds).
    """

    RETRY_SECONDS = 5.0

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: HistoryStore | None = None
        self._failed_at = 0.0
        self._error: StoreError | None = None
        self._lock = threading.Lock()

    def get(self) -> HistoryStore:
        """The open store.

        Raises:
            StoreError: it cannot be opened now (unreachable, schema behind); the message
                names the store and the fix.
        """
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None:
                if self._error is not None and \
                        time.monotonic() - self._failed_at < self.RETRY_SECONDS:
                    raise self._error
                try:
                    self._store = HistoryStore.open(self.url)
                except StoreError as exc:
                    self._error, self._failed_at = exc, time.monotonic()
                    logger.warning("%s", exc)
                    raise
            return self._store

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not hasattr(HistoryStore, name):
            raise AttributeError(name)  # hasattr() must not need the database
        return getattr(self.get(), name)

    def close(self) -> None:
        """Close the store if it was opened."""
        if self._store is not None:
            self._store.close()
