"""Subcommands of the stream: ``worker`` and ``report``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from services.contract.settings import load_settings


def register(sub: Any) -> None:
    """Add ``worker`` and ``report``."""
    p = sub.add_parser("worker", help="run one stream worker (several share the partitions)")
    p.add_argument("--bootstrap", help="Kafka HOST:PORT (default PACESETTER_BOOTSTRAP_SERVERS)")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("report", help="the interval figures of a JSONL event file, without Kafka")
    p.add_argument("file", help="JSONL file, or - for standard input")
    p.add_argument("--json", action="store_true", help="JSON lines: every record with its kind")
    p.add_argument("--store", metavar="URL", nargs="?", const="",
                   help="also keep the final interval records in the history store, for "
                        "forecasts (default URL: PACESETTER_STORE_URL)")
    p.set_defaults(handler=cmd_report)


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker."""
    from streams.runner import run_worker

    overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    run_worker(load_settings(**overrides))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Compute and print the records of a file."""
    from services.figures.report import compute_records
    from services.kafka.ingest import read_lines

    settings = load_settings()
    report = compute_records(read_lines(args.file), settings)
    if args.store is not None:
        from services.history.store import HistoryStore

        finals = [r for r in report.intervals.values() if r["final"]]
        with HistoryStore.open(args.store or settings.store_url) as store:
            store.upsert_intervals(finals)
        print(f"{len(finals)} final interval records stored in "
              f"{args.store or settings.store_url}", file=sys.stderr)
    if args.json:
        out = sys.stdout.buffer
        for kind, records in (("interval", report.intervals), ("attendance", report.attendance),
                              ("handlers", report.handlers)):
            for key in sorted(records):
                out.write(orjson.dumps({"kind": kind, "record": records[key]}) + b"\n")
        return 0
    print(f"{'room':<10} {'line':<7} {'interval (UTC)':<17} {'offered':>7} {'answ':>5} "
          f"{'aband':>5} {'SL ans':>7} {'abandon':>7} {'ASA s':>7} {'FD':>4} final")
    for key in sorted(report.intervals):
        r = report.intervals[key]
        print(f"{r['room']:<10} {r['line']:<7} {r['interval_start'][:16]:<17} {r['offered']:>7} "
              f"{r['answered']:>5} {r['abandoned']:>5} {_pct(r['service_level']['answered']):>7} "
              f"{_pct(r['abandonment_rate']):>7} {_num(r['asa_seconds']):>7} "
              f"{r['failure_demand']:>4} {'yes' if r['final'] else 'no'}")
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(report.rejected.items())) or "none"
    print(f"{len(report.intervals)} interval records; rejected: {rejected}")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
