"""Every benchmark, one after another, and the issue's goals beside what was measured.

Runs bench_simulator.py, bench_stream.py, bench_api.py, bench_forecast.py, bench_import.py,
bench_rooms.py, bench_history.py and bench_rebalance.py as child processes (one at a time: they
would skew each other), takes the last JSON object each prints, and prints one combined JSON
object: ``{"stream", "api", "forecast", "simulator", "import", "rooms", "history", "rebalance",
"machine", "goals"}``.
A benchmark that is missing, fails or times out is reported as ``{"error": ...}``; the rest
still run. ``make bench`` runs this. Run: `.venv/bin/python benchmarks/run_all.py [--quick]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name in the output -> script, seconds allowed (full, quick), extra flags when quick
#: (used only when the script accepts them and has no --quick of its own)
BENCHMARKS: dict[str, tuple[str, tuple[float, float], list[tuple[str, str | None]]]] = {
    "simulator": ("bench_simulator.py", (900, 300), [("--repeat", "1")]),
    "stream": ("bench_stream.py", (5400, 1800), []),
    "api": ("bench_api.py", (1200, 600), []),
    "forecast": ("bench_forecast.py", (3600, 1800), [("--skip-cold", None)]),
    "import": ("bench_import.py", (1800, 600), [("--rows", "200000")]),
    "rooms": ("bench_rooms.py", (900, 450), []),
    "history": ("bench_history.py", (1200, 600), []),
    "rebalance": ("bench_rebalance.py", (1800, 600), []),
}


def accepted_flags(script: Path) -> set[str]:
    """The long options a script's ``--help`` lists."""
    try:
        shown = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return set()
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", shown.stdout))


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last top-level JSON object in ``text`` (one starting at the beginning of a line)."""
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"(?m)^\{", text)]
    for start in reversed(starts):
        try:
            value, _end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def result_line(text: str) -> dict[str, Any] | None:
    """bench_forecast.py's figures from its ``RESULT`` line, when it prints no JSON."""
    lines = [ln for ln in text.splitlines() if ln.startswith("RESULT")]
    if not lines:
        return None
    line = lines[-1]
    out: dict[str, Any] = {"parsed_from": line,
                           "output": [ln for ln in text.splitlines() if ln.strip()][-6:]}
    for phase in ("warm", "cold"):
        found = re.search(rf"([0-9]+(?:\.[0-9]+)?) s {phase}", line)
        if found:
            out[f"{phase}_seconds"] = float(found.group(1))
    series = re.search(r"([0-9]+)[- ]series", line)
    if series:
        out["series"] = int(series.group(1))
    return out


def run(name: str, quick: bool) -> dict[str, Any]:
    """Run one benchmark; its JSON, or an ``error`` saying what went wrong."""
    script_name, (full_timeout, quick_timeout), quick_extra = BENCHMARKS[name]
    script = HERE / script_name
    if not script.exists():
        return {"error": f"{script.relative_to(ROOT)} is missing"}
    argv = [sys.executable, str(script)]
    if quick:
        flags = accepted_flags(script)
        if "--quick" in flags:
            argv.append("--quick")
        else:
            for flag, value in quick_extra:
                if flag in flags:
                    argv += [flag] if value is None else [flag, value]
    timeout = quick_timeout if quick else full_timeout
    print(f"[run_all] {name}: {' '.join(Path(a).name if a == str(script) else a for a in argv[1:])}"
          f" (up to {timeout:g} s)", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        return {"error": f"timed out after {timeout:g} s", "command": argv[1:],
                "stderr_tail": stderr[-2000:]}
    finally:
        _kill_group(proc)  # children a benchmark left behind
    seconds = round(time.monotonic() - started, 1)
    print(f"[run_all] {name}: exit {proc.returncode} after {seconds} s", file=sys.stderr,
          flush=True)
    found = last_json_object(stdout)
    if found is None and name == "forecast":
        found = result_line(stdout)
    if proc.returncode != 0 or found is None:
        return {"error": f"exit code {proc.returncode}" if proc.returncode != 0
                else "printed no JSON object", "command": argv[1:],
                "stdout_tail": stdout[-1500:], "stderr_tail": stderr[-2500:]}
    found.setdefault("_run", {"command": [Path(a).name if a == str(script) else a
                                          for a in argv[1:]], "seconds": seconds})
    return found


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def dig(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]…``, or None where something is missing."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def find_number(data: Any, must: tuple[str, ...]) -> float | None:
    """The first number under a key containing every word of ``must`` (depth first)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if all(word in key for word in must) and isinstance(value, int | float):
                return float(value)
        for value in data.values():
            found = find_number(value, must)
            if found is not None:
                return found
    return None


def goal(text: str, measured: Any, unit: str, met: bool | None, source: str,
         note: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"goal": text, "measured": measured, "unit": unit,
                             "met": bool(met) and measured is not None, "source": source}
    if measured is None:
        note = "not measured: see the benchmark's error" + (f"; {note}" if note else "")
    if note:
        entry["note"] = note
    return entry


def goals(results: dict[str, Any], quick: bool) -> dict[str, Any]:
    stream, api, forecast = results["stream"], results["api"], results["forecast"]
    out: dict[str, Any] = {}
    ratio = dig(stream, "stream_throughput", "ratio_to_ceiling")
    out["throughput"] = goal("worker throughput ≥ 25 % of the raw ceiling", ratio, "ratio",
                             ratio is not None and ratio >= 0.25,
                             "stream.stream_throughput.ratio_to_ceiling")
    for rate in ("200", "2000"):
        p99 = dig(api, "freshness", rate, "p99_ms")
        out[f"freshness_{rate}"] = goal(
            f"freshness p99 < 1 s at {int(rate):,} events/s", p99, "ms",
            p99 is not None and p99 < 1000, f"api.freshness.{rate}.p99_ms",
            "event produced to its effect in /live (server-sent events)")
    recovery = dig(stream, "recovery", "restart_to_caught_up_seconds")
    out["recovery"] = goal("recovery < 60 s", recovery, "s",
                           recovery is not None and recovery < 60,
                           "stream.recovery.restart_to_caught_up_seconds")
    for endpoint in ("live", "intervals"):
        p99 = dig(api, "latency", endpoint, "p99_ms")
        rate = dig(api, "latency", endpoint, "target_requests_per_second")
        out[f"api_latency_{endpoint}"] = goal(
            f"API p99 < 50 ms at 500 requests/s: /{endpoint}", p99, "ms",
            p99 is not None and p99 < 50 and rate == 500,
            f"api.latency.{endpoint}.p99_ms",
            None if rate in (None, 500) else f"measured at {rate} requests/s, not 500")
    history = results.get("history") or {}
    for database in ("sqlite", "postgresql"):
        for endpoint in ("intervals", "attendance"):
            p99 = dig(history, "latency", database, endpoint, "p99_ms")
            out[f"history_{endpoint}_{database}"] = goal(
                f"history: p99 of a month of /{endpoint} from the store at 50 requests/s "
                f"({database})", p99, "ms", p99 is not None,
                f"history.latency.{database}.{endpoint}.p99_ms",
                "measured, no target set; per line/grade and uncached figures beside it")
    rss = dig(stream, "national_memory", "peak_rss_mb")
    days_note = None
    what = str(dig(stream, "national_memory", "what") or "")
    if not what.startswith("7 days") and rss is not None:
        days_note = f"measured over {what.split(' of ')[0]} of national volume, not 7 days"
    out["national_state"] = goal("national state < 2 GB", rss, "MB",
                                 rss is not None and rss < 2048,
                                 "stream.national_memory.peak_rss_mb", days_note)
    warm = None if "error" in forecast else (
        forecast.get("warm_seconds") if isinstance(forecast.get("warm_seconds"), int | float)
        else find_number(forecast, ("warm",)))
    series = forecast.get("series") if isinstance(forecast, dict) else None
    out["forecasting_staffing"] = goal(
        "forecasting + staffing for 86 series < 60 s", warm, "s",
        warm is not None and warm < 60, "forecast (warm run)",
        None if series in (None, 86) else f"measured for {series} series")
    # Judged on wall time, as a scheduler waits for it; the CPU-seconds / cores figure beside
    # it tells what the run would take on idle cores when the machine was shared.
    replan = None if "error" in forecast else forecast.get("warm_seconds")
    reselect = None if "error" in forecast else forecast.get("cold_seconds")

    def idle(name: str) -> str:
        return f"{forecast.get(name)} s of CPU per core (the time on idle cores)"

    out["replan"] = goal("daily re-plan of 86 series < 30 s", replan, "s",
                         isinstance(replan, int | float) and replan < 30,
                         "forecast.warm_seconds", idle("warm_idle_seconds"))
    out["reselection"] = goal("weekly re-selection with backtests, 86 series < 60 s", reselect,
                              "s", isinstance(reselect, int | float) and reselect < 60,
                              "forecast.cold_seconds", idle("cold_idle_seconds"))
    accuracy = forecast.get("accuracy") if isinstance(forecast, dict) else None
    for name, least in (("nyc", 0.05), ("seattle", 0.0)):
        figures = (accuracy or {}).get(name) or {}
        improvement = figures.get("improvement")
        coverage = figures.get("chosen_coverage")
        out[f"forecast_accuracy_{name}"] = goal(
            f"{name}: chosen WAPE ≥ {least:.0%} better than the best simple method, "
            "90 % intervals cover 85–95 %", improvement, "fraction better",
            improvement is not None and improvement >= least
            and coverage is not None and 0.85 <= coverage <= 0.95,
            f"forecast.accuracy.{name}.improvement",
            None if not figures else
            f"chosen {figures.get('chosen')} WAPE {figures.get('chosen_wape')}, best simple "
            f"{figures.get('best_simple')} {figures.get('best_simple_wape')}, noise floor "
            f"{figures.get('noise_floor')}, coverage {coverage}")
    rebalance = results["rebalance"]
    loss = dig(rebalance, "worker_loss", "seconds_until_caught_up")
    out["worker_loss"] = goal("one of three workers killed: caught up again < 15 s", loss, "s",
                              loss is not None and loss < 15,
                              "rebalance.worker_loss.seconds_until_caught_up")
    unmoved = dig(rebalance, "join", "unmoved_lag_seconds_p99")
    out["rebalance_unmoved_freshness"] = goal(
        "a third worker joins: rooms whose partition did not move stay under 1 s", unmoved, "s",
        unmoved is not None and unmoved < 1, "rebalance.join.unmoved_lag_seconds_p99",
        "pacesetter_worker_lag_seconds of the kept partitions, sampled every 0.2 s")
    if quick:
        for entry in out.values():
            entry["note"] = ((entry.get("note") + "; ") if entry.get("note") else "") + \
                "--quick run: shorter or smaller than the goal's conditions"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="pass --quick to the benchmarks that accept it (smaller runs)")
    parser.add_argument("--only",
                        help="comma-separated subset: "
                             "simulator,stream,api,forecast,import,rooms,history,rebalance")
    args = parser.parse_args()
    chosen = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from "
                     f"{', '.join(BENCHMARKS)}")
    machine = {"cores": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(),
               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    results: dict[str, Any] = {}
    for name in BENCHMARKS:
        results[name] = run(name, args.quick) if name in chosen else {"error": "not run (--only)"}
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    combined = {"stream": results["stream"], "api": results["api"],
                "forecast": results["forecast"], "simulator": results["simulator"],
                "import": results["import"], "rooms": results["rooms"],
                "history": results["history"],
                "rebalance": results["rebalance"],
                "machine": machine, "goals": goals(results, args.quick)}
    print(json.dumps(combined, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
