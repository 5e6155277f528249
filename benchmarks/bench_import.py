"""Speed and memory of `pacesetter import events` on a generated incident export.

Writes a CSV of N incidents (default 1,000,000; one row each, UK local times as a CAD writes
them, `%d/%m/%Y %H:%M:%S`, some stages missing), then runs the command in a child process
with `--out` and prints one JSON object: rows per second, events per second and the child's
peak memory (max RSS). Run: `.venv/bin/python benchmarks/bench_import.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAPPING = """\
version = 1
[source]
timezone = "Europe/London"
null_values = ["", "NULL"]
room = "bench"
[incidents]
id = "incident_ref"
created = { column = "created", format = "%d/%m/%Y %H:%M:%S" }
dispatched = { column = "dispatched", format = "%d/%m/%Y %H:%M:%S" }
arrived = { column = "arrived", format = "%d/%m/%Y %H:%M:%S" }
closed = { column = "closed", format = "%d/%m/%Y %H:%M:%S" }
grade = { column = "priority", default = "resolution", \
  map = { "1" = "immediate", "2" = "priority", "3" = "scheduled" } }
area = { column = "beat_type", map = { "U" = "urban", "R" = "rural" } }
"""


def generate(path: Path, rows: int, seed: int = 1) -> None:
    """A year-long CAD export: one incident a row, unsorted within each hour."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1)  # noqa: DTZ001 - local wall-clock times, as the export has
    step = 365 * 86400 / rows
    fmt = "%d/%m/%Y %H:%M:%S"
    with open(path, "w", encoding="utf-8") as out:
        out.write("incident_ref,created,dispatched,arrived,closed,priority,beat_type,"
                  "operator,notes\n")
        for i in range(rows):
            created = start + timedelta(seconds=i * step + rng.uniform(0, 600))
            dispatched = created + timedelta(seconds=rng.expovariate(1 / 300))
            arrived = dispatched + timedelta(seconds=rng.expovariate(1 / 700))
            closed = arrived + timedelta(seconds=rng.expovariate(1 / 3600))
            cells = [f"INC{i:09d}", created.strftime(fmt),
                     dispatched.strftime(fmt) if rng.random() < 0.97 else "",
                     arrived.strftime(fmt) if rng.random() < 0.9 else "NULL",
                     closed.strftime(fmt), str(rng.choice("11223334")), rng.choice("UUUR"),
                     f"op{rng.randrange(200)}", "free text the mapping does not read"]
            out.write(",".join(cells) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export, mapping, out = folder / "export.csv", folder / "m.toml", folder / "out.jsonl"
        mapping.write_text(MAPPING, encoding="utf-8")
        began = time.perf_counter()
        generate(export, args.rows)
        generated = time.perf_counter() - began
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pacesetter.cli", "import", "events", "--mapping",
             str(mapping), str(export), "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - began
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        events = sum(1 for _ in open(out, "rb")) if out.exists() else 0
        size_mb = export.stat().st_size / 1e6
    result = {
        "benchmark": "import_events",
        "rows": args.rows,
        "export_mb": round(size_mb, 1),
        "events": events,
        "exit_status": done.returncode,
        "seconds": round(seconds, 2),
        "rows_per_second": round(args.rows / seconds),
        "events_per_second": round(events / seconds),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "generate_seconds": round(generated, 1),
        "summary": done.stdout.strip().splitlines(),
    }
    if done.returncode not in (0, 1):
        result["error"] = done.stderr[-2000:]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
