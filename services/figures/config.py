"""The settings a room's state machine needs, converted once to microseconds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.contract.settings import Settings
from services.figures import kpis
from services.figures.kpis import US


@dataclass
class Config:
    """The settings a room needs, in microseconds."""

    grace_us: int
    repeat_window_us: int
    max_queue_us: int
    max_future_seconds: float
    live_lag_us: int
    attendance_horizon_us: int
    limits: Callable[[str], kpis.Thresholds]
    settings: Settings

    @classmethod
    def of(cls, settings: Settings) -> Config:
        """Config from settings."""
        cache: dict[str, kpis.Thresholds] = {}

        def limits(line: str) -> kpis.Thresholds:
            found = cache.get(line)
            if found is None:
                profile = settings.profile(line)
                found = cache[line] = kpis.Thresholds.of(
                    profile.threshold_seconds, profile.short_abandon_seconds
                )
            return found

        return cls(
            grace_us=round(settings.grace_seconds * US),
            repeat_window_us=round(settings.repeat_window_seconds * US),
            max_queue_us=round(settings.max_queue_seconds * US),
            max_future_seconds=settings.max_future_seconds,
            live_lag_us=round(settings.live_lag_seconds * US),
            attendance_horizon_us=round(settings.attendance_horizon_seconds * US),
            limits=limits,
            settings=settings,
        )
