"""The ``simulate`` subcommand: synthetic control-room events to a JSONL file or live to Kafka."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import date, datetime
from typing import Any

from services.simulation.simulator import DEFAULT_START, SimulationError, stream_live, write_jsonl

_FILE_ONLY = ("days", "start")
_LIVE_ONLY = ("speed", "backfill_hours", "topic")


def register(sub: Any) -> None:
    """Add ``simulate``."""
    p = sub.add_parser(
        "simulate",
        help="synthetic control-room events, to a JSONL file or live to Kafka",
        description="Simulate UK police control rooms (999, 101 and online lines, handlers on "
        "shifts, callers who give up and ring again, incidents) and write the events as JSON "
        "Lines, or stream them live to Kafka with times around the current wall clock. The same "
        "arguments and seed give a byte-identical file.",
    )
    p.add_argument("--rooms", type=int, default=2, help="control rooms (default 2)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="demand multiplier; 1 is a medium force, about 700 calls a day on 999, "
                        "1,500 on 101 and 300 online per room (default 1)")
    p.add_argument("--staffing", type=float, default=1.0,
                   help="multiplier on the planned rota, for what-if runs (default 1)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="FILE", help="write JSONL to FILE (- for standard output)")
    target.add_argument("--bootstrap", metavar="HOST:PORT",
                        help="stream live to the Kafka broker at HOST:PORT instead")
    files = p.add_argument_group("file output")
    files.add_argument("--days", type=float, default=None, help="days to simulate (default 1)")
    files.add_argument("--start", type=_start, default=None, metavar="DATE",
                       help="first day YYYY-MM-DD (local midnight, Europe/London) or an RFC 3339 "
                            f"time with a zone (default {DEFAULT_START.isoformat()})")
    live = p.add_argument_group("live output")
    live.add_argument("--speed", type=float, default=None,
                      help="simulated seconds per second (default 1: real time)")
    live.add_argument("--backfill-hours", type=float, default=None, metavar="H",
                      help="publish the last H hours of history at once first (default 0)")
    live.add_argument("--topic", default=None,
                      help="events topic (default PACESETTER_TOPIC_EVENTS, pacesetter.events)")
    p.set_defaults(handler=cmd_simulate)


def _start(text: str) -> date | datetime:
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date like 2026-11-02 or a time like 2026-11-02T06:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone: add 'Z' for UTC or an offset like '+01:00'"
        )
    return value


def _flags(args: argparse.Namespace, names: tuple[str, ...]) -> str:
    given = ["--" + name.replace("_", "-") for name in names if getattr(args, name) is not None]
    if not given:
        return ""
    return ", ".join(given) + (" applies" if len(given) == 1 else " apply")


def cmd_simulate(args: argparse.Namespace) -> int:
    """Write simulated events to a file, or stream them live until Ctrl-C or SIGTERM."""
    if args.out is not None:
        wrong = _flags(args, _LIVE_ONLY)
        if wrong:
            raise SimulationError(f"{wrong} to --bootstrap (live) runs only")
        count = write_jsonl(args.out, rooms=args.rooms, days=args.days or 1.0, start=args.start,
                            seed=args.seed, scale=args.scale, staffing=args.staffing)
        where = "standard output" if args.out == "-" else args.out
        print(f"{count} events written to {where}", file=sys.stderr if args.out == "-" else None)
        return 0
    wrong = _flags(args, _FILE_ONLY)
    if wrong:
        raise SimulationError(
            f"{wrong} to --out runs only: live runs start now "
            "(use --backfill-hours for history)"
        )
    return _live(args)


def _live(args: argparse.Namespace) -> int:
    from services.contract.settings import load_settings
    from services.kafka.broker import ensure_topics, wait_for_kafka

    settings = load_settings()
    topic = args.topic or settings.topic_events
    wait_for_kafka(args.bootstrap, 15, settings=settings)
    ensure_topics(args.bootstrap, [topic], settings.partitions, settings.replication_factor,
                  settings=settings)
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    print(f"simulating {args.rooms} room(s) live to {topic} at {args.bootstrap}; Ctrl-C to stop",
          file=sys.stderr, flush=True)
    try:
        count = stream_live(args.bootstrap, topic, rooms=args.rooms, seed=args.seed,
                            scale=args.scale, speed=args.speed or 1.0,
                            backfill_hours=args.backfill_hours or 0.0, stop=stop,
                            staffing=args.staffing, settings=settings)
    finally:
        for signum, restore in previous.items():
            signal.signal(signum, restore)
    print(f"{count} events published to {topic}", file=sys.stderr)
    return 0
