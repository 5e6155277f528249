"""Local time in England and Wales: quarter hours, day types and bank holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

LONDON = ZoneInfo("Europe/London")
INTERVAL = pd.Timedelta(minutes=15)
INTERVAL_SECONDS = 900.0
SLOTS_PER_DAY = 96


@lru_cache(maxsize=64)
def bank_holidays(year: int) -> dict[date, str]:
    """Bank holidays of England and Wales in ``year`` (the ``holidays`` package, subdiv ENG)."""
    import holidays

    return dict(holidays.country_holidays("GB", subdiv="ENG", years=[year]).items())


def is_bank_holiday(day: date) -> bool:
    """Whether ``day`` is a bank holiday in England and Wales."""
    return day in bank_holidays(day.year)


def holiday_frame(first: date, last: date) -> pd.DataFrame:
    """Prophet's holidays frame (``holiday``, ``ds``) of the bank holidays from first to last."""
    rows = [
        {"holiday": name, "ds": pd.Timestamp(day)}
        for year in range(first.year, last.year + 1)
        for day, name in sorted(bank_holidays(year).items())
        if first <= day <= last
    ]
    return pd.DataFrame(rows, columns=["holiday", "ds"])


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """Aware UTC instants of local midnight starting ``day`` and the next local midnight."""
    start = datetime.combine(day, time(0), tzinfo=LONDON).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=LONDON).astimezone(UTC)
    return start, end


def utc_range(start: datetime, end: datetime) -> pd.DatetimeIndex:
    """UTC quarter-hour starts in ``[start, end)``."""
    return pd.date_range(pd.Timestamp(start).tz_convert(UTC), pd.Timestamp(end).tz_convert(UTC),
                         freq=INTERVAL, inclusive="left")


class LocalCalendar:
    """Local-time features of a UTC quarter-hour index, computed once and shared by the methods.

    Attributes:
        index: the aware UTC index.
        local: the same instants as naive Europe/London wall-clock times.
        dates: local dates (numpy ``datetime64[D]``).
        slot: local quarter hour of the day, 0–95 (wall clock, so repeated or skipped on
            clock-change days).
        weekday: local day of the week, Monday 0.
        rest_day: Saturday, Sunday or bank holiday (days with the weekend pattern of demand).
        holiday: bank holiday.
    """

    def __init__(self, index: pd.DatetimeIndex) -> None:
        self.index = index
        local = index.tz_convert(LONDON)
        self.local = local.tz_localize(None)
        self.dates = self.local.normalize().values.astype("datetime64[D]")
        self.slot = np.asarray(local.hour * 4 + local.minute // 15, dtype=np.int64)
        self.weekday = np.asarray(local.day_of_week, dtype=np.int64)
        unique = np.unique(self.dates)
        holidays = {d for d in unique if is_bank_holiday(pd.Timestamp(d).date())}
        self.holiday = np.isin(self.dates, np.array(sorted(holidays), dtype="datetime64[D]"))
        self.rest_day = (self.weekday >= 5) | self.holiday

    def __len__(self) -> int:
        return len(self.index)
