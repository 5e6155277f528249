"""Subcommands that serve: ``api`` (one API server), ``up`` (everything) and ``demo``.

``up`` is a small supervisor: each part runs as a child process of this same ``pacesetter``
command, so that a crash in one is reported by name and Ctrl-C stops them all in order.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import IO, Any

from services.broker import BrokerError, free_port, port_is_free
from services.errors import PacesetterError
from services.settings import Settings, load_settings


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

    p = sub.add_parser("demo", help="'up' plus the simulator streaming a busy control room")
    _serve_flags(p)
    p.add_argument("--backfill-hours", type=float, default=24.0,
                   help="hours of history the simulator publishes first (default 24)")
    p.add_argument("--speed", type=float, default=1.0, help="simulator speed (default 1)")
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
    app = create_app(settings, store=open_store(settings))
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
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.stop.set())
    try:
        bootstrap = args.bootstrap
        if not bootstrap:
            port = 9092 if port_is_free("127.0.0.1", 9092) else free_port()
            broker = sup.start(Child("embedded broker", ["broker", "--port", str(port)]),
                               capture=True)
            bootstrap = sup.wait_for_line(broker, "bootstrap:", 60)
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
                "simulate", "--bootstrap", bootstrap, "--backfill-hours",
                f"{args.backfill_hours:g}", "--speed", f"{args.speed:g}"],
                optional_exit_ok=True))
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
        sup.stop_all()
        print("stopped", file=sys.stderr, flush=True)
