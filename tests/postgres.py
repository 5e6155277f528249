"""A real PostgreSQL server for the test session: Debian's server binaries, its own data folder.

The server runs as an unprivileged user when the tests run as root (PostgreSQL refuses root),
listens on a free loopback port and a socket folder of its own, and is stopped at the end.
Without the binaries the tests that need it skip on a laptop and fail under ``CI``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from services.kafka.broker import free_port


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; ``url`` of its ``pacesetter`` database."""

    def __init__(self) -> None:
        bindir = _binaries()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (Debian package "
                               "'postgresql': /usr/lib/postgresql/*/bin/initdb)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="pacesetter-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.port = free_port()
        self.user = "pacesetter"
        self.password = "test-password"
        self.run_as: str | None = None
        if os.geteuid() == 0:
            self.run_as = "postgres" if _has_user("postgres") else "nobody"
            account = pwd.getpwnam(self.run_as)
            os.chmod(self.root, 0o755)
            self.sockets.mkdir()
            for path in (self.root, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        else:
            self.sockets.mkdir()
        secret = self.root / "pwfile"
        secret.write_text(self.password + "\n")
        if self.run_as:
            os.chown(secret, pwd.getpwnam(self.run_as).pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--pwfile", str(secret),
                  "-A", "scram-sha-256", "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", str(self.sockets), "-p", str(self.port), "-U", self.user,
                  "pacesetter", env={"PGPASSWORD": self.password})

    @property
    def url(self) -> str:
        """The SQLAlchemy-style URL of the test database over TCP."""
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/pacesetter")

    def _run(self, tool: str, *args: str, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120,
                              env={**os.environ, **(env or {})}, cwd=self.root)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        result = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                           str(self.root / "server.log"), "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            log = (self.root / "server.log")
            raise RuntimeError(f"pg_ctl start failed: {result.stderr or result.stdout}\n"
                               f"{log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        """Stop the server fast (open connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def running(self) -> bool:
        """Whether the server answers."""
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def reset(self) -> None:
        """Drop every table: each test starts from an empty database."""
        import sqlalchemy as sa

        engine = sa.create_engine("postgresql+psycopg:" + self.url.split(":", 1)[1])
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def start_or_skip() -> PostgresServer:
    """A started server; skips (fails under ``CI``) when none can start."""
    try:
        return PostgresServer()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        message = f"no PostgreSQL server for the tests: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install the Debian package 'postgresql'",
                        pytrace=False)
        pytest.skip(message)


def wait_until(check: object, timeout: float = 30.0) -> None:
    """Poll ``check()`` until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")
