"""Time forecasting and staffing for 86 series: 43 rooms × (999, 101), 8 weeks of history, 14 days.

Run: .venv/bin/python benchmarks/bench_forecast.py [--rooms 43] [--weeks 8] [--days 14] [--jobs N]

Prints wall time and CPU time: the machine is shared, so CPU-seconds / cores is the figure on
idle cores. ujson (a dependency) makes stanio, CmdStan's data writer, several times faster.

Phases, each timed on its own:
  cold  method selection (4-week rolling backtest of Prophet and both baselines, per series)
        plus the forecast and the staffing plan: what the first run of a week costs;
  warm  forecast + staffing plan with the week's backtests already in the store: the
        everyday run (the figure the issue's target is about).
  public  the rolling-origin backtest (last four weekly origins, 7-day horizon) on the two
        real public series in tests/data (Seattle 911 per 15 min, NYC EMS per hour): WAPE of
        the chosen method and of every simple method, beside the Poisson noise floor.

Ends with one JSON object: ``warm_seconds``, ``cold_seconds``, ``series``, ``failed_series``
(per phase run, how many series' plans failed; the first ten errors under ``failures``) and
``accuracy``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pandas as pd

from forecasting import service
from forecasting.backtest import backtest_series
from forecasting.history import MAX_HISTORY_WEEKS
from forecasting.public_data import SERIES, load_public
from forecasting.simple import SIMPLE_METHODS
from forecasting.synthetic import synthetic_intervals
from services.contract.settings import Settings
from services.history.store import HistoryStore
from services.planning.calendar import local_day_bounds


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (pool workers, CmdStan runs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def public_accuracy() -> dict[str, dict[str, object]]:
    """Backtest every method on the public series; print and return the figures."""
    out: dict[str, dict[str, object]] = {}
    for name in SERIES:
        series, region = load_public(name)
        series = series[series.index >= series.index[-1] - pd.Timedelta(weeks=MAX_HISTORY_WEEKS)]
        t = time.perf_counter()
        result = backtest_series(series, weeks=4, region_code=region)
        took = time.perf_counter() - t
        methods = result["methods"]
        chosen, simple = result["chosen"], result["best_simple"]
        improvement = 1 - methods[chosen]["wape"] / methods[simple]["wape"]
        print(f"public {name} ({result['resolution_minutes']} min, {region}, origins "
              f"{result['origins'][0][:10]} … {result['origins'][-1][:10]}; {took:.1f} s): "
              f"chosen {chosen} WAPE {methods[chosen]['wape']:.4f} (coverage "
              f"{methods[chosen]['coverage']:.3f}), best simple {simple} "
              f"{methods[simple]['wape']:.4f}: {improvement:+.1%}; Poisson noise floor "
              f"{result['noise_floor']:.4f}")
        for method in (chosen, *SIMPLE_METHODS):
            if method in methods:
                scores = methods[method]
                print(f"  {method:<18} WAPE {scores['wape']:.4f}  MASE {scores['mase']:.3f}  "
                      f"coverage {scores['coverage']:.3f}")
        out[name] = {
            "chosen": chosen, "chosen_wape": methods[chosen]["wape"],
            "chosen_coverage": methods[chosen]["coverage"], "best_simple": simple,
            "best_simple_wape": methods[simple]["wape"], "improvement": round(improvement, 4),
            "noise_floor": result["noise_floor"], "seconds": round(took, 1),
            "wape": {m: s["wape"] for m, s in methods.items()},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=43)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-cold", action="store_true", help="only the warm phase")
    parser.add_argument("--skip-public", action="store_true",
                        help="no backtests on the public series")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    now = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    start = local_day_bounds(now.date())[0]
    history_start = start - timedelta(weeks=args.weeks)
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore.open(f"sqlite:///{tmp}/bench.db")
        t0 = time.perf_counter()
        series = []
        for r in range(args.rooms):
            for line in ("999", "101"):
                room = f"room{r:02d}"
                store.upsert_intervals(synthetic_intervals(
                    room, line, history_start, args.weeks * 7, seed=r * 2 + (line == "101")))
                series.append((room, line))
        print(f"setup: {len(series)} series × {args.weeks} weeks of 15-min history "
              f"in {time.perf_counter() - t0:.1f} s")
        settings = Settings()

        idle: dict[str, float] = {}
        #: per phase, the series whose plan failed (room/line: error): any fails the goal
        failures: dict[str, dict[str, str]] = {}

        def run(label: str) -> float:
            service.clear_cache()
            load = os.getloadavg()[0]
            t, cpu = time.perf_counter(), cpu_seconds()
            outcomes = service.plan_many(store, settings, series, start, args.days, now=now,
                                         jobs=args.jobs, progress=False)
            took, used = time.perf_counter() - t, cpu_seconds() - cpu
            failed = [o for o in outcomes if o.error]
            rows = sum(len(o.plan_rows) for o in outcomes)
            methods: dict[str, int] = {}
            for o in outcomes:
                methods[o.method] = methods.get(o.method, 0) + 1
            print(f"{label}: {len(series)} series, {args.days} days ahead, {rows} plan rows "
                  f"saved, {len(failed)} failed, methods {methods}: {took:.1f} s "
                  f"with {args.jobs} processes; {used:.0f} CPU-seconds (workers and CmdStan "
                  f"included) = {used / args.jobs:.1f} s on {args.jobs} idle cores; "
                  f"load average {load:.1f} at the start")
            idle[label.split()[0]] = used / args.jobs
            failures[label.split()[0]] = {f"{o.room}/{o.line}": str(o.error) for o in failed}
            return took

        cold = None if args.skip_cold else run("cold (backtest + forecast + staffing)")
        warm = run("warm (forecast + staffing, backtests cached)")
        print(f"RESULT forecasting+staffing, {len(series)} series: {warm:.1f} s warm"
              + (f", {cold:.1f} s cold" if cold is not None else ""))
        store.close()
    accuracy = {} if args.skip_public else public_accuracy()
    # On a shared machine wall time measures the neighbours; CPU-seconds / cores is the time
    # on idle cores, which the goals are judged by.
    print(json.dumps({"series": len(series), "warm_seconds": round(warm, 1),
                      "cold_seconds": None if cold is None else round(cold, 1),
                      "warm_idle_seconds": round(idle["warm"], 1),
                      "cold_idle_seconds": round(idle["cold"], 1) if "cold" in idle else None,
                      "jobs": args.jobs,
                      "failed_series": {phase: len(f) for phase, f in failures.items()},
                      "failures": {phase: dict(list(f.items())[:10])
                                   for phase, f in failures.items() if f},
                      "accuracy": accuracy}, indent=2))


if __name__ == "__main__":
    main()
