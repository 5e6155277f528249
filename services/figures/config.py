"""The settings a room's state machine needs, converted once to microseconds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.contract.settings import Settings
from services.figures import kpis
from services.figures.kpis import INTERVAL_US, US


@dataclass
class Config:
    """The settings a room needs, in microseconds."""

    grace_us: int
    repeat_window_us: int
    max_queue_us: int
    max_future_seconds: float
    live_lag_us: int
    attendance_horizon_us: int
    # How long event ids are remembered at least (by event time): while an event could still
    # change a figure, so a duplicate is told from a too-late event. An event is too late once
    # its interval (15 min) is final, ``grace`` (calls, handlers) or the attendance horizon
    # (incidents) after it ends, and the watermark may run ``max_future`` ahead of the clock
    # that closes intervals. Derived rather than fixed, so shorter horizons hold fewer ids.
    seen_generation_us: int
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

        grace_us = round(settings.grace_seconds * US)
        horizon_us = round(settings.attendance_horizon_seconds * US)
        return cls(
            grace_us=grace_us,
            repeat_window_us=round(settings.repeat_window_seconds * US),
            max_queue_us=round(settings.max_queue_seconds * US),
            max_future_seconds=settings.max_future_seconds,
            live_lag_us=round(settings.live_lag_seconds * US),
            attendance_horizon_us=horizon_us,
            seen_generation_us=(max(grace_us, horizon_us) + INTERVAL_US
                                + round(settings.max_future_seconds * US)),
            limits=limits,
            settings=settings,
        )
