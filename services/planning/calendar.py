"""Local time of a room's region: intervals, day types and public holidays.

A region is a country and subdivision code (``GB-ENG``, ``GB-SCT``, ``GB-NIR``, ``US-WA`` …):
it fixes the room's time zone and its public holidays, which forecasts and the simulator share.
England and Wales (``GB-ENG``) is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

LONDON = ZoneInfo("Europe/London")
INTERVAL = pd.Timedelta(minutes=15)
INTERVAL_SECONDS = 900.0
SLOTS_PER_DAY = 96
DEFAULT_REGION = "GB-ENG"

# The ``holidays`` package's subdivision and the time zone of each region. Wales shares
# England's bank holidays; US states are listed with their main time zone.
_GB = {"GB-ENG": "ENG", "GB-WLS": "WLS", "GB-SCT": "SCT", "GB-NIR": "NIR"}
_US_ZONES = {
    "America/New_York": "CT DC DE FL GA IN KY MA MD ME MI NC NH NJ NY OH PA RI SC VA VT WV",
    "America/Chicago": "AL AR IA IL KS LA MN MO MS ND NE OK SD TN TX WI",
    "America/Denver": "CO MT NM UT WY",
    "America/Phoenix": "AZ",
    "America/Boise": "ID",
    "America/Los_Angeles": "CA NV OR WA",
    "America/Anchorage": "AK",
    "Pacific/Honolulu": "HI",
}
REGION_ZONES: dict[str, str] = dict.fromkeys(_GB, "Europe/London")
REGION_ZONES.update({f"US-{state}": zone for zone, states in _US_ZONES.items()
                     for state in states.split()})


class UnknownRegion(ValueError):
    """A region code that is not one of :data:`REGION_ZONES`."""


@dataclass(frozen=True)
class Region:
    """A room's region: its code, time zone and the ``holidays`` country and subdivision."""

    code: str
    zone: ZoneInfo
    country: str
    subdiv: str


@lru_cache(maxsize=64)
def region(code: str = DEFAULT_REGION) -> Region:
    """The region of a code such as ``GB-SCT`` or ``US-WA`` (case-insensitive).

    Raises:
        UnknownRegion: the code is not a known region; the message lists them.
    """
    key = code.strip().upper()
    if key not in REGION_ZONES:
        raise UnknownRegion(
            f"region {code!r} is not one of GB-ENG, GB-WLS, GB-SCT, GB-NIR or US-<state> "
            "(e.g. US-WA)")
    country, subdiv = key.split("-", 1)
    return Region(key, ZoneInfo(REGION_ZONES[key]), country, subdiv)


def parse_room_regions(text: str) -> dict[str, str]:
    """Rooms' regions from ``room:REGION`` pairs, comma-separated (``north:GB-ENG,x:US-WA``).

    Raises:
        UnknownRegion: a pair is malformed or names an unknown region.
    """
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        room, sep, code = pair.partition(":")
        if not sep or not room.strip() or not code.strip():
            raise UnknownRegion(f"{pair!r} is not 'room:REGION' (e.g. north:GB-ENG)")
        result[room.strip()] = region(code).code
    return result


@lru_cache(maxsize=256)
def public_holidays(year: int, code: str = DEFAULT_REGION) -> dict[date, str]:
    """Public holidays of a region in ``year`` (the ``holidays`` package)."""
    import holidays

    where = region(code)
    return dict(holidays.country_holidays(where.country, subdiv=where.subdiv,
                                          years=[year]).items())


def is_bank_holiday(day: date, code: str = DEFAULT_REGION) -> bool:
    """Whether ``day`` is a public holiday in the region (England and Wales by default)."""
    return day in public_holidays(day.year, code)


def holiday_frame(first: date, last: date, code: str = DEFAULT_REGION) -> pd.DataFrame:
    """Prophet's holidays frame (``holiday``, ``ds``) of the region's holidays, first to last."""
    rows = [
        {"holiday": name, "ds": pd.Timestamp(day)}
        for year in range(first.year, last.year + 1)
        for day, name in sorted(public_holidays(year, code).items())
        if first <= day <= last
    ]
    return pd.DataFrame(rows, columns=["holiday", "ds"])


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """Aware UTC instants of local midnight starting ``day`` and the next local midnight."""
    start = datetime.combine(day, time(0), tzinfo=LONDON).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=LONDON).astimezone(UTC)
    return start, end


def utc_range(start: datetime, end: datetime,
              step: pd.Timedelta = INTERVAL) -> pd.DatetimeIndex:
    """UTC interval starts in ``[start, end)`` (quarter hours unless ``step`` says otherwise)."""
    return pd.date_range(pd.Timestamp(start).tz_convert(UTC), pd.Timestamp(end).tz_convert(UTC),
                         freq=step, inclusive="left")


def step_of(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The resolution of a regular index (15 min, 30 min, an hour); 15 min when unknowable."""
    if len(index) < 2:
        return INTERVAL
    head = index[:1000]
    step = pd.Timedelta((head[1:] - head[:-1]).min())
    return step if step > pd.Timedelta(0) else INTERVAL


class LocalCalendar:
    """Local-time features of a UTC interval index, computed once and shared by the methods.

    Attributes:
        index: the aware UTC index.
        region: the region code whose time zone and holidays apply.
        local: the same instants as naive local wall-clock times.
        dates: local dates (numpy ``datetime64[D]``).
        slot: local quarter hour of the day, 0–95 (wall clock, so repeated or skipped on
            clock-change days).
        weekday: local day of the week, Monday 0.
        rest_day: Saturday, Sunday or bank holiday (days with the weekend pattern of demand).
        holiday: public holiday of the region.
    """

    def __init__(self, index: pd.DatetimeIndex, code: str = DEFAULT_REGION) -> None:
        self.index = index
        self.region = region(code).code
        local = index.tz_convert(region(code).zone)
        self.local = local.tz_localize(None)
        self.dates = self.local.normalize().values.astype("datetime64[D]")
        self.slot = np.asarray(local.hour * 4 + local.minute // 15, dtype=np.int64)
        self.weekday = np.asarray(local.day_of_week, dtype=np.int64)
        unique = np.unique(self.dates)
        holidays = {d for d in unique if is_bank_holiday(pd.Timestamp(d).date(), self.region)}
        self.holiday = np.isin(self.dates, np.array(sorted(holidays), dtype="datetime64[D]"))
        self.rest_day = (self.weekday >= 5) | self.holiday

    def __len__(self) -> int:
        return len(self.index)
