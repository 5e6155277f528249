"""Prophet's per-series tuning: chosen by its own backtest, stored, read back and fitted with.

The plumbing tests replace Prophet's fit by a stand-in that records the parameters it is given
and whose error depends on them (seconds, not minutes); the slow test tunes a real series.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting import methods, service
from forecasting.backtest import backtest_series, tune_prophet
from forecasting.baselines import seasonal_naive
from forecasting.history import MAX_HISTORY_WEEKS
from forecasting.methods import PROPHET
from forecasting.prophet_model import (
    DEFAULT_TUNING,
    TUNING_VARIANTS,
    ProphetResult,
    _quiet_imports,
    build_model,
    tuning_kwargs,
)
from forecasting.public_data import load_public
from forecasting.stored import stored_accuracy
from forecasting.synthetic import synthetic_intervals
from pacesetter.cli import main
from services.contract.settings import Settings
from services.history.store import HistoryStore
from services.planning.calendar import local_day_bounds

START = local_day_bounds(pd.Timestamp("2026-11-23").date())[0]
BEST = {"seasonality_mode": "multiplicative", "changepoint_prior_scale": 0.01}


@pytest.fixture
def fake_prophet(monkeypatch):
    """A Prophet stand-in: last week's figures, off by 30 % unless given :data:`BEST`."""
    seen: list[dict | None] = []

    def fit(history, target, interval_width=0.9, uncertainty_samples=200, init=None,
            region="GB-ENG", tuning=None):
        seen.append(tuning)
        calls = np.nan_to_num(seasonal_naive(history, target), nan=1.0)
        calls = calls * (1.0 if tuning == BEST else 1.3)
        return ProphetResult(calls, calls * 0.5, calls * 1.5, {})

    monkeypatch.setattr(methods, "prophet_forecast", fit)
    return seen


def _series(days: int = 22) -> pd.Series:
    records = synthetic_intervals("north", "999", START - timedelta(days=days), days, 3)
    index = pd.DatetimeIndex([pd.Timestamp(r["interval_start"]) for r in records])
    return pd.Series([float(r["offered"]) for r in records], index=index).sort_index()


def test_a_tuning_becomes_prophets_constructor_arguments():
    prophet_class = _quiet_imports()
    model = build_model(prophet_class, None, 0.9, 0, BEST)
    assert model.seasonality_mode == "multiplicative"
    assert model.changepoint_prior_scale == 0.01
    default = build_model(prophet_class, None, 0.9, 0, None)
    assert default.seasonality_mode == DEFAULT_TUNING["seasonality_mode"]
    assert default.changepoint_prior_scale == DEFAULT_TUNING["changepoint_prior_scale"]
    # A stored entry from another version: unknown keys and bad values fall back.
    assert tuning_kwargs({"seasonality_mode": "cubic", "changepoint_prior_scale": -1,
                          "n_changepoints": 99}) == DEFAULT_TUNING
    assert len(TUNING_VARIANTS) <= 4 and TUNING_VARIANTS[0] == DEFAULT_TUNING


def test_tuning_picks_the_variant_with_the_lowest_prophet_wape(fake_prophet):
    tuning = tune_prophet(_series(), weeks=1)
    assert tuning["params"] == BEST
    assert [v["params"] for v in tuning["variants"]] == [tuning_kwargs(v)
                                                          for v in TUNING_VARIANTS]
    wapes = {str(v["params"]): v["wape"] for v in tuning["variants"]}
    assert tuning["wape"] == min(wapes.values()) < wapes[str(DEFAULT_TUNING)]
    result = backtest_series(_series(), weeks=1, prophet_tuning=tuning)
    assert result["prophet_tuning"] == tuning
    assert result["methods"][PROPHET]["wape"] == tuning["wape"]
    assert fake_prophet[-1] == BEST


def test_the_stored_tuning_is_carried_forward_and_used_by_plans(fake_prophet):
    store = HistoryStore.open("sqlite:///:memory:")
    try:
        store.upsert_intervals(synthetic_intervals("north", "999", START - timedelta(days=22),
                                                   22, 3))
        untuned = service.backtest(store, "north", "999", weeks=1)
        assert "prophet_tuning" not in untuned
        assert stored_accuracy(store, "north", "999")["prophet_tuning"] is None
        assert fake_prophet[-1] is None

        tuned = service.backtest(store, "north", "999", weeks=1, tune=True)
        assert tuned["prophet_tuning"]["params"] == BEST
        accuracy = stored_accuracy(store, "north", "999")
        assert accuracy["prophet_tuning"]["params"] == BEST
        assert len(accuracy["prophet_tuning"]["variants"]) == len(TUNING_VARIANTS)

        # A plain backtest (the weekly re-selection) reuses the tuning: no variants refitted.
        fake_prophet.clear()
        again = service.backtest(store, "north", "999", weeks=1)
        assert again["prophet_tuning"] == tuned["prophet_tuning"]
        assert fake_prophet and all(t == BEST for t in fake_prophet)

        # The daily plan's Prophet fit gets the stored parameters.
        fake_prophet.clear()
        service.clear_cache()
        settings = Settings(store_url="sqlite:///:memory:")
        service.forecast_outcome(store, settings, "north", "999", START, 1,
                                 now=START + timedelta(days=3), method=PROPHET)
        assert fake_prophet == [BEST]
    finally:
        store.close()
        service.clear_cache()


def test_backtest_tune_on_the_command_line(fake_prophet, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = HistoryStore.open(url)
    store.upsert_intervals(synthetic_intervals("north", "999", START - timedelta(days=22), 22, 3))
    store.close()
    args = ["backtest", "--room", "north", "--line", "999", "--weeks", "1", "--store", url]
    assert main([*args, "--tune", "--json"]) == 0
    tuning = json.loads(capsys.readouterr().out)["prophet_tuning"]
    assert tuning["params"] == BEST and len(tuning["variants"]) == len(TUNING_VARIANTS)
    assert main(args) == 0  # the table of a later, untuned run shows the stored variants
    out = capsys.readouterr().out
    for variant in tuning["variants"]:
        assert f"{variant['wape']:.1%}" in out
    assert "multiplicative" in out


@pytest.mark.slow
def test_tuning_a_real_series_is_no_worse_than_prophets_defaults():
    series, region = load_public("seattle")
    series = series[series.index >= series.index[-1] - pd.Timedelta(weeks=MAX_HISTORY_WEEKS)]
    tuning = tune_prophet(series, weeks=2, region_code=region)
    default = next(v for v in tuning["variants"] if v["params"] == DEFAULT_TUNING)
    print("seattle tuning", tuning["params"], [(v["params"], v["wape"])
                                               for v in tuning["variants"]])
    assert tuning["wape"] is not None and tuning["wape"] <= default["wape"]
    assert tuning["params"] in [tuning_kwargs(v) for v in TUNING_VARIANTS]
