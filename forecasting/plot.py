"""A PNG of actual calls against the forecast, its interval and the required handlers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from services.planning.calendar import LONDON


def _local(times: Sequence[str]) -> pd.DatetimeIndex:
    # Naive wall-clock times: Matplotlib would label aware ones in UTC.
    utc = pd.DatetimeIndex(pd.to_datetime(list(times), utc=True))
    return utc.tz_convert(LONDON).tz_localize(None)


def plot_forecast(path: str | Path, forecast_rows: Sequence[dict[str, Any]],
                  actual: dict[str, float], plan_rows: Sequence[dict[str, Any]] = (),
                  title: str = "") -> Path:
    """Draw calls per quarter hour (actual, forecast, interval) above the required handlers.

    Args:
        path: the PNG to write.
        forecast_rows: rows of :func:`forecasting.service.forecast`.
        actual: calls offered by ``interval_start`` (RFC 3339 UTC), for the same span or
            the days before it.
        plan_rows: staffing rows for the same intervals (empty: no handler panel).
        title: the figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if plan_rows else 1
    fig, axes = plt.subplots(panels, 1, figsize=(13, 4 + 2.5 * (panels - 1)), sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [3, 2][:panels]})
    ax = axes[0][0]
    if forecast_rows:
        times = _local([r["interval_start"] for r in forecast_rows])
        ax.fill_between(times, [r["calls_lower"] for r in forecast_rows],
                        [r["calls_upper"] for r in forecast_rows], step="post", alpha=0.25,
                        color="tab:blue", label="prediction interval", linewidth=0)
        ax.step(times, [r["calls"] for r in forecast_rows], where="post", color="tab:blue",
                linewidth=1.2, label=f"forecast ({forecast_rows[0]['method']})")
    if actual:
        keys = sorted(actual)
        ax.step(_local(keys), [actual[k] for k in keys], where="post", color="black",
                linewidth=0.9, label="actual")
    ax.set_ylabel("calls per 15 min")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    if title:
        ax.set_title(title)
    if plan_rows:
        hx = axes[1][0]
        times = _local([r["interval_start"] for r in plan_rows])
        hx.step(times, [r["required_handlers"] for r in plan_rows], where="post",
                color="tab:green", label="required handlers (central)")
        hx.step(times, [r["required_handlers_upper"] for r in plan_rows], where="post",
                color="tab:red", linestyle="--", label="required (upper bound)")
        hx.step(times, [r["rostered_handlers_rounded"] for r in plan_rows], where="post",
                color="tab:gray", linewidth=0.8, label="rostered (with shrinkage)")
        hx.set_ylabel("handlers")
        hx.set_ylim(bottom=0)
        hx.grid(alpha=0.3)
        hx.legend(loc="upper left", fontsize="small")
    axes[-1][0].set_xlabel("Europe/London time")
    fig.autofmt_xdate()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
