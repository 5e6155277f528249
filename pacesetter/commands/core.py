"""Subcommands of the foundation: ``broker``, ``validate`` and ``replay``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from services.contract.settings import load_settings
from services.kafka.broker import EmbeddedBroker, ensure_topics, wait_for_kafka
from services.kafka.ingest import IngestError, replay_file, validate_file


def register(sub: Any) -> None:
    """Add ``broker``, ``validate`` and ``replay``."""
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (memory only)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(handler=cmd_broker)

    p = sub.add_parser("validate", help="check a JSONL event file against the event contract")
    p.add_argument("file", help="JSONL file, or - for standard input")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("replay", help="publish a JSONL event file to the events topic")
    p.add_argument("file", help="JSONL file, or - for standard input")
    p.add_argument("--bootstrap", help="Kafka HOST:PORT (default PACESETTER_BOOTSTRAP_SERVERS)")
    p.add_argument("--speed", type=float, default=None,
                   help="pace by event time, X times real time (default: as fast as possible)")
    p.add_argument("--hash-callers", action="store_true",
                   help="replace raw numbers in 'caller' by HMAC-SHA256 pseudonyms "
                        "(key from PACESETTER_CALLER_KEY)")
    p.set_defaults(handler=cmd_replay)


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded broker until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(args.host, args.port) as broker:
        print(f"bootstrap: {broker.bootstrap}", flush=True)
        print("embedded broker (memory only: data is gone when it stops); Ctrl-C to stop",
              file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                if broker.process is None or broker.process.poll() is not None:
                    print("the embedded broker exited unexpectedly", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
    print("broker stopped", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a file: one line per invalid input line, then the counts."""
    counts = validate_file(args.file, report=print)
    print(f"{counts.valid} valid, {counts.invalid} invalid")
    return 1 if counts.invalid else 0


def _caller_key(required: bool) -> bytes | None:
    if not required:
        return None
    settings = load_settings()
    if settings.caller_key is None or not settings.caller_key.get_secret_value():
        raise IngestError(
            "--hash-callers needs a secret key: set PACESETTER_CALLER_KEY (keep it out of files)"
        )
    return settings.caller_key.get_secret_value().encode()


def cmd_replay(args: argparse.Namespace) -> int:
    """Publish a file's valid events; exit 0 only when every one was acknowledged."""
    settings = load_settings()
    bootstrap = args.bootstrap or settings.bootstrap_servers
    key = _caller_key(args.hash_callers)
    wait_for_kafka(bootstrap, 15, settings=settings)
    ensure_topics(bootstrap, [settings.topic_events], settings.partitions,
                  settings.replication_factor, settings=settings)
    counts = replay_file(
        args.file,
        bootstrap,
        settings.topic_events,
        report=lambda line: print(line, file=sys.stderr),
        speed=args.speed,
        caller_key=key,
        progress=sys.stderr.isatty(),
        settings=settings,
    )
    print(f"{counts.published} published, {counts.invalid} invalid "
          f"({counts.duplicates} duplicates) to {settings.topic_events} at {bootstrap}")
    return 0  # every valid event was acknowledged (replay_file raises otherwise)
