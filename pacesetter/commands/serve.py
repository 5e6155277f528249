"""Subcommands that serve: ``api`` (one API server), ``up`` (everything) and ``demo``.

``up`` is a small supervisor: each part runs as a child process of this same ``pacesetter``
command, so that a crash in one is reported by name and Ctrl-C stops them all in order.
``demo`` adds the simulator and, in the background, a planner that gives the simulated rooms
four weeks of history and staffing plans, as a force's forecaster would.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from services.contract.errors import PacesetterError
from services.contract.settings import Settings, load_settings
from services.kafka.broker import BrokerError, free_port, port_is_free
from services.kafka.clients import check_access


class ServeError(PacesetterError):
    """The API cannot be served as asked; the message says why and what to do."""


def register(sub: Any) -> None:
    """Add ``api``, ``up`` and ``demo``."""
    p = sub.add_parser("api", help="run one API server (REST, SSE, /metrics, dashboard)")
    _serve_flags(p)
    p.set_defaults(handler=cmd_api)

    p = sub.add_parser("up", help="run everything on this machine: broker, worker, API")
    _serve_flags(p)
    p.set_defaults(handler=cmd_up, demo=False)

    p = sub.add_parser("demo", help="'up' plus the simulator streaming a busy control room, "
                                    "with simulated history and staffing plans")
    _serve_flags(p)
    p.add_argument("--backfill-hours", type=float, default=24.0,
                   help="hours of history the simulator publishes first (default 24)")
    p.add_argument("--speed", type=float, default=1.0, help="simulator speed (default 1)")
    p.add_argument("--no-plans", action="store_true",
                   help="skip the planner: no simulated history and no staffing plans")
    p.set_defaults(handler=cmd_up, demo=True)


def _serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka HOST:PORT (default PACESETTER_BOOTSTRAP_SERVERS; "
                                       "for up/demo: start an embedded broker)")
    p.add_argument("--api-host", help="address to listen on (default PACESETTER_API_HOST, "
                                      "127.0.0.1)")
    p.add_argument("--api-port", type=int, help="port (default PACESETTER_API_PORT, 8000)")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.bootstrap:
        overrides["bootstrap_servers"] = args.bootstrap
    if args.api_host:
        overrides["api_host"] = args.api_host
    if args.api_port is not None:
        overrides["api_port"] = args.api_port
    return load_settings(**overrides)


def check_exposure(settings: Settings) -> str:
    """The line to print about access, or an error when the address needs tokens.

    Raises:
        ServeError: asked to listen beyond loopback without any token configured.
    """
    from api.deps import is_loopback

    if settings.tokens():
        roles = sorted({t.role for t in settings.tokens()})
        return f"bearer tokens required on /api/v1 (roles: {', '.join(roles)})"
    if not is_loopback(settings.api_host):
        raise ServeError(
            f"refusing to listen on {settings.api_host} without tokens: anyone who can reach "
            "it could read the control room's figures. Set PACESETTER_API_TOKENS to "
            "comma-separated role:token pairs (roles viewer, scheduler, admin), "
            "or listen on 127.0.0.1")
    return ("no tokens configured: listening on loopback only, unauthenticated "
            "(set PACESETTER_API_TOKENS to serve other machines)")


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the API with uvicorn until Ctrl-C or SIGTERM."""
    import uvicorn

    from api.app import create_app
    from api.deps import open_store

    settings = _settings(args)
    access = check_exposure(settings)
    if not port_is_free(settings.api_host, settings.api_port):
        raise ServeError(f"port {settings.api_port} on {settings.api_host} is in use: "
                         "choose another with --api-port")
    # A refused certificate or login stops here, naming the setting; a broker not up yet is
    # waited for by the read model (the API answers "not ready" meanwhile).
    check_access(settings, timeout_seconds=3, require_answer=False)
    app = create_app(settings, store=open_store(settings))
    # The read model holds many long-lived records: with the default thresholds the cyclic
    # collector walks them all often enough to show in the p99 of large answers.
    import gc

    gc.set_threshold(50_000, 20, 100)
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    print(f"API on http://{host}:{settings.api_port}/ (Kafka {settings.bootstrap_servers}); "
          f"{access}", flush=True)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning",
                access_log=False)
    return 0


@dataclass
class Child:
    """One supervised part of ``up``."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    optional_exit_ok: bool = False
    lines: list[str] = field(default_factory=list)


class Supervisor:
    """Starts parts in order, stops them in reverse, and notices when one dies."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []
        self.stop = threading.Event()

    def start(self, child: Child, capture: bool = False) -> Child:
        """Start a child; with ``capture`` its output is relayed and kept for wait_for_line."""
        print(f"starting {child.name}", file=sys.stderr, flush=True)
        child.process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "pacesetter.cli", *child.argv],
            env=self.env, stdout=subprocess.PIPE if capture else None, start_new_session=True)
        self.children.append(child)
        if capture and child.process.stdout is not None:
            threading.Thread(target=self._relay, args=(child, child.process.stdout),
                             daemon=True).start()
        return child

    @staticmethod
    def _relay(child: Child, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            child.lines.append(line)
            print(line, flush=True)

    def wait_for_line(self, child: Child, prefix: str, timeout: float) -> str:
        """What follows ``prefix`` on the first line of the child that starts with it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            for line in child.lines:
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            self.check()
            time.sleep(0.05)
        raise ServeError(f"the {child.name} did not say '{prefix}' within {timeout:g} s")

    def check(self) -> None:
        """Raise when a child exited (unless it may finish on its own)."""
        for child in self.children:
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            if code == 0 and child.optional_exit_ok:
                print(f"the {child.name} finished", file=sys.stderr, flush=True)
                self.children.remove(child)
                return
            raise ServeError(f"the {child.name} exited with code {code}: stopping everything")

    def stop_all(self) -> None:
        """SIGTERM every child, newest first; SIGKILL what is still there after 10 s."""
        for child in reversed(self.children):
            proc = child.process
            if proc is not None and proc.poll() is None:
                print(f"stopping {child.name}", file=sys.stderr, flush=True)
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.children.clear()


DEMO_ROOMS = 2  # rooms the demo simulates (north, south)
HISTORY_SEED = 2  # the live simulator runs with seed 1: the history is other days
HISTORY_DAYS = 28  # four weeks: enough for a one-week backtest to choose the method
ENOUGH_HISTORY_DAYS = 15  # forecasting needs 14 (forecasting/history.py MIN_HISTORY_DAYS)
PLAN_DAYS = 2  # today and tomorrow
QUARTER_HOUR = timedelta(minutes=15)


class PlannerError(PacesetterError):
    """A step of the demo's planner failed; the message says which and why."""


class _Stopped(Exception):
    """The demo is stopping: the planner gives up quietly."""


class Planner:
    """The demo's forecaster: simulated history into the store, then staffing plans.

    The stream alone gives the demo a day of history, and a forecast needs two weeks. So, in a
    thread, while the live room runs: unless the store already holds ``ENOUGH_HISTORY_DAYS``
    for the demo's rooms, simulate ``HISTORY_DAYS`` of events ending where the live simulator's
    backfill begins and keep their final intervals in the store (``simulate``, then
    ``report --store``); then ``forecast --all`` saves plans for today and tomorrow, which the
    worker reads for the live state and the ``staffing_gap`` / ``demand_above_forecast``
    alerts. Each step is a child process in a session of its own (a forecast's pool with it),
    killed by :meth:`stop`. A failure is logged and leaves the rest of the demo running.
    """

    def __init__(self, sup: Supervisor, settings: Settings, rooms: int,
                 backfill_hours: float) -> None:
        self.sup = sup
        self.settings = settings
        self.rooms = rooms
        self.backfill_hours = backfill_hours
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._run, name="planner", daemon=True)

    @staticmethod
    def log(message: str) -> None:
        """One progress line on standard error."""
        print(f"planner: {message}", file=sys.stderr, flush=True)

    def start(self) -> None:
        """Plan in the background."""
        print("starting planner", file=sys.stderr, flush=True)
        self.thread.start()

    def stop(self) -> None:
        """Kill the running step (and its process group) and wait for the thread."""
        self.stopped.set()
        if not self.thread.is_alive():
            return
        print("stopping planner", file=sys.stderr, flush=True)
        with self.lock:
            proc = self.process
        if proc is not None:
            _kill_group(proc, 10)
        self.thread.join(15)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self._history()
            self._plans(started)
        except _Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - the live room must go on whatever happens
            self.log(f"FAILED: {exc}")
            self.log("the live room goes on without staffing plans (staffing_plan 'none yet'); "
                     "restart the demo to try again, or skip planning with --no-plans")

    def _names(self) -> list[str]:
        from services.simulation.simulator import room_name

        return [room_name(i) for i in range(self.rooms)]

    def _history(self) -> None:
        now = datetime.now(UTC)
        live_start = now - timedelta(hours=self.backfill_hours)
        start = live_start - timedelta(days=HISTORY_DAYS)
        have = self.history_days(start)
        if have >= ENOUGH_HISTORY_DAYS:
            self.log(f"{have:.0f} days of history already in {self.settings.store_url}")
            return
        # An interval becomes final a grace period after it ends, by the newest event time:
        # simulating that much longer makes the final history reach the live stream's first
        # interval, without a quiet hole in between.
        days = HISTORY_DAYS + self.settings.grace_seconds / 86400
        path = Path(self.settings.data_dir) / "demo-history.jsonl"
        self.log(f"simulating {HISTORY_DAYS} days of history for {', '.join(self._names())} "
                 f"(up to {live_start:%Y-%m-%d %H:%M} UTC, where the live stream begins)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._step(["simulate", "--out", str(path), "--rooms", str(self.rooms),
                        "--seed", str(HISTORY_SEED), "--days", f"{days:.6f}",
                        "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ")])
            _, err = self._step(["report", str(path), "--store", self.settings.store_url],
                                keep_stdout=False)
        finally:
            path.unlink(missing_ok=True)
        stored = next((line.split()[0] for line in err.splitlines()
                       if "final interval records stored" in line), "its")
        self.log(f"{HISTORY_DAYS} days of simulated history stored ({stored} final intervals)")

    def history_days(self, since: datetime) -> float:
        """The fewest days of known final history since ``since`` of any line of the rooms.

        Like the forecaster, a gap of under a day counts as quiet (known) and a longer one as
        unknown.
        """
        from services.history.store import HistoryStore
        from services.simulation.simulator import LINES

        fewest = float("inf")
        with HistoryStore.open(self.settings.store_url) as store:
            for room in self._names():
                for line in LINES:
                    starts = [datetime.fromisoformat(row[0]) for row in
                              store.interval_series(room, line, start=since, final_only=True)]
                    known = 1.0 if starts else 0.0
                    for before, after in zip(starts, starts[1:], strict=False):
                        step = (after - before) / QUARTER_HOUR  # 1 + intervals without calls
                        known += step if step <= 97 else 1
                    fewest = min(fewest, known / 96)
        return fewest

    def _plans(self, started: float) -> None:
        self.log("forecasting demand and planning staffing for today and tomorrow")
        code, out, err = self._call(["forecast", "--all", "--days", str(PLAN_DAYS),
                                     "--store", self.settings.store_url])
        summary = re.search(r"^(\d+) series planned", out, re.MULTILINE)
        planned = int(summary.group(1)) if summary else 0
        if planned == 0:
            raise PlannerError(f"'pacesetter forecast --all' planned nothing (exit code "
                               f"{code}): {_tail(err) or _tail(out) or 'no output'}")
        if code != 0:
            failed = [line for line in out.splitlines() if ":" in line
                      and "intervals planned" not in line]
            self.log(f"some series could not be planned: {'; '.join(failed) or _tail(err)}")
        self.log(f"staffing plans ready for {planned} series after "
                 f"{time.monotonic() - started:.0f} s; the live state and the staffing_gap and "
                 "demand_above_forecast alerts use them within a minute")

    def _step(self, argv: list[str], keep_stdout: bool = True) -> tuple[str, str]:
        code, out, err = self._call(argv, keep_stdout)
        if code != 0:
            raise PlannerError(f"'pacesetter {argv[0]}' exited with code {code}: "
                               f"{_tail(err) or _tail(out) or 'no output'}")
        return out, err

    def _call(self, argv: list[str], keep_stdout: bool = True) -> tuple[int, str, str]:
        """Run one ``pacesetter`` step to its end: ``(exit code, stdout, stderr)``."""
        with self.lock:
            if self.stopped.is_set():
                raise _Stopped
            proc = self.process = subprocess.Popen(  # noqa: S603 - our own command
                [sys.executable, "-m", "pacesetter.cli", *argv], env=self.sup.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate()
        finally:
            with self.lock:
                self.process = None
        if self.stopped.is_set():
            raise _Stopped
        return (proc.returncode, (out or b"").decode(errors="replace"),
                err.decode(errors="replace"))


def _tail(text: str, lines: int = 3) -> str:
    """The last few lines of a child's output, on one line."""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _kill_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM a child started in a session of its own and its group; SIGKILL after timeout."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_http(url: str, sup: Supervisor, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not sup.stop.is_set():
        sup.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except OSError:
            time.sleep(0.2)
    return False


def cmd_up(args: argparse.Namespace) -> int:
    """Run broker (unless --bootstrap), worker, API (and the simulator for demo) until stopped."""
    settings = _settings(args)
    check_exposure(settings)
    if not port_is_free(settings.api_host, settings.api_port):
        raise ServeError(f"port {settings.api_port} on {settings.api_host} is in use: "
                         "choose another with --api-port")
    sup = Supervisor(dict(os.environ))
    planner: Planner | None = None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.stop.set())
    try:
        bootstrap = args.bootstrap
        if not bootstrap:
            port = 9092 if port_is_free("127.0.0.1", 9092) else free_port()
            broker = sup.start(Child("embedded broker", ["broker", "--port", str(port)]),
                               capture=True)
            bootstrap = sup.wait_for_line(broker, "bootstrap:", 60)
            # the embedded broker is plaintext on loopback, whatever a force's Kafka needs
            for name in [n for n in sup.env if n.startswith("PACESETTER_KAFKA_S")]:
                del sup.env[name]
        else:
            # a refused certificate or login stops here, naming the setting, not in a child
            check_access(settings, bootstrap, 30)
        sup.env["PACESETTER_BOOTSTRAP_SERVERS"] = bootstrap
        sup.start(Child("stream worker", ["worker", "--bootstrap", bootstrap]))
        sup.start(Child("API", ["api", "--bootstrap", bootstrap, "--api-host", settings.api_host,
                                "--api-port", str(settings.api_port)]))
        host = settings.api_host if settings.api_host not in ("0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{settings.api_port}/"
        if not _wait_http(url + "healthz", sup, 60):
            if sup.stop.is_set():
                return 130
            raise ServeError(f"the API did not answer at {url} within 60 s")
        if args.demo:
            sup.start(Child("simulator", [
                "simulate", "--bootstrap", bootstrap, "--rooms", str(DEMO_ROOMS),
                "--backfill-hours", f"{args.backfill_hours:g}", "--speed", f"{args.speed:g}"],
                optional_exit_ok=True))
            if not args.no_plans:
                planner = Planner(sup, settings, DEMO_ROOMS, args.backfill_hours)
                planner.start()
        print(f"dashboard: {url}", flush=True)
        print(f"Kafka at {bootstrap}; API docs at {url}docs; metrics at {url}metrics; "
              "Ctrl-C to stop", file=sys.stderr, flush=True)
        while not sup.stop.wait(0.5):
            sup.check()
        return 0
    except (ServeError, BrokerError) as exc:
        print(f"pacesetter {'demo' if args.demo else 'up'}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if planner is not None:
            planner.stop()
        sup.stop_all()
        print("stopped", file=sys.stderr, flush=True)
