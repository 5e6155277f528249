"""Two public call-count series as regular UTC series: what tests and benchmarks judge on.

The files (tests/data/, gzipped; sources and terms in tests/data/README.md) are real: Seattle
Fire 911 calls per 15 minutes (low volume) and New York City EMS incidents per hour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "data"
SEATTLE = "seattle-fire-911-15min.csv.gz"
NYC = "nyc-ems-hourly-2018-2019.csv.gz"
# name: (file, region, resolution)
SERIES = {
    "seattle": (SEATTLE, "US-WA", pd.Timedelta(minutes=15)),
    "nyc": (NYC, "US-NY", pd.Timedelta(hours=1)),
}


def load_public(name: str, data_dir: Path = DATA_DIR) -> tuple[pd.Series, str]:
    """A public series (``seattle`` or ``nyc``) as calls per UTC interval, and its region.

    Seattle's times carry their UTC offset; New York's are wall-clock times without one (the
    autumn's repeated hour appears once, so its second copy is unknown). The series is put on
    a regular grid, NaN where the feed has no row.
    """
    file, code, step = SERIES[name]
    frame = pd.read_csv(data_dir / file)
    if name == "nyc":
        local = pd.DatetimeIndex(pd.to_datetime(frame["interval_start_local"]))
        index = local.tz_localize("America/New_York", ambiguous=np.ones(len(local), dtype=bool),
                                  nonexistent="NaT").tz_convert("UTC")
    else:
        index = pd.DatetimeIndex(pd.to_datetime(frame["interval_start"], utc=True))
    series = pd.Series(frame["calls"].to_numpy(dtype=float), index=index)
    series = series[series.index.notna()].groupby(level=0).sum()
    grid = pd.date_range(series.index[0], series.index[-1], freq=step)
    return series.reindex(grid), code
