"""The history store: interval records, staffing plans and backtests (SQLite or PostgreSQL)."""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.contract.errors import PacesetterError
from services.contract.events import format_time, parse_time

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 900
BUSY_TIMEOUT_MS = 10_000
_BATCH_ROWS = 500

# Columns kept next to the JSON of each record, so that queries need not parse JSON.
_INTERVAL_COLUMNS = (
    "room", "line", "interval_start", "interval_end", "final",
    "offered", "answered", "abandoned", "aht_seconds", "asa_seconds", "queue_seconds",
    "record_json", "updated_at",
)
PLAN_FIELDS = (
    "room", "line", "interval_start", "interval_end", "calls", "calls_lower", "calls_upper",
    "aht_seconds", "required_handlers", "required_handlers_upper", "rostered_handlers",
    "rostered_handlers_rounded", "service_level", "asa_seconds", "occupancy", "abandonment",
    "method", "generated_at",
)
_PLAN_COLUMNS = PLAN_FIELDS + ("row_json",)

# Portable SQL: SQLite and PostgreSQL both accept these types and INSERT … ON CONFLICT.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS intervals (
        room TEXT NOT NULL, line TEXT NOT NULL, interval_start TEXT NOT NULL,
        interval_end TEXT NOT NULL, final INTEGER NOT NULL,
        offered INTEGER, answered INTEGER, abandoned INTEGER, aht_seconds DOUBLE PRECISION,
        asa_seconds DOUBLE PRECISION, queue_seconds DOUBLE PRECISION,
        record_json TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (room, line, interval_start))""",
    """CREATE TABLE IF NOT EXISTS plans (
        room TEXT NOT NULL, line TEXT NOT NULL, interval_start TEXT NOT NULL,
        interval_end TEXT NOT NULL, calls DOUBLE PRECISION, calls_lower DOUBLE PRECISION,
        calls_upper DOUBLE PRECISION, aht_seconds DOUBLE PRECISION,
        required_handlers INTEGER, required_handlers_upper INTEGER,
        rostered_handlers DOUBLE PRECISION, rostered_handlers_rounded INTEGER,
        service_level DOUBLE PRECISION, asa_seconds DOUBLE PRECISION,
        occupancy DOUBLE PRECISION, abandonment DOUBLE PRECISION, method TEXT,
        generated_at TEXT, row_json TEXT NOT NULL,
        PRIMARY KEY (room, line, interval_start))""",
    """CREATE TABLE IF NOT EXISTS backtests (
        room TEXT NOT NULL, line TEXT NOT NULL, history_end TEXT NOT NULL,
        computed_at TEXT NOT NULL, result TEXT NOT NULL,
        PRIMARY KEY (room, line))""",
)


class StoreError(PacesetterError):
    """A store URL that cannot work, or a record the store cannot keep."""


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


def interval_floor(at: datetime) -> datetime:
    """The start of the 15-minute interval containing the aware instant ``at``."""
    at = at.astimezone(UTC)
    minute = at.minute - at.minute % (INTERVAL_SECONDS // 60)
    return at.replace(minute=minute, second=0, microsecond=0)


def _number(record: dict[str, Any], name: str, kind: type = float) -> Any:
    value = record.get(name)
    if value is None:
        return None
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


def _interval_row(record: dict[str, Any], now_text: str) -> tuple[Any, ...]:
    if not isinstance(record, dict):
        raise StoreError(f"an interval record must be a JSON object, got {type(record).__name__}")
    for name in ("room", "line", "interval_start"):
        if not isinstance(record.get(name), str) or not record[name]:
            raise StoreError(f"{name}: required text is missing in an interval record")
    end_value = record.get("interval_end")
    bounds = _interval_bounds_cached if isinstance(end_value, str | None) else _interval_bounds
    stored = dict(record)
    stored["interval_start"], stored["interval_end"] = bounds(record["interval_start"], end_value)
    stored["final"] = bool(record.get("final", False))
    return (
        stored["room"], stored["line"], stored["interval_start"], stored["interval_end"],
        int(stored["final"]), _number(record, "offered", int), _number(record, "answered", int),
        _number(record, "abandoned", int), _number(record, "aht_seconds"),
        _number(record, "asa_seconds"), _number(record, "queue_seconds"),
        json.dumps(stored, separators=(",", ":"), sort_keys=True), now_text,
    )


def _plan_row(row: dict[str, Any]) -> tuple[Any, ...]:
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
    values = [stored.get(name) for name in PLAN_FIELDS]
    return (*values, json.dumps(stored, separators=(",", ":"), sort_keys=True, default=str))


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    if rest is None:
        raise StoreError(
            f"store URL {url!r}: write sqlite:///relative/path.db, sqlite:////absolute/path.db "
            "or sqlite:///:memory:"
        )
    return rest or ":memory:"


def _connect_sqlite(path: str) -> sqlite3.Connection:
    """Connect to a SQLite file in WAL mode, waiting out another process opening it too.

    Switching a new file to WAL needs an exclusive lock, and SQLite reports "database is
    locked" at once (without its busy handler) when two processes do it together, e.g. two
    workers starting side by side on a new store. That is retried for the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
            isolation_level=None,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


class HistoryStore:
    """Interval history, staffing plans and backtest results behind one small SQL interface.

    Open it with :meth:`open`; one instance may be shared by threads (calls are serialised),
    and several processes may open the same SQLite file (WAL mode and a busy timeout).
    """

    def __init__(self, connection: Any, dialect: str, url: str) -> None:
        self._conn = connection
        self.dialect = dialect
        self.url = url
        self._lock = threading.RLock()

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str) -> HistoryStore:
        """Open (and create) the store at ``url``.

        Args:
            url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
                ``sqlite:///:memory:`` or ``postgresql://user:pass@host/db`` (needs psycopg).

        Returns:
            The store with its tables created.

        Raises:
            StoreError: the URL is not understood or the database cannot be opened.
        """
        if url.startswith("sqlite:"):
            path = _sqlite_path(url)
            try:
                if path != ":memory:":
                    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
                    path = str(Path(path).expanduser())
                conn = _connect_sqlite(path)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open the SQLite store {url!r}: {exc}") from None
            store = cls(conn, "sqlite", url)
        elif url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
            try:
                import psycopg
            except ImportError:
                raise StoreError(
                    f"store URL {url!r} needs PostgreSQL support: pip install 'psycopg[binary]'"
                ) from None
            dsn = url.replace("postgresql+psycopg:", "postgresql:", 1)
            try:
                conn = psycopg.connect(dsn, autocommit=True)
            except Exception as exc:  # noqa: BLE001 - psycopg's errors have no common import here
                raise StoreError(f"cannot connect to the PostgreSQL store: {exc}") from None
            store = cls(conn, "postgresql", url)
        else:
            raise StoreError(
                f"store URL {url!r} is not supported: use sqlite:///path.db or postgresql://…"
            )
        store._create_tables()
        return store

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL plumbing ---------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.dialect == "postgresql" else text

    def _create_tables(self) -> None:
        with self._lock, self._transaction() as cur:
            for statement in _SCHEMA:
                cur.execute(statement)

    class _Tx:
        def __init__(self, store: HistoryStore) -> None:
            self.store = store
            self.cur: Any = None

        def __enter__(self) -> Any:
            conn = self.store._conn
            self.cur = conn.cursor()
            # BEGIN IMMEDIATE takes SQLite's write lock up front, so a second process waits
            # (busy timeout) instead of failing half-way with "database is locked".
            self.cur.execute("BEGIN IMMEDIATE" if self.store.dialect == "sqlite" else "BEGIN")
            return self.cur

        def __exit__(self, exc_type: Any, *_: object) -> None:
            try:
                self.cur.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.cur.close()

    def _transaction(self) -> HistoryStore._Tx:
        return HistoryStore._Tx(self)

    def _query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self._sql(text), tuple(params))
                return list(cur.fetchall())
            finally:
                cur.close()

    def _upsert(self, table: str, columns: Sequence[str], keys: Sequence[str],
                rows: Iterable[tuple[Any, ...]], guard: str = "") -> int:
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
        text = self._sql(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}{guard}"
        )
        written = 0
        # Rows are prepared outside the lock, which is held one transaction at a time: a
        # reader on another thread waits for one batch at most, not for the whole upsert.
        for batch in _batches(rows, _BATCH_ROWS):
            with self._lock, self._transaction() as cur:
                cur.executemany(text, batch)
            written += len(batch)
        return written

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
        now_text = format_time(datetime.now(UTC).replace(microsecond=0))
        rows = (_interval_row(r, now_text) for r in records)
        return self._upsert(
            "intervals", _INTERVAL_COLUMNS, ("room", "line", "interval_start"), rows,
            guard=" WHERE excluded.final >= intervals.final",
        )

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
        where, params = ["room = ?"], [room]
        if line is not None:
            where.append("line = ?")
            params.append(line)
        if start is not None:
            where.append("interval_start >= ?")
            params.append(_time_text(start, "start"))
        if end is not None:
            where.append("interval_start < ?")
            params.append(_time_text(end, "end"))
        if final_only:
            where.append("final = 1")
        rows = self._query(
            f"SELECT record_json FROM intervals WHERE {' AND '.join(where)} "
            "ORDER BY interval_start, line",
            params,
        )
        return [json.loads(r[0]) for r in rows]

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
        where, params = ["room = ?", "line = ?"], [room, line]
        if start is not None:
            where.append("interval_start >= ?")
            params.append(_time_text(start, "start"))
        if end is not None:
            where.append("interval_start < ?")
            params.append(_time_text(end, "end"))
        if final_only:
            where.append("final = 1")
        return self._query(
            "SELECT interval_start, offered, answered, abandoned, aht_seconds, asa_seconds, "
            f"queue_seconds FROM intervals WHERE {' AND '.join(where)} ORDER BY interval_start",
            params,
        )

    def rooms_lines(self) -> list[tuple[str, str]]:
        """Every ``(room, line)`` with stored intervals, sorted."""
        rows = self._query("SELECT DISTINCT room, line FROM intervals ORDER BY room, line")
        return [(r[0], r[1]) for r in rows]

    # -- attendance (H15 stand-in) ---------------------------------------------------------------
    # BEGIN H15 minimal attendance store: the lead keeps H14's implementation of these two
    # methods at merge; this block only exists so that the monthly report can be built and
    # tested on this branch. Same signatures, same meaning.
    _ATTENDANCE_TABLE = (
        "CREATE TABLE IF NOT EXISTS attendance_h15 (room TEXT NOT NULL, grade TEXT NOT NULL, "
        "interval_start TEXT NOT NULL, final INTEGER NOT NULL, record_json TEXT NOT NULL, "
        "PRIMARY KEY (room, grade, interval_start))"
    )

    def upsert_attendance(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert or replace attendance records keyed by ``(room, grade, interval_start)``.

        A non-final record never replaces a final one.
        """
        with self._lock, self._transaction() as cur:
            cur.execute(self._ATTENDANCE_TABLE)
        rows = []
        for record in records:
            start, _end = _interval_bounds(record["interval_start"], record.get("interval_end"))
            rows.append((record["room"], record["grade"], start, int(bool(record.get("final"))),
                         json.dumps(record, separators=(",", ":"), sort_keys=True)))
        return self._upsert("attendance_h15",
                            ("room", "grade", "interval_start", "final", "record_json"),
                            ("room", "grade", "interval_start"), rows,
                            guard=" WHERE excluded.final >= attendance_h15.final")

    def attendance(self, room: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Attendance records of a room with ``start <= interval_start < end``, oldest first."""
        with self._lock, self._transaction() as cur:
            cur.execute(self._ATTENDANCE_TABLE)
        rows = self._query(
            "SELECT record_json FROM attendance_h15 WHERE room = ? AND interval_start >= ? "
            "AND interval_start < ? ORDER BY interval_start, grade",
            (room, _time_text(start, "start"), _time_text(end, "end")))
        return [json.loads(r[0]) for r in rows]
    # END H15 minimal attendance store

    # -- staffing plans -------------------------------------------------------------------------
    def save_plan(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert or replace staffing plan rows keyed by ``(room, line, interval_start)``.

        Returns:
            How many rows were written.
        """
        return self._upsert(
            "plans", _PLAN_COLUMNS, ("room", "line", "interval_start"), (_plan_row(r) for r in rows)
        )

    def plan_rows(
        self, room: str, line: str, start: datetime | str, end: datetime | str
    ) -> list[dict[str, Any]]:
        """Saved plan rows of a line with ``start ≤ interval_start < end``, oldest first."""
        rows = self._query(
            "SELECT row_json FROM plans WHERE room = ? AND line = ? AND interval_start >= ? "
            "AND interval_start < ? ORDER BY interval_start",
            (room, line, _time_text(start, "start"), _time_text(end, "end")),
        )
        return [json.loads(r[0]) for r in rows]

    def current_plan(self, room: str, line: str, at: datetime) -> dict[str, Any] | None:
        """The saved plan row of the interval containing ``at``, or None without a plan."""
        at_text = _time_text(at, "at")
        rows = self._query(
            "SELECT row_json FROM plans WHERE room = ? AND line = ? AND interval_start <= ? "
            "AND interval_end > ? ORDER BY interval_start DESC LIMIT 1",
            (room, line, at_text, at_text),
        )
        return json.loads(rows[0][0]) if rows else None

    # -- backtests ------------------------------------------------------------------------------
    def save_backtest(self, room: str, line: str, history_end: datetime | str,
                      result: dict[str, Any]) -> None:
        """Keep the latest backtest of a line (the plan reuses it to choose its method)."""
        row = (room, line, _time_text(history_end, "history_end"),
               format_time(datetime.now(UTC).replace(microsecond=0)),
               json.dumps(result, separators=(",", ":"), default=str))
        self._upsert("backtests", ("room", "line", "history_end", "computed_at", "result"),
                     ("room", "line"), [row])

    def latest_backtest(self, room: str, line: str) -> tuple[datetime, dict[str, Any]] | None:
        """``(history_end, result)`` of the line's latest backtest, or None."""
        rows = self._query(
            "SELECT history_end, result FROM backtests WHERE room = ? AND line = ?", (room, line)
        )
        if not rows:
            return None
        return parse_time(rows[0][0], "history_end"), json.loads(rows[0][1])

    # == alert episodes and acknowledgements (issue 17) =========================================
    # A minimal implementation of three methods whose SQLAlchemy version comes with the store's
    # rewrite; everything it needs is inside this block. Episodes are keyed by (id, started_at):
    # an alert that resolves and fires again has the same id and a new episode. Times are kept
    # as fixed-width UTC text so that text order is time order.

    _ALERT_COLUMNS = ("id", "started_at", "room", "rule", "subject", "severity", "resolved_at",
                      "message", "figures_json")
    _ALERT_SCHEMA = (
        """CREATE TABLE IF NOT EXISTS alert_episodes (
            id TEXT NOT NULL, started_at TEXT NOT NULL, room TEXT NOT NULL, rule TEXT NOT NULL,
            subject TEXT NOT NULL, severity TEXT NOT NULL, resolved_at TEXT, message TEXT,
            figures_json TEXT, acknowledged_by TEXT, acknowledged_at TEXT, note TEXT,
            PRIMARY KEY (id, started_at))""",
        "CREATE INDEX IF NOT EXISTS alert_episodes_room ON alert_episodes (room, started_at)",
    )

    def _alert_table(self) -> None:
        if getattr(self, "_alert_table_made", False):
            return
        with self._lock, self._transaction() as cur:
            for statement in self._ALERT_SCHEMA:
                cur.execute(statement)
        self._alert_table_made = True

    @staticmethod
    def _alert_time(value: datetime | str | None, field: str) -> str | None:
        if value is None:
            return None
        return _as_time(value, field).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _alert_row(self, episode: dict[str, Any]) -> tuple[Any, ...]:
        for name in ("id", "room", "rule", "started_at"):
            if not episode.get(name):
                raise StoreError(f"{name}: required in an alert episode")
        return (
            str(episode["id"]), self._alert_time(episode["started_at"], "started_at"),
            str(episode["room"]), str(episode["rule"]), str(episode.get("subject") or ""),
            str(episode.get("severity") or "warning"),
            self._alert_time(episode.get("resolved_at"), "resolved_at"),
            episode.get("message"),
            json.dumps(episode.get("figures") or {}, separators=(",", ":"), default=str),
        )

    @staticmethod
    def _alert_out(row: Sequence[Any]) -> dict[str, Any]:
        def text(value: str | None) -> str | None:
            return None if value is None else format_time(parse_time(value, "time"))

        (ident, started, room, rule, subject, severity, resolved, message, figures, by, at,
         note) = row
        return {"id": ident, "room": room, "rule": rule, "subject": subject,
                "severity": severity, "started_at": text(started), "resolved_at": text(resolved),
                "message": message, "figures": json.loads(figures) if figures else {},
                "acknowledged_by": by, "acknowledged_at": text(at), "note": note}

    _ALERT_SELECT = ("SELECT id, started_at, room, rule, subject, severity, resolved_at, "
                     "message, figures_json, acknowledged_by, acknowledged_at, note "
                     "FROM alert_episodes")

    def save_alert_episodes(self, episodes: Iterable[dict[str, Any]]) -> int:
        """Insert or update alert episodes keyed by ``(id, started_at)``; idempotent.

        A replayed firing transition never reopens a resolved episode, and acknowledgements
        are never touched here (they come only from :meth:`acknowledge_alert`).

        Returns:
            How many episodes were written.
        """
        self._alert_table()
        columns = self._ALERT_COLUMNS
        updates = ", ".join(
            f"{c} = COALESCE(excluded.{c}, alert_episodes.{c})" if c == "resolved_at"
            else f"{c} = excluded.{c}" for c in columns[2:])
        text = self._sql(
            f"INSERT INTO alert_episodes ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT (id, started_at) DO UPDATE SET {updates}")
        written = 0
        for batch in _batches((self._alert_row(e) for e in episodes), _BATCH_ROWS):
            with self._lock, self._transaction() as cur:
                cur.executemany(text, batch)
            written += len(batch)
        return written

    def acknowledge_alert(self, room: str, alert_id: str, started_at: datetime | str, by: str,
                          note: str | None, at: datetime) -> dict[str, Any] | None:
        """Record who acknowledged an episode, when and why; the first acknowledgement stays.

        Returns:
            The episode as stored (with the acknowledgement that holds), or None if the store
            has no such episode in that room.
        """
        self._alert_table()
        key = (alert_id, self._alert_time(started_at, "started_at"))
        with self._lock, self._transaction() as cur:
            cur.execute(self._sql(
                "UPDATE alert_episodes SET acknowledged_by = ?, acknowledged_at = ?, note = ? "
                "WHERE id = ? AND started_at = ? AND room = ? AND acknowledged_at IS NULL"),
                (by, self._alert_time(at, "at"), note, *key, room))
            cur.execute(self._sql(self._ALERT_SELECT + " WHERE id = ? AND started_at = ? "
                                  "AND room = ?"), (*key, room))
            row = cur.fetchone()
        return None if row is None else self._alert_out(row)

    def alert_history(self, room: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Episodes of a room overlapping ``[start, end)``, oldest first, acknowledgements too."""
        self._alert_table()
        rows = self._query(
            self._ALERT_SELECT + " WHERE room = ? AND started_at < ? "
            "AND (resolved_at IS NULL OR resolved_at >= ?) ORDER BY started_at, id",
            (room, self._alert_time(end, "end"), self._alert_time(start, "start")))
        return [self._alert_out(r) for r in rows]

    # == end of alert episodes ====================================================================


def _batches(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


