"""The compiled engine (services/figures/_native.py): loaded when built, same as pure Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

import services.figures
import services.figures.engine
from services.figures import _native, checkpoint
from services.simulation.simulator import simulate_events
from tests.chaos import hostile

ROOT = Path(__file__).resolve().parents[3]

# Run the stream's engine over a file of messages; print everything it decided, as JSON.
SCRIPT = """
import sys, orjson, services.figures.engine
from services.figures.report import compute_records
from services.contract.settings import Settings
lines = open(sys.argv[1], "rb").read().splitlines()
report = compute_records(lines, Settings(), wall_us=1_800_000_000_000_000)
sys.stdout.buffer.write(orjson.dumps({
    "native": services.figures.NATIVE, "engine": services.figures.engine.__file__,
    "intervals": report.intervals, "attendance": report.attendance,
    "handlers": report.handlers, "rejected": report.rejected,
    "watermarks": report.watermarks,
    "dead_letters": [[d.reason, d.error, d.room, d.event_id] for d in report.dead_letters],
}, option=orjson.OPT_SORT_KEYS))
"""


def run_engine(path: Path, pure: bool) -> dict:
    env = dict(os.environ, PACESETTER_PURE_PYTHON="1" if pure else "0")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, env=env,
                            capture_output=True, check=True, timeout=300)
    return orjson.loads(result.stdout)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the engine runs as Python")
def test_the_engine_runs_compiled_when_built() -> None:
    # make test builds it first; a build of other sources would not be loaded
    assert _native.is_fresh(), "services/figures/.native is missing or stale: run make native"
    assert services.figures.NATIVE
    # (one build of all the modules: each module's file is named under it, by its package)
    assert _native.NATIVE in Path(services.figures.engine.__file__).parents
    assert checkpoint.__file__.endswith(".so")  # the checkpoints too


def test_compiled_and_pure_python_engines_decide_everything_alike(tmp_path: Path) -> None:
    if not _native.is_fresh():
        pytest.skip("no native build to compare (see test_the_engine_runs_compiled_when_built)")
    events = list(simulate_events(rooms=2, days=1.5, seed=11))
    lines = hostile(events, seed=11)  # duplicates, reordering, broken lines
    # and the same events as 100-event batches, as producers send them (the fast path)
    batches: dict[str, list[bytes]] = defaultdict(list)
    for event in simulate_events(rooms=2, days=1.0, seed=12):
        batches[event["room"] + "-b"].append(orjson.dumps(dict(event, room=event["room"] + "-b")))
    for items in batches.values():
        lines += [b"[" + b",".join(items[i:i + 100]) + b"]" for i in range(0, len(items), 100)]
    path = tmp_path / "messages.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    compiled, pure = run_engine(path, pure=False), run_engine(path, pure=True)
    assert compiled.pop("native") is True and pure.pop("native") is False
    assert compiled.pop("engine").endswith(".so") and pure.pop("engine").endswith(".py")
    assert compiled["intervals"] and compiled["dead_letters"] and compiled["rejected"]
    assert compiled == pure


def test_the_build_is_left_aside_when_switched_off_or_stale(monkeypatch, tmp_path) -> None:
    path: list[str] = []
    monkeypatch.setenv("PACESETTER_PURE_PYTHON", "1")
    assert _native.activate(path) is False and path == []
    monkeypatch.setenv("PACESETTER_PURE_PYTHON", "0")
    monkeypatch.setattr(_native, "STAMP", tmp_path / "stamp.json")  # a build of other sources
    (tmp_path / "stamp.json").write_text('{"engine": "0000"}')
    assert _native.activate(path) is False and path == []
