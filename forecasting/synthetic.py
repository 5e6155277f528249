"""Synthetic final interval records with UK control-room demand shapes, for tests and benchmarks."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from services.planning.calendar import INTERVAL, LocalCalendar, utc_range

# Relative demand by local hour (0–23), loosely after published force call profiles:
# 999 peaks in the evening and, at weekends, into the small hours; 101 is a daytime line.
_SHAPES = {
    ("999", "work"): [0.55, 0.45, 0.38, 0.32, 0.28, 0.27, 0.32, 0.45, 0.62, 0.75, 0.85, 0.92,
                      0.97, 1.00, 1.02, 1.06, 1.12, 1.18, 1.20, 1.17, 1.10, 1.00, 0.85, 0.70],
    ("999", "rest"): [0.95, 0.90, 0.80, 0.62, 0.45, 0.36, 0.34, 0.38, 0.48, 0.62, 0.78, 0.90,
                      0.98, 1.02, 1.04, 1.06, 1.10, 1.14, 1.17, 1.16, 1.12, 1.06, 1.00, 0.95],
    ("101", "work"): [0.22, 0.15, 0.11, 0.09, 0.08, 0.09, 0.16, 0.45, 0.95, 1.35, 1.50, 1.52,
                      1.45, 1.42, 1.40, 1.36, 1.28, 1.15, 1.00, 0.88, 0.75, 0.60, 0.45, 0.32],
    ("101", "rest"): [0.30, 0.22, 0.16, 0.12, 0.10, 0.10, 0.13, 0.25, 0.50, 0.80, 1.00, 1.08,
                      1.10, 1.08, 1.05, 1.02, 0.98, 0.92, 0.85, 0.78, 0.68, 0.56, 0.45, 0.36],
}
_WEEKLY = {  # Monday first
    "999": [0.98, 0.96, 0.97, 1.00, 1.07, 1.14, 1.04],
    "101": [1.15, 1.04, 1.00, 0.98, 0.94, 0.66, 0.60],
}
_HOLIDAY = {"999": 1.06, "101": 0.62}
_AHT = {"999": 185.0, "101": 390.0}
_ABANDON = {"999": 0.02, "101": 0.09}
_ASA = {"999": 4.0, "101": 95.0}
_ABANDON_WAIT = {"999": 12.0, "101": 150.0}


def synthetic_intervals(room: str, line: str, start: datetime, days: int, seed: int,
                        daily_calls: float | None = None) -> list[dict[str, object]]:
    """Final interval records (API.md shape) of ``days`` days of synthetic demand.

    Counts are Poisson around a smooth local-time shape (weekday and weekend shapes, a weekly
    pattern, England and Wales bank holidays, day-to-day variation of a few per cent and a
    slight trend); handling times, abandons and waits vary with the counts.

    Args:
        room: room name.
        line: ``"999"``, ``"101"`` or another line (which gets the 101 shapes).
        start: aware UTC start (floored to the quarter hour).
        days: days of history.
        seed: random seed (the same seed gives the same records).
        daily_calls: mean calls per day; by default a room-sized figure from the seed.

    Returns:
        Records with ``final: true`` for every interval with at least one call offered.
    """
    rng = np.random.default_rng(seed)
    kind = "999" if line == "999" else "101"
    if daily_calls is None:
        daily_calls = float(rng.uniform(500, 2500) if kind == "999" else rng.uniform(400, 1800))
    begin = start.replace(minute=start.minute - start.minute % 15, second=0, microsecond=0)
    index = utc_range(begin, begin + timedelta(days=days))
    cal = LocalCalendar(index)
    hours = cal.slot / 4.0
    work = np.interp(hours, np.arange(25), _SHAPES[(kind, "work")] + _SHAPES[(kind, "work")][:1])
    rest = np.interp(hours, np.arange(25), _SHAPES[(kind, "rest")] + _SHAPES[(kind, "rest")][:1])
    shape = np.where(cal.rest_day, rest, work)
    weekly = np.asarray(_WEEKLY[kind])[cal.weekday]
    weekly = np.where(cal.holiday, _HOLIDAY[kind], weekly)
    day_numbers = (cal.dates - cal.dates[0]).astype(int)
    day_noise = np.exp(rng.normal(0, 0.05, day_numbers.max() + 1))[day_numbers]
    trend = 1.0 + 0.0005 * day_numbers
    mean = daily_calls / 96.0 * shape * weekly * day_noise * trend
    offered = rng.poisson(mean)
    abandoned = rng.binomial(offered, _ABANDON[kind])
    answered = offered - abandoned
    base_aht = _AHT[kind] * (1.0 + 0.08 * np.sin((hours - 4.0) / 24.0 * 2 * np.pi))
    safe = np.maximum(answered, 1)
    aht = np.maximum(base_aht + rng.normal(0, 1, offered.size) * base_aht * 0.6 / np.sqrt(safe),
                     20.0)
    load = mean / 900.0 * base_aht
    asa = _ASA[kind] * (0.5 + load / max(load.max(), 1e-9)) * rng.gamma(4.0, 0.25, offered.size)
    starts = index.strftime("%Y-%m-%dT%H:%M:%SZ")
    ends = (index + INTERVAL).strftime("%Y-%m-%dT%H:%M:%SZ")
    records: list[dict[str, object]] = []
    for i in np.flatnonzero(offered > 0):
        n_ans = int(answered[i])
        records.append({
            "room": room, "line": line,
            "interval_start": starts[i], "interval_end": ends[i],
            "final": True, "definitions_version": 1,
            "offered": int(offered[i]), "answered": n_ans, "abandoned": int(abandoned[i]),
            "aht_seconds": round(float(aht[i]), 1) if n_ans else None,
            "asa_seconds": round(float(asa[i]), 2) if n_ans else None,
            "queue_seconds": round(float(asa[i]) * n_ans
                                   + _ABANDON_WAIT[kind] * int(abandoned[i]), 1),
        })
    return records
