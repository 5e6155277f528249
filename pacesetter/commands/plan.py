"""Subcommands for schedulers: ``forecast``, ``staffing``, ``backtest`` and ``import``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from services.contract.errors import PacesetterError
from services.contract.settings import load_settings
from services.history.store import HistoryStore


def register(sub: Any) -> None:
    """Add ``forecast``, ``staffing``, ``backtest`` and ``import``."""
    store_help = "history store URL (default PACESETTER_STORE_URL, e.g. sqlite:///data/x.db)"

    p = sub.add_parser("forecast", help="forecast calls and AHT per quarter hour")
    p.add_argument("--room", help="room (omit with --all)")
    p.add_argument("--line", help="line, e.g. 999 or 101 (omit with --all)")
    p.add_argument("--days", type=int, default=14, help="local days ahead (default 14)")
    p.add_argument("--start", help="local date YYYY-MM-DD or RFC 3339 time (default today)")
    p.add_argument("--plot", metavar="FILE.png", help="draw actual, forecast and handlers")
    p.add_argument("--csv", action="store_true", help="every interval as CSV on stdout")
    p.add_argument("--all", action="store_true",
                   help="forecast and plan every room and line in the store, saving the plans")
    p.add_argument("--jobs", type=int, default=None, help="worker processes for --all")
    p.add_argument("--store", help=store_help)
    p.set_defaults(handler=cmd_forecast)

    p = sub.add_parser("staffing", help="staffing plan of a local date (Erlang C / A)")
    p.add_argument("--room", required=True)
    p.add_argument("--line", required=True)
    p.add_argument("--date", required=True, help="local date YYYY-MM-DD (Europe/London)")
    p.add_argument("--csv", action="store_true", help="the plan as CSV on stdout")
    p.add_argument("--store", help=store_help)
    p.set_defaults(handler=cmd_staffing)

    p = sub.add_parser("backtest", help="compare Prophet with the baselines on past weeks")
    p.add_argument("--room", required=True)
    p.add_argument("--line", required=True)
    p.add_argument("--weeks", type=int, default=4, help="weekly origins (default 4)")
    p.add_argument("--tune", action="store_true",
                   help="first tune Prophet's parameters on the same origins (4 more Prophet "
                        "backtests); later backtests and plans keep using the result")
    p.add_argument("--json", action="store_true", help="the whole result as JSON")
    p.add_argument("--store", help=store_help)
    p.set_defaults(handler=cmd_backtest)

    p = sub.add_parser("import", help="history from a telephony system's CSV exports")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    q = kinds.add_parser("intervals", help="columns room,line,interval_start,offered"
                                           "[,aht_seconds]")
    q.add_argument("file")
    q.add_argument("--timezone", help="zone of times without one, e.g. Europe/London")
    q.add_argument("--store", help=store_help)
    q.set_defaults(handler=cmd_import)
    q = kinds.add_parser("calls", help="one row per call, aggregated per 15 minutes")
    q.add_argument("file")
    q.add_argument("--map", dest="mapping", metavar="KEY=COLUMN,…",
                   help="columns of the export: offered_at=Start,answered_at=Answer,"
                        "abandoned_at=Abandon,ended_at=End,line=Queue,room=Site"
                        "[,wrap_seconds=Wrap] (default: the keys themselves)")
    q.add_argument("--timezone", help="zone of times without one, e.g. Europe/London")
    q.add_argument("--store", help=store_help)
    q.set_defaults(handler=cmd_import)
    from pacesetter.commands.imports import register_events

    register_events(kinds)


def _store(args: argparse.Namespace) -> HistoryStore:
    return HistoryStore.open(args.store or load_settings().store_url)


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n}" for n in names if not getattr(args, n)]
    if missing:
        raise PacesetterError(f"give {' and '.join(missing)} (or --all)")


def _fmt(value: Any, places: int = 1, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{places}f}{suffix}"
    return f"{value}{suffix}"


def _local(text: str) -> datetime:
    from services.contract.events import parse_time
    from services.planning.calendar import LONDON

    return parse_time(text).astimezone(LONDON)


def cmd_forecast(args: argparse.Namespace) -> int:
    """Forecast one line (table, CSV, plot) or, with --all, plan every line."""
    from forecasting import service

    settings = load_settings()
    start = service.parse_start(args.start)
    with _store(args) as store:
        if args.all:
            return _forecast_all(store, settings, start, args)
        _need(args, "room", "line")
        outcome = service.forecast_outcome(store, settings, args.room, args.line, start,
                                           args.days, with_plan=bool(args.plot))
        rows = outcome.forecast_rows
        if args.csv:
            _write_csv(rows, service.FORECAST_FIELDS)
        else:
            _print_forecast_days(rows)
            print(_method_line(outcome.method, outcome.backtest, store, args.room, args.line))
        if args.plot:
            from forecasting.plot import plot_forecast

            first = datetime.fromisoformat(rows[0]["interval_start"].replace("Z", "+00:00"))
            last = rows[-1]["interval_end"]
            actual = {r["interval_start"]: float(r["offered"])
                      for r in store.intervals(args.room, args.line,
                                               start=first - timedelta(days=7), end=last)
                      if r.get("offered") is not None}
            path = plot_forecast(args.plot, rows, actual, outcome.plan_rows,
                                 title=f"{args.room} {args.line}: calls per 15 minutes")
            print(f"plot written to {path}", file=sys.stderr)
    return 0


def _forecast_all(store: HistoryStore, settings: Any, start: datetime | None,
                  args: argparse.Namespace) -> int:
    from forecasting import service

    outcomes = service.plan_many(store, settings, None, start, args.days, jobs=args.jobs)
    failed = 0
    for o in outcomes:
        if o.error:
            failed += 1
            print(f"{o.room} {o.line}: {o.error}", file=sys.stderr)
        else:
            wape = (o.backtest or {}).get("methods", {}).get(o.method, {}).get("wape")
            print(f"{o.room} {o.line}: {len(o.plan_rows)} intervals planned with {o.method}"
                  + (f" (backtest WAPE {wape:.1%})" if wape is not None else ""))
    print(f"{len(outcomes) - failed} series planned, {failed} failed")
    return 1 if failed else 0


def _print_forecast_days(rows: list[dict[str, Any]]) -> None:
    days: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        days[_local(row["interval_start"]).date()].append(row)
    print(f"{'date':<15}{'calls':>9}{'peak 15 min':>13}{'at':>7}{'mean AHT':>10}")
    for day, day_rows in days.items():
        total = sum(r["calls"] for r in day_rows)
        peak = max(day_rows, key=lambda r: r["calls"])
        weighted = [(r["aht_seconds"], r["calls"]) for r in day_rows if r["aht_seconds"]]
        calls = sum(c for _, c in weighted)
        aht = sum(a * c for a, c in weighted) / calls if calls else None
        print(f"{day.strftime('%a %Y-%m-%d'):<15}{total:>9.0f}{peak['calls']:>13.1f}"
              f"{_local(peak['interval_start']).strftime('%H:%M'):>7}{_fmt(aht, 0, ' s'):>10}")


def _method_line(method: str, backtest: dict[str, Any] | None, store: HistoryStore,
                 room: str, line: str) -> str:
    from forecasting.methods import DESCRIPTIONS

    if backtest is None:
        saved = store.latest_backtest(room, line)
        backtest = saved[1] if saved else None
    base = method.split("+")[0]
    text = f"method: {DESCRIPTIONS.get(base, base)}"
    if "+reforecast" in method:
        factor = method.split("×")[-1]
        text += f"; today's remaining intervals scaled ×{factor} (actual ÷ forecast)"
    if backtest and base in backtest.get("methods", {}):
        scores = backtest["methods"]
        simple = backtest.get("best_simple") or "seasonal_naive"
        simple_wape = scores.get(simple, {}).get("wape")
        text += (f"; chosen by a {backtest['weeks']}-week backtest: WAPE "
                 f"{scores[base]['wape']:.1%}")
        if simple_wape is not None:
            text += f" (best simple method, {DESCRIPTIONS.get(simple, simple)}: {simple_wape:.1%})"
    else:
        text += " (not backtested: too little history)"
    return text


def _write_csv(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    import csv

    writer = csv.DictWriter(sys.stdout, fieldnames=list(fields), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})


def cmd_staffing(args: argparse.Namespace) -> int:
    """Print (or write as CSV) the staffing plan of a local date, and save it."""
    from forecasting import service

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        raise PacesetterError(f"--date: {args.date!r} is not a date like 2026-11-21") from None
    settings = load_settings()
    with _store(args) as store:
        rows = service.staffing_plan(store, settings, args.room, args.line, day)
        if args.csv:
            sys.stdout.write(service.staffing_csv(rows))
            return 0
        profile = settings.profile(args.line)
        print(f"{args.room} {args.line} on {day:%a %Y-%m-%d}: target "
              f"{profile.service_level_target:.0%} answered in under "
              f"{profile.threshold_seconds:g} s, occupancy at most "
              f"{settings.max_occupancy:.0%}, shrinkage {settings.shrinkage:.0%}")
        print(f"{'local':<7}{'calls':>7}{'upper':>7}{'AHT s':>7}{'req':>5}{'req↑':>6}"
              f"{'roster':>8}{'SL':>7}{'ASA s':>7}{'occ':>6}{'aband':>7}")
        for r in rows:
            print(f"{_local(r['interval_start']).strftime('%H:%M'):<7}{r['calls']:>7.1f}"
                  f"{r['calls_upper']:>7.1f}{_fmt(r['aht_seconds'], 0):>7}"
                  f"{r['required_handlers']:>5}{r['required_handlers_upper']:>6}"
                  f"{r['rostered_handlers']:>8.1f}{_fmt(_pct(r['service_level'])):>7}"
                  f"{_fmt(r['asa_seconds']):>7}{_fmt(_pct(r['occupancy']), 0):>6}"
                  f"{_fmt(_pct(r['abandonment'])):>7}")
        print("req = required handlers (central forecast), req↑ = from the forecast's upper "
              "bound, roster = req / (1 − shrinkage); SL, occupancy and abandonment in %")
        if rows:
            print(_method_line(rows[0]["method"], None, store, args.room, args.line))
    return 0


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100.0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Run the rolling-origin backtest of one line and report WAPE and MASE per method."""
    from forecasting import service
    from forecasting.methods import DESCRIPTIONS

    region = load_settings().region(args.room)
    with _store(args) as store:
        result = service.backtest(store, args.room, args.line, args.weeks, region=region,
                                  tune=args.tune)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    origins = ", ".join(f"{_local(o):%a %d %b}" for o in result["origins"])
    print(f"{args.room} {args.line}: {result['weeks']} weekly origins ({origins}), "
          "each forecasting the next 7 days from local midnight")
    coverage = f"in {result['interval_width']:.0%} interval"
    print(f"{'method':<64}{'WAPE':>8}{'MASE':>8}{coverage:>16}")
    ranked = sorted(result["methods"].items(),
                    key=lambda kv: (kv[1]["wape"] is None, kv[1]["wape"] or 0.0))
    for name, scores in ranked:
        mark = " *" if name == result["chosen"] else ""
        print(f"{DESCRIPTIONS.get(name, name) + mark:<64}{_fmt(_pct(scores['wape']), 1, '%'):>8}"
              f"{_fmt(scores['mase'], 3):>8}{_fmt(_pct(scores['coverage']), 1, '%'):>16}")
    chosen = result["methods"][result["chosen"]]["wape"]
    simple = result.get("best_simple")
    simple_wape = result["methods"][simple]["wape"] if simple else None
    print(f"chosen (*): {result['chosen']} (lowest WAPE); MASE < 1 beats the seasonal naive's "
          "in-sample error")
    if chosen is not None and simple_wape:
        print(f"against the best simple method ({simple}, WAPE {simple_wape:.1%}): "
              f"{(simple_wape - chosen) / simple_wape:+.1%} better; Poisson noise floor "
              f"{_fmt(_pct(result.get('noise_floor')), 1, '%')} (the WAPE of a perfect "
              "forecast of the mean)")
    tuning = result.get("prophet_tuning")
    if tuning:
        print(f"Prophet tuned ({tuning['weeks']}-week backtest to {tuning['history_end']}): "
              + _params(tuning["params"]))
        for variant in tuning.get("variants", []):
            mark = " *" if variant["params"] == tuning["params"] else ""
            print(f"  {_params(variant['params']) + mark:<62}"
                  f"{_fmt(_pct(variant['wape']), 1, '%'):>8}")
    else:
        print("Prophet: default parameters (tune them with --tune)")
    return 0


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(params.items()))


def cmd_import(args: argparse.Namespace) -> int:
    """Import a CSV into the store, reporting bad rows by line number."""
    from services.history.imports import import_calls, import_intervals, parse_mapping

    def report(message: str) -> None:
        print(message, file=sys.stderr)

    with _store(args) as store:
        if args.kind == "intervals":
            counts = import_intervals(store, args.file, report=report, zone=args.timezone)
            print(f"{counts.rows} rows read, {counts.records} intervals imported, "
                  f"{counts.rejected} rows rejected")
        else:
            mapping = parse_mapping(args.mapping)
            counts = import_calls(store, args.file, mapping, report=report, zone=args.timezone)
            print(f"{counts.rows} rows read, {counts.calls} calls aggregated into "
                  f"{counts.records} intervals, {counts.rejected} rows rejected")
    return 1 if counts.rejected else 0

