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

    p = sub.add_parser("report", help="the interval figures of a JSONL event file, without Kafka; "
                                      "'report monthly' for a room's month from the store")
    p.add_argument("file", help="JSONL file, or - for standard input; or 'monthly' with --room "
                                "and --month")
    p.add_argument("--json", action="store_true",
                   help="JSON lines: every record with its kind (report monthly: the report)")
    p.add_argument("--store", metavar="URL", nargs="?", const="",
                   help="also keep the final interval records and the attendance records in "
                        "the history store, for forecasts and monthly reports (default URL: "
                        "PACESETTER_STORE_URL); report monthly reads from it")
    p.add_argument("--room", help="report monthly: the room")
    p.add_argument("--month", help="report monthly: the Europe/London calendar month, YYYY-MM")
    p.add_argument("--csv", metavar="FILE", help="report monthly: also write the figures as CSV")
    p.add_argument("--html", metavar="FILE",
                   help="report monthly: also write the printable page with its charts")
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
    if args.file == "monthly" and (args.room or args.month):
        return cmd_report_monthly(args, settings)
    report = compute_records(read_lines(args.file), settings)
    if args.store is not None:
        from services.history.store import HistoryStore

        finals = [r for r in report.intervals.values() if r["final"]]
        with HistoryStore.open(args.store or settings.store_url) as store:
            store.upsert_intervals(finals)
            # every attendance record: they stay open for the 50-hour attendance horizon
            store.upsert_attendance(list(report.attendance.values()))
        print(f"{len(finals)} final interval records and {len(report.attendance)} attendance "
              f"records stored in {args.store or settings.store_url}", file=sys.stderr)
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


def cmd_report_monthly(args: argparse.Namespace, settings: Any) -> int:
    """A room's month from the history store: a table, and CSV, HTML or JSON on request."""
    from pathlib import Path

    from services.contract.errors import PacesetterError
    from services.figures.monthly import month_bounds, monthly_report, report_csv
    from services.figures.monthly_page import render
    from services.history.store import HistoryStore

    if not args.room or not args.month:
        raise PacesetterError("report monthly needs --room and --month (e.g. --month 2026-11)")
    start, end = month_bounds(args.month)
    with HistoryStore.open(args.store or settings.store_url) as store:
        report = monthly_report(args.room, args.month,
                                store.intervals(args.room, start=start, end=end),
                                store.attendance(args.room, start, end), settings)
    if not report["lines"] and not report["grades"]:
        raise PacesetterError(f"no records of room {args.room!r} in {args.month} in the store "
                              f"{args.store or settings.store_url}")
    if args.csv:
        Path(args.csv).write_text(report_csv(report), encoding="utf-8")
        print(f"CSV written to {args.csv}", file=sys.stderr)
    if args.html:
        Path(args.html).write_text(render(report), encoding="utf-8")
        print(f"HTML written to {args.html}", file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    print(f"{report['room']} {report['month']} ({report['start']} to {report['end']}), "
          f"definitions version {report['definitions_version']}")
    print(f"{'line':<8}{'offered':>9}{'answered':>10}{'<10 s':>8}{'10-60 s':>9}{'60 s+':>8}"
          f"{'mean s':>8}{'abandon':>9}{'SL':>8}{'FD':>6}")
    for line in report["lines"]:
        shares = line["answer_band_shares"]
        print(f"{line['line']:<8}{line['offered']:>9}{line['answered']:>10}"
              f"{_pct(shares['under_10s']):>8}{_pct(shares['from_10s_to_60s']):>9}"
              f"{_pct(shares['60s_and_over']):>8}{_num(line['mean_answer_seconds']):>8}"
              f"{_pct(line['abandonment_rate']):>9}{_pct(line['service_level']['answered']):>8}"
              f"{line['failure_demand']:>6}")
    print(f"{'grade':<12}{'incidents':>10}{'attended':>9}{'in target (call)':>18}"
          f"{'(dispatch)':>11}{'mean call s':>12}{'p90 call s':>11}{'mean disp s':>12}"
          f"{'p90 disp s':>11}")
    for grade in report["grades"]:
        print(f"{grade['grade']:<12}{grade['incidents']:>10}{grade['attended']:>9}"
              f"{_pct(grade['within_target_from_call_share']):>18}"
              f"{_pct(grade['within_target_from_dispatch_share']):>11}"
              f"{_num(grade['attend_from_call_mean_seconds']):>12}"
              f"{_num(grade['attend_from_call_p90_seconds']):>11}"
              f"{_num(grade['attend_from_dispatch_mean_seconds']):>12}"
              f"{_num(grade['attend_from_dispatch_p90_seconds']):>11}")
    c = report["completeness"]
    print(f"completeness: {c['interval_records_final']}/{c['interval_records']} interval and "
          f"{c['attendance_records_final']}/{c['attendance_records']} attendance records "
          f"final; {c['hours_with_no_events']} of {c['hours']} hours with no events")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
