"""Throughput of the simulator writing JSONL: prints one JSON object (events per second)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.simulation.simulator import write_jsonl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=2)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--out", help="JSONL file to write (default: a temporary file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.out) if args.out else Path(tmp) / "simulated.jsonl"
        timings = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            events = write_jsonl(path, rooms=args.rooms, days=args.days, seed=args.seed)
            timings.append(time.perf_counter() - began)
        size = path.stat().st_size
        calls = sum(1 for line in path.open("rb") if b'"call.offered"' in line)
    best = min(timings)
    print(json.dumps({
        "benchmark": "simulator_write_jsonl",
        "rooms": args.rooms,
        "days": args.days,
        "seed": args.seed,
        "events": events,
        "calls": calls,
        "bytes": size,
        "seconds": round(best, 3),
        "seconds_all_runs": [round(t, 3) for t in timings],
        "events_per_second": round(events / best),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
