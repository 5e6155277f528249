"""History sink: CPU of its writer thread per record written, on SQLite and on PostgreSQL.

The worker hands its final records to the history sink, whose thread writes them to the store;
the thread holds the GIL while it prepares rows, so its CPU is taken from the event loop. This
feeds a sink one room's records of a month (3 lines of intervals, 4 grades of attendance,
handlers: what the stream finalises) the way the worker does during the throughput step
(``--put`` records at a time, as they close, with a pause between hand-overs so each is written
as it comes), and reads the writer thread's own CPU clock.

Uses only the sink's and the store's public interface, so the same script measures an older
checkout for a before/after comparison. Prints one JSON object; figures are measured, never
asserted. Run: `.venv/bin/python benchmarks/bench_history_sink.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_history import month_of_records  # noqa: E402

from services.history.sink import HistorySink  # noqa: E402
from services.history.store import HistoryStore  # noqa: E402


def thread_cpu(name: str) -> float:
    """CPU seconds the live thread called ``name`` has used."""
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    raise LookupError(f"no thread {name!r}")


def sink_run(store_url: str, spool: Path, records: list[tuple[str, dict[str, Any]]],
             put: int, pause: float) -> dict[str, Any]:
    """One pass of ``records`` through a new sink into an empty store."""
    store = HistoryStore.open(store_url, upgrade=True)
    try:
        sink = HistorySink(store, spool)
        before = thread_cpu("history-sink")
        started = time.monotonic()
        for start in range(0, len(records), put):
            sink.put(records[start:start + put])
            time.sleep(pause)
        drained = sink.drain(600)
        cpu = thread_cpu("history-sink") - before
        wall = time.monotonic() - started
        sink.close()
        return {"records": len(records), "drained": drained, "sink_cpu_s": round(cpu, 4),
                "us_per_record": round(cpu / len(records) * 1e6, 2),
                "wall_s": round(wall, 2), "stored_intervals": len(store.intervals("north"))}
    finally:
        store.close()


def measure(store_url: str | None, reset: Any, records: list[tuple[str, dict[str, Any]]],
            put: int, pause: float, repeat: int) -> dict[str, Any]:
    """The median run of ``repeat`` (each on a fresh store), and every run's figure."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            if reset is not None:
                reset()
            url = store_url or f"sqlite:///{tmp}/history.db"
            runs.append(sink_run(url, Path(tmp) / "spool", records, put, pause))
    runs.sort(key=lambda r: r["us_per_record"])
    median = dict(runs[len(runs) // 2])
    median["runs_us_per_record"] = [r["us_per_record"] for r in runs]
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7 days, not 31, and 3 runs, not 5")
    parser.add_argument("--put", type=int, default=300,
                        help="records handed over at a time (the worker's flushes: ~300)")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between hand-overs")
    args = parser.parse_args()
    days, repeat = (7, 3) if args.quick else (31, 5)
    records = month_of_records(days)
    result: dict[str, Any] = {"days": days, "put": args.put, "quick": args.quick}
    result["sqlite"] = measure(None, None, records, args.put, args.pause, repeat)
    try:
        from tests.postgres import PostgresServer

        server = PostgresServer()
    except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
        result["postgresql"] = {"error": f"no PostgreSQL server: {exc}"}
    else:
        try:
            result["postgresql"] = measure(server.url, server.reset, records, args.put,
                                           args.pause, repeat)
        finally:
            server.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
