"""A line's interval history from the store, as a regular series at its own resolution."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from services.contract.errors import PacesetterError
from services.contract.events import format_time
from services.history.store import HistoryStore
from services.planning.calendar import INTERVAL

logger = logging.getLogger(__name__)

MIN_HISTORY_DAYS = 14
MAX_HISTORY_WEEKS = 26  # Prophet fits grow with history; half a year carries the weekly pattern
GAP_LIMIT = pd.Timedelta(hours=24)
MIN_ABANDONS_FOR_PATIENCE = 30


class NotEnoughHistory(PacesetterError):
    """A line has too little final history to forecast, backtest or plan."""


@dataclass
class History:
    """Final intervals of one ``(room, line)`` on a regular UTC grid (15, 30 or 60 minutes).

    Records exist only for intervals with at least one call offered, so a missing interval
    counts as 0 calls; a run of missing intervals longer than 24 h is an outage of the feed
    and is unknown (NaN), not zero.
    """

    room: str
    line: str
    index: pd.DatetimeIndex
    offered: np.ndarray
    answered: np.ndarray
    aht_seconds: np.ndarray
    abandoned_total: float
    queue_seconds_total: float | None
    step: pd.Timedelta = field(default=INTERVAL)

    @property
    def end(self) -> datetime:
        """The end of the last interval (aware UTC)."""
        end: datetime = (self.index[-1] + self.step).to_pydatetime()
        return end

    @property
    def known_days(self) -> float:
        """Days of history with known demand."""
        return float(np.isfinite(self.offered).sum()) / (pd.Timedelta(days=1) / self.step)

    def series(self) -> pd.Series:
        """Calls offered per interval (NaN where unknown)."""
        return pd.Series(self.offered, index=self.index, name="offered")

    def before(self, cutoff: pd.Timestamp) -> History:
        """The history strictly before ``cutoff`` (for backtest origins)."""
        keep = self.index < cutoff
        return History(self.room, self.line, self.index[keep], self.offered[keep],
                       self.answered[keep], self.aht_seconds[keep], self.abandoned_total,
                       self.queue_seconds_total, self.step)

    def patience_seconds(self) -> float | None:
        """Callers' mean patience: total queue time of all calls / number of abandons.

        None when the records carry no queue times or there are too few abandons (fewer
        than 30) for a usable estimate; the plan then has no Erlang A figures.
        """
        if self.queue_seconds_total is None or self.abandoned_total < MIN_ABANDONS_FOR_PATIENCE:
            return None
        return self.queue_seconds_total / self.abandoned_total

    def require_days(self, days: float, purpose: str) -> None:
        """Raise :class:`NotEnoughHistory` unless ``days`` of known history exist."""
        have = self.known_days
        if have < days:
            raise NotEnoughHistory(
                f"room {self.room!r} line {self.line!r} has {have:.1f} days of final intervals; "
                f"{purpose} needs at least {days:g} days: import more with "
                "'pacesetter import intervals FILE.csv' or let the stream run longer"
            )


def load_history(store: HistoryStore, room: str, line: str,
                 end: datetime | None = None, max_weeks: int = MAX_HISTORY_WEEKS,
                 purpose: str = "forecasting", needed_days: int = MIN_HISTORY_DAYS) -> History:
    """Read a line's final intervals (the last ``max_weeks`` weeks before ``end``).

    Raises:
        NotEnoughHistory: no final intervals at all.
    """
    start = None
    if end is not None:
        start = end - timedelta(weeks=max_weeks)
    rows = store.interval_series(room, line, start=start, end=end, final_only=True)
    if rows and end is None:
        last = pd.Timestamp(rows[-1][0])
        first_kept = format_time((last - pd.Timedelta(weeks=max_weeks)).to_pydatetime())
        rows = [r for r in rows if r[0] > first_kept]  # RFC 3339 'Z' text sorts as time
    if not rows:
        raise NotEnoughHistory(
            f"room {room!r} line {line!r} has no final intervals in the store; {purpose} "
            f"needs at least {needed_days} days: import them with "
            "'pacesetter import intervals FILE.csv'"
        )
    return history_from_rows(room, line, rows)


def history_from_rows(room: str, line: str, rows: list[tuple]) -> History:  # type: ignore[type-arg]
    """Build a :class:`History` from ``HistoryStore.interval_series`` tuples."""
    frame = pd.DataFrame(
        rows,
        columns=["interval_start", "offered", "answered", "abandoned", "aht_seconds",
                 "asa_seconds", "queue_seconds"],
    )
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("interval_start"), utc=True))
    frame = frame[~frame.index.duplicated(keep="last")]
    step = _resolution(frame.index)
    grid = pd.date_range(frame.index[0], frame.index[-1], freq=step)
    regular = frame.reindex(grid)
    missing = regular["offered"].isna().to_numpy()
    offered = regular["offered"].fillna(0.0).to_numpy(dtype=float, copy=True)
    # Without an answered count (interval imports may lack one), offered stands in as the
    # weight of the interval's AHT.
    answered = regular["answered"].fillna(regular["offered"]).fillna(0.0).to_numpy(
        dtype=float, copy=True)
    # Runs of missing intervals longer than the gap limit are unknown, not quiet.
    limit = int(GAP_LIMIT / step)
    if missing.any():
        run_id = np.cumsum(~missing)
        run_len = pd.Series(missing).groupby(run_id).transform("sum").to_numpy()
        unknown = missing & (run_len > limit)
        if unknown.any():
            logger.info("%s/%s: %d intervals in gaps over 24 h treated as unknown",
                        room, line, int(unknown.sum()))
        offered[unknown] = np.nan
        answered[unknown] = np.nan
    aht = regular["aht_seconds"].to_numpy(dtype=float)
    abandoned_total = float(frame["abandoned"].fillna(0).sum())
    # Records from per-call imports carry the total queue time; stream records carry only the
    # answered calls' mean wait, so there abandoned callers are assumed to have waited as long
    # as answered ones (an estimate, which the plan's patience inherits).
    estimate = frame["asa_seconds"] * (frame["answered"].fillna(0) + frame["abandoned"].fillna(0))
    queue = frame["queue_seconds"].fillna(estimate)
    queue_total = float(queue.fillna(0).sum()) if queue.notna().any() else None
    return History(room, line, grid, offered, answered, aht, abandoned_total, queue_total, step)


def _resolution(index: pd.DatetimeIndex) -> pd.Timedelta:
    """15 minutes (the stream's), or 30 / 60 for history imported at that resolution.

    Records exist only for intervals with calls, so spacing alone could mistake a quiet
    15-minute line for an hourly one: a coarser resolution needs every record on its boundary
    and no two records closer than it.
    """
    if len(index) < 2:
        return INTERVAL
    closest = pd.Timedelta((index[1:] - index[:-1]).min())
    minutes = index.minute
    for step in (60, 30):
        if closest >= pd.Timedelta(minutes=step) and not (minutes % step).any():
            return pd.Timedelta(minutes=step)
    return INTERVAL
