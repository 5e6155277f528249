"""``pacesetter report``: the interval, attendance and handler records of a file, without Kafka."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.contract.settings import Settings
from services.figures.engine import DeadLetter, Engine


@dataclass
class Report:
    """The latest record of every key, and what was rejected."""

    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    attendance: dict[str, dict[str, Any]] = field(default_factory=dict)
    handlers: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    watermarks: dict[str, str] = field(default_factory=dict)


def compute_records(
    lines: Iterable[bytes], settings: Settings, wall_us: int | None = None
) -> Report:
    """Run the stream's own engine over JSONL lines (or batch messages) in arrival order.

    Args:
        lines: JSONL lines, each an event or a batch (JSON array) of one room.
        settings: the definitions' settings (grace, windows, line profiles).
        wall_us: the wall clock in epoch microseconds (default: now); it only decides the
            ``max_future_seconds`` rule and whether a room is live.
    """
    engine = Engine(settings)
    wall = wall_us if wall_us is not None else time.time_ns() // 1000
    report = Report()
    stores = {"interval": report.intervals, "attendance": report.attendance,
              "handlers": report.handlers}
    for raw in lines:
        raw = raw.strip()
        if raw:
            engine.process(raw, wall)
    out = engine.flush()
    for kind, key, record in out.records:
        stores[kind][key] = record
    report.dead_letters = out.dead_letters
    for name, room in engine.rooms.items():
        for reason, count in room.rejected.items():
            report.rejected[reason] = report.rejected.get(reason, 0) + count
        if room.watermark_us is not None:
            from services.figures.kpis import iso

            report.watermarks[name] = iso(room.watermark_us)
    for reason, count in engine.rejected_unroomed.items():
        report.rejected[reason] = report.rejected.get(reason, 0) + count
    return report
