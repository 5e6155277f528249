"""``pacesetter import events``: a force's own exports through a mapping (MAPPING.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from services.contract.errors import PacesetterError
from services.contract.settings import Settings, load_settings


def register_events(kinds: Any) -> None:
    """Add ``events`` to the ``import`` group."""
    p = kinds.add_parser(
        "events", help="a force's CSV/JSONL exports into events, through a mapping file",
        description="Turn exports (one row per call, incident or unit sent) into contract "
                    "events as a mapping file says (MAPPING.md); bad rows are reported with "
                    "their line, column and reason. Exit 1 when any row was refused.")
    p.add_argument("exports", nargs="*", metavar="EXPORT",
                   help="CSV or JSONL files (.gz too), read in the order given")
    p.add_argument("--mapping", required=True, metavar="FILE",
                   help="the mapping (TOML), or the name of a shipped one: sf-fire-units, "
                        "calls-per-row")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE.jsonl", help="write the events (- for stdout)")
    where.add_argument("--bootstrap", metavar="HOST:PORT",
                       help="publish to the events topic in batches keyed by room (the "
                            "default, at PACESETTER_BOOTSTRAP_SERVERS)")
    where.add_argument("--check", action="store_true",
                       help="parse and report only: write and publish nothing")
    p.add_argument("--store", metavar="URL", nargs="?", const="",
                   help="also compute the records of the events and keep final intervals and "
                        "attendance records in the history store (default PACESETTER_STORE_URL)")
    p.add_argument("--watch", metavar="DIR",
                   help="import every new or changed file in DIR, and keep watching")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                   help="how often --watch looks at DIR (default 2)")
    p.set_defaults(handler=cmd_import_events)


def _caller_key(settings: Settings) -> bytes | None:
    secret = settings.caller_key.get_secret_value() if settings.caller_key else ""
    return secret.encode() if secret else None


def _progress() -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit=" rows", unit_scale=True, desc="import", leave=False, file=sys.stderr)


class _Collect:
    """Passes events on while keeping their bytes for ``--store``."""

    def __init__(self, events: Iterable[tuple[str, bytes]], keep: bool) -> None:
        self.events = events
        self.kept: list[bytes] = []
        self.keep = keep

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for room, data in self.events:
            if self.keep:
                self.kept.append(data)
            yield room, data


def import_once(args: argparse.Namespace, settings: Settings, mapping: Any,
                paths: list[Path], append: bool = False) -> int:
    """One run over ``paths``; prints the summary and returns how many rows were refused."""
    from services.imports.build import Run
    from services.imports.deliver import publish, write_jsonl

    run = Run(mapping, _caller_key(settings), report=lambda r: print(r, file=sys.stderr))
    bootstrap = None
    if not args.out and not args.check:  # the broker is checked before any row is read
        from services.kafka.broker import ensure_topics, wait_for_kafka

        bootstrap = args.bootstrap or settings.bootstrap_servers
        wait_for_kafka(bootstrap, 15, settings=settings)
        ensure_topics(bootstrap, [settings.topic_events], settings.partitions,
                      settings.replication_factor, settings=settings)
    bar = _progress()
    try:
        for path in paths:
            run.add_file(path, bar)
    finally:
        if bar is not None:
            bar.close()
    events = _Collect(run.events(), keep=args.store is not None)
    destination = "checked only"
    if args.out:
        write_jsonl(events, args.out, append=append)
        destination = f"written to {args.out}"
    elif bootstrap is not None:
        publish(events, bootstrap, settings.topic_events, settings=settings)
        destination = f"published to {settings.topic_events} at {bootstrap}"
    else:
        for _ in events:
            pass
    out = sys.stderr if args.out == "-" else sys.stdout
    for line in run.summary.lines():
        print(line, file=out)
    print(f"events {destination}", file=out)
    if args.store is not None:
        _store(events.kept, settings, args.store, out)
    return run.summary.refused_rows


def _store(lines: list[bytes], settings: Settings, url: str, out: Any) -> None:
    from services.figures.report import compute_records
    from services.history.store import HistoryStore

    report = compute_records(lines, settings)
    finals = [r for r in report.intervals.values() if r["final"]]
    with HistoryStore.open(url or settings.store_url) as store:
        store.upsert_intervals(finals)
        store.upsert_attendance(list(report.attendance.values()))
    print(f"{len(finals)} final interval records and {len(report.attendance)} attendance "
          f"records stored in {url or settings.store_url}", file=out)


def cmd_import_events(args: argparse.Namespace) -> int:
    """Import exports (or watch a folder); exit 1 when any row was refused."""
    from services.imports.mapping import load_mapping

    mapping = load_mapping(args.mapping)  # every mapping error before any row is read
    settings = load_settings()
    if not args.exports and not args.watch:
        raise PacesetterError("give the export files to import, or --watch DIR")
    if args.check and args.store is not None:
        raise PacesetterError("--check writes nothing: leave out --store")
    refused = 0
    if args.exports:
        refused += import_once(args, settings, mapping, [Path(p) for p in args.exports])
    if args.watch:
        refused += _watch(args, settings, mapping)
    return 1 if refused else 0


def _watch(args: argparse.Namespace, settings: Settings, mapping: Any) -> int:
    from services.imports.watch import watch

    folder = Path(args.watch)
    if not folder.is_dir():
        raise PacesetterError(f"--watch: {folder} is not a folder")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    refused = 0

    def handle(path: Path) -> None:
        nonlocal refused
        print(f"importing {path}", file=sys.stderr, flush=True)
        try:
            refused += import_once(args, settings, mapping, [path], append=True)
        except PacesetterError as exc:  # one bad file must not stop the watch
            refused += 1
            print(f"{path}: {exc}", file=sys.stderr)
        sys.stdout.flush()

    print(f"watching {folder} (every {args.poll:g} s); Ctrl-C to stop", file=sys.stderr,
          flush=True)
    watch(folder, handle, stop.is_set, args.poll, sleep=lambda s: None if stop.wait(s) else None)
    return refused
