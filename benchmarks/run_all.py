"""Every benchmark, one after another, and the issue's goals beside what was measured.

Runs bench_simulator.py, bench_stream.py, bench_api.py, bench_forecast.py, bench_import.py,
bench_rooms.py, bench_history.py, bench_rebalance.py and bench_national.py as child processes
(one at a time: they would skew each other), takes the last JSON object each prints, and prints
one combined JSON object: ``{"stream", "api", "forecast", "simulator", "import", "rooms",
"history", "rebalance", "national", "machine", "goals"}``.

A goal is ``met`` only when its figure meets the target AND the run held the goal's conditions
(probes not lost, requests not failed and the rate reached, no forecast series failed, the full
size: a --quick or smaller run is never met); its ``note`` says which condition did not hold.
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
    "national": ("bench_national.py", (2400, 900), []),
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
         note: str | None = None, unmet: list[str | None] | tuple[str | None, ...] = ()
         ) -> dict[str, Any]:
    """One goal's entry. ``met`` is the target itself (e.g. p99 below the line); ``unmet`` lists
    conditions of the measurement that did not hold (None where one did): any of them makes
    the goal ``met: false``, listed under ``not_met`` and said in the note."""
    reasons = [reason for reason in unmet if reason]
    entry: dict[str, Any] = {"goal": text, "measured": measured, "unit": unit,
                             "met": bool(met) and measured is not None and not reasons,
                             "source": source}
    if reasons:
        entry["not_met"] = reasons
    if note:
        entry["about"] = note
    compose_note(entry)
    return entry


def compose_note(entry: dict[str, Any]) -> None:
    """``entry['note']``: not measured, the conditions not met, then what the figure is."""
    notes = []
    if entry["measured"] is None:
        notes.append("not measured: see the benchmark's error")
    if entry.get("not_met"):
        notes.append("not met: " + "; ".join(entry["not_met"]))
    if entry.get("about"):
        notes.append(entry["about"])
    if notes:
        entry["note"] = "; ".join(notes)


def number(value: Any) -> float | None:
    """``value`` when it is a number (not a bool), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


#: an open-loop run counts as "at the rate" when it achieved this share of the target
RATE_TOLERANCE = 0.95


def rate_reached(figures: Any, achieved_key: str, target: float, what: str) -> str | None:
    """Why a run did not reach ``target`` per second (None when it did)."""
    achieved = number(dig(figures, achieved_key))
    if achieved is None:
        return f"achieved {what}/s not reported"
    if achieved < RATE_TOLERANCE * target:
        return f"achieved {achieved:g} {what}/s, below {RATE_TOLERANCE:.0%} of {target:g}"
    return None


def freshness_goals(api: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in ("200", "2000"):
        figures = dig(api, "freshness", rate)
        p99 = number(dig(figures, "p99_ms"))
        lost = dig(figures, "probes_lost")
        unmet: list[str | None] = []
        if figures is not None:
            unmet = [
                "probes_lost not reported: probes may have been lost unseen" if lost is None
                else (f"{lost} probes lost (never seen in the stream)" if lost else None),
                rate_reached(figures, "achieved_events_per_second", int(rate), "events"),
            ]
        out[f"freshness_{rate}"] = goal(
            f"freshness p99 < 250 ms at {int(rate):,} events/s", p99, "ms",
            p99 is not None and p99 < 250, f"api.freshness.{rate}.p99_ms", unmet=unmet,
            note="event produced to its effect in /live (server-sent events)")
    return out


def latency_goals(api: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for endpoint in ("live", "intervals"):
        figures = dig(api, "latency", endpoint)
        p99 = number(dig(figures, "p99_ms"))
        target = dig(figures, "target_requests_per_second")
        failed = dig(figures, "failed")
        unmet: list[str | None] = []
        if figures is not None:
            unmet = [
                None if target == 500 else f"scheduled at {target} requests/s, not 500",
                "failed requests not reported" if failed is None
                else (f"{failed} requests failed (errors, timeouts or non-2xx)" if failed
                      else None),
                rate_reached(figures, "achieved_requests_per_second", 500, "requests"),
            ]
        out[f"api_latency_{endpoint}"] = goal(
            f"API p99 < 50 ms at 500 requests/s: /{endpoint}", p99, "ms",
            p99 is not None and p99 < 50, f"api.latency.{endpoint}.p99_ms", unmet=unmet)
    return out


def forecast_goals(forecast: Any) -> dict[str, Any]:
    ok = isinstance(forecast, dict) and "error" not in forecast
    series = forecast.get("series") if ok else None
    failed = forecast.get("failed_series") if ok else None

    def conditions(phase: str) -> list[str | None]:
        if not ok:
            return []
        count = dig(failed, phase)
        return [None if series == 86 else f"measured for {series} series, not 86",
                f"failed series not reported ({phase} run)" if count is None
                else (f"{count} series failed ({phase} run)" if count else None)]

    warm = number(forecast.get("warm_seconds")) if ok else None
    if ok and warm is None:
        warm = find_number(forecast, ("warm",))
    out: dict[str, Any] = {}
    out["forecasting_staffing"] = goal(
        "forecasting + staffing for 86 series < 60 s", warm, "s",
        warm is not None and warm < 60, "forecast (warm run)", unmet=conditions("warm"))
    # Judged on wall time, as a scheduler waits for it; the CPU-seconds / cores figure beside
    # it tells what the run would take on idle cores when the machine was shared.
    replan = number(forecast.get("warm_seconds")) if ok else None
    reselect = number(forecast.get("cold_seconds")) if ok else None

    def idle(name: str) -> str:
        return f"{forecast.get(name)} s of CPU per core (the time on idle cores)"

    out["replan"] = goal("daily re-plan of 86 series < 30 s", replan, "s",
                         replan is not None and replan < 30, "forecast.warm_seconds",
                         idle("warm_idle_seconds") if ok else None, unmet=conditions("warm"))
    out["reselection"] = goal("weekly re-selection with backtests, 86 series < 60 s", reselect,
                              "s", reselect is not None and reselect < 60,
                              "forecast.cold_seconds",
                              idle("cold_idle_seconds") if ok else None,
                              unmet=conditions("cold"))
    accuracy = forecast.get("accuracy") if ok else None
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
    return out


def goals(results: dict[str, Any], quick: bool) -> dict[str, Any]:
    stream, api = results.get("stream") or {}, results.get("api") or {}
    out: dict[str, Any] = {}
    ratio = number(dig(stream, "stream_throughput", "ratio_to_ceiling"))
    out["throughput"] = goal("worker throughput ≥ 50 % of the raw ceiling (same process tuning)",
                             ratio, "ratio", ratio is not None and ratio >= 0.50,
                             "stream.stream_throughput.ratio_to_ceiling")
    # A rebuild restores the partition's checkpoint and replays what followed it: the goal is
    # judged on that, the full replay (no checkpoint) shown beside it.
    rebuild = number(dig(stream, "stream_throughput",
                         "worker_rebuild_from_checkpoint_events_per_second"))
    replay = number(dig(stream, "stream_throughput", "worker_replay_events_per_second"))
    out["rebuild"] = goal(
        "rebuild of one worker from its checkpoints ≥ 300,000 events/s of history", rebuild,
        "events/s", rebuild is not None and rebuild >= 300_000,
        "stream.stream_throughput.worker_rebuild_from_checkpoint_events_per_second",
        f"from checkpoints, restore included; the full replay without one: "
        f"{f'{replay:,.0f}' if replay is not None else 'not measured'} events/s "
        "(stream.stream_throughput.worker_replay_events_per_second)")
    out.update(freshness_goals(api))
    recovery = number(dig(stream, "recovery", "restart_to_caught_up_seconds"))
    out["recovery"] = goal("recovery < 60 s", recovery, "s",
                           recovery is not None and recovery < 60,
                           "stream.recovery.restart_to_caught_up_seconds")
    out.update(latency_goals(api))
    history = results.get("history") or {}
    for database in ("sqlite", "postgresql"):
        for endpoint in ("intervals", "attendance"):
            p99 = dig(history, "latency", database, endpoint, "p99_ms")
            out[f"history_{endpoint}_{database}"] = goal(
                f"history: p99 of a month of /{endpoint} from the store at 50 requests/s "
                f"({database})", p99, "ms", p99 is not None,
                f"history.latency.{database}.{endpoint}.p99_ms",
                "measured, no target set; per line/grade and uncached figures beside it")
    national = results.get("national") or {}
    rss = number(dig(national, "peak_rss_mb"))
    unmet: list[str | None] = []
    if "error" not in national and national:
        days, rooms = number(national.get("days")), number(national.get("rooms"))
        unmet = [None if days is not None and days >= 7 else f"measured over {days} days, not 7",
                 None if rooms is not None and rooms >= 43 else f"measured for {rooms} rooms, "
                 "not 43",
                 None if national.get("complete") is True
                 else "the worker did not apply every event of the run"]
    out["national_state"] = goal(
        "peak RSS of one worker process holding the national week < 2 GB", rss, "MB",
        rss is not None and rss < 2048, "national.peak_rss_mb", unmet=unmet,
        note="the larger VmHWM of a real `pacesetter worker` consuming, then one rebuilding, "
             "the simulated national rooms")
    out.update(forecast_goals(results.get("forecast") or {}))
    rebalance = results.get("rebalance") or {}
    loss = number(dig(rebalance, "worker_loss", "seconds_until_exact"))
    unmet = []
    if "error" not in rebalance and rebalance:
        days = number(rebalance.get("days_per_room"))
        unmet = [None if days is not None and days >= 7
                 else f"{days} simulated days per room, not a week",
                 None if dig(rebalance, "worker_loss", "workers") == 3
                 else "not one of three workers killed"]
    out["worker_loss"] = goal("one of three workers killed: its rooms exact again < 15 s", loss,
                              "s", loss is not None and loss < 15,
                              "rebalance.worker_loss.seconds_until_exact", unmet=unmet,
                              note="from the SIGKILL until the records of every room of its "
                                   "partitions equal the oracle's")
    unmoved = dig(rebalance, "join", "unmoved_lag_seconds_p99")
    out["rebalance_unmoved_freshness"] = goal(
        "a third worker joins: rooms whose partition did not move stay under 1 s", unmoved, "s",
        unmoved is not None and unmoved < 1, "rebalance.join.unmoved_lag_seconds_p99",
        "pacesetter_worker_lag_seconds of the kept partitions, sampled every 0.2 s")
    if quick:
        for entry in out.values():
            entry["met"] = False
            entry["not_met"] = [*entry.get("not_met", []),
                                "--quick run, shorter or smaller than the goal's conditions"]
            compose_note(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="pass --quick to the benchmarks that accept it (smaller runs)")
    parser.add_argument("--only",
                        help=f"comma-separated subset: {','.join(BENCHMARKS)}")
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
                "rebalance": results["rebalance"], "national": results["national"],
                "machine": machine, "goals": goals(results, args.quick)}
    print(json.dumps(combined, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
