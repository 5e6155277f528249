"""Connecting to the history database: dialects, pooling, reconnection and schema revisions.

SQLAlchemy's engine keeps a pool of connections, each used by one thread at a time, and checks
a pooled connection before handing it out (``pool_pre_ping``), so a database that restarted is
reconnected to on the next call instead of failing every call after it. Alembic migrations in
``services/history/migrations`` version the schema.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import StaticPool

from services.contract.errors import PacesetterError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LEGACY_REVISION = "0001"  # the tables stores created before migrations existed
UPGRADE_HINT = "run `pacesetter db upgrade` (PACESETTER_STORE_URL names the database)"


class StoreError(PacesetterError):
    """A store URL that cannot work, or a record the store cannot keep."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (down, restarting, refusing connections)."""


class SchemaBehind(StoreError):
    """The database's schema is older than this code's: it must be upgraded first."""


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    if rest is None:
        raise StoreError(
            f"store URL {url!r}: write sqlite:///relative/path.db, sqlite:////absolute/path.db "
            "or sqlite:///:memory:"
        )
    return rest or ":memory:"


def connect_sqlite(path: str) -> sqlite3.Connection:
    """Connect to a SQLite file in WAL mode, waiting out another process opening it too.

    Switching a new file to WAL needs an exclusive lock, and SQLite reports "database is
    locked" at once (without its busy handler) when two processes do it together, e.g. two
    workers starting side by side on a new store. That is retried for the busy timeout.
    The connection is in autocommit mode: transactions are begun explicitly (``on_begin``).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                               isolation_level=None)
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


def create_engine(url: str) -> sa.Engine:
    """A pooled engine for a store URL.

    Args:
        url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
            ``sqlite:///:memory:`` or ``postgresql://user:pass@host:port/db`` (psycopg 3).

    Raises:
        StoreError: the URL is not understood.
    """
    if url.startswith("sqlite:"):
        path = _sqlite_path(url)
        if path == ":memory:":
            # one database lives in one connection: every thread shares it (serialised)
            engine = sa.create_engine("sqlite://", creator=lambda: connect_sqlite(":memory:"),
                                      poolclass=StaticPool)
        else:
            file = Path(path).expanduser()
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot open the SQLite store {url!r}: {exc}") from None
            engine = sa.create_engine(f"sqlite:///{file}",
                                      creator=lambda: connect_sqlite(str(file)),
                                      pool_size=8, max_overflow=8, pool_pre_ping=True)

        @sa.event.listens_for(engine, "begin")
        def on_begin(conn: sa.Connection) -> None:
            # BEGIN IMMEDIATE takes SQLite's write lock up front, so a second process waits
            # (busy timeout) instead of failing half-way with "database is locked".
            immediate = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise StoreError(
                f"store URL {url!r} needs PostgreSQL support: pip install 'psycopg[binary]'"
            ) from None
        dsn = "postgresql+psycopg:" + url.split(":", 1)[1]
        return sa.create_engine(dsn, pool_size=8, max_overflow=8, pool_pre_ping=True,
                                pool_recycle=1800, connect_args={"connect_timeout": 5})
    raise StoreError(
        f"store URL {url!r} is not supported: use sqlite:///path.db or postgresql://…"
    )


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The database's schema revision; None for an empty database.

    A database made before migrations existed (tables, no ``alembic_version``) is at the
    legacy revision.
    """
    with engine.connect() as conn:
        found = MigrationContext.configure(conn).get_current_revision()
        if found is None and sa.inspect(conn).has_table("intervals"):
            return LEGACY_REVISION
        return found


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Apply every migration the database lacks, in one transaction.

    On SQLite the transaction takes the write lock first, so processes opening a new file
    together upgrade it once: the others find it upgraded.

    Returns:
        ``(revision before, revision after)``.
    """
    from alembic import command

    head = head_revision()
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            before = MigrationContext.configure(conn).get_current_revision()
            legacy = before is None and sa.inspect(conn).has_table("intervals")
            config = _alembic_config(conn)
            if legacy:
                before = LEGACY_REVISION
                command.stamp(config, LEGACY_REVISION)
            if before != head:
                command.upgrade(config, "head")
    return before, head


def check_schema(engine: sa.Engine, url: str, auto_upgrade: bool) -> None:
    """Make sure the schema is the head revision; upgrade it or say clearly that it is behind.

    Raises:
        SchemaBehind: the schema is older (or newer) than this code's and may not be upgraded
            here; the message names both revisions and the command that upgrades.
        StoreUnavailable: the database cannot be reached.
    """
    head = head_revision()
    try:
        found = current_revision(engine)
        if found == head:
            return
        if found is not None and found > head:
            raise SchemaBehind(
                f"history store {safe_url(url)}: schema revision {found} is newer than this "
                f"program's {head}: upgrade Pacesetter"
            )
        if not auto_upgrade:
            raise SchemaBehind(
                f"history store {safe_url(url)}: schema is behind (revision "
                f"{found or 'none: empty database'}, this program needs {head}): {UPGRADE_HINT}"
            )
        if found is None:
            logger.info("history store %s: new database, creating schema revision %s",
                        safe_url(url), head)
        else:
            logger.warning("history store %s: schema is behind (revision %s, needs %s): "
                           "upgrading", safe_url(url), found, head)
        upgrade(engine)
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(f"history store {safe_url(url)} unreachable: {brief(exc)}") \
            from None


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL has no password to hide either
        return url


def brief(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's background link."""
    inner: Any = getattr(exc, "orig", None) or exc
    return (str(inner).strip().splitlines() or [type(inner).__name__])[0]
