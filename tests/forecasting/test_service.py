"""forecast, staffing_plan, what-if and plan_many end to end over a store of synthetic history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from forecasting import service
from forecasting.history import NotEnoughHistory
from forecasting.synthetic import synthetic_intervals
from services.contract.errors import PacesetterError
from services.contract.settings import Settings
from services.history.store import PLAN_FIELDS, HistoryStore
from services.planning.calendar import local_day_bounds

DAY = date(2026, 11, 23)  # a Monday
START = local_day_bounds(DAY)[0]
AFTER = START + timedelta(days=3)  # "now" after the planned days: no reforecast


@pytest.fixture(scope="module")
def settings():
    return Settings(store_url="sqlite:///:memory:")


@pytest.fixture(scope="module")
def store():
    opened = HistoryStore.open("sqlite:///:memory:")
    opened.upsert_intervals(synthetic_intervals("north", "999", START - timedelta(days=22), 22, 3))
    opened.upsert_intervals(synthetic_intervals("north", "101", START - timedelta(days=22), 22, 4))
    opened.upsert_intervals(synthetic_intervals("south", "999", START - timedelta(days=9), 9, 5))
    yield opened
    opened.close()


def test_a_forecast_has_every_quarter_hour_and_an_honest_interval(store, settings):
    rows = service.forecast(store, settings, "north", "999", START, 2, now=AFTER)
    assert len(rows) == 192
    assert rows[0]["interval_start"] == "2026-11-23T00:00:00Z"
    assert rows[-1]["interval_end"] == "2026-11-25T00:00:00Z"
    assert set(rows[0]) == set(service.FORECAST_FIELDS)
    for row in rows:
        assert 0 <= row["calls_lower"] <= row["calls"] <= row["calls_upper"]
        assert 100 < row["aht_seconds"] < 300
    # 22 days allow a one-week backtest: its choice labels every row, and is kept.
    saved = store.latest_backtest("north", "999")
    assert saved is not None and saved[1]["weeks"] == 1
    assert {r["method"] for r in rows} == {saved[1]["chosen"]}


def test_too_little_history_says_how_much_is_needed(store, settings):
    with pytest.raises(NotEnoughHistory, match=r"9\.0 days .* at least 14 days") as caught:
        service.forecast(store, settings, "south", "999", START, 1, now=AFTER)
    assert isinstance(caught.value, PacesetterError)
    with pytest.raises(NotEnoughHistory, match="no final intervals"):
        service.staffing_plan(store, settings, "west", "999", DAY, now=AFTER)


@pytest.mark.parametrize(("start", "days", "needle"), [
    (START + timedelta(minutes=7), 1, "quarter hour"),
    (START.replace(tzinfo=None), 1, "aware"),
    (START, 0, "days"),
    (START, 90, "days"),
])
def test_bad_requests_are_input_errors(store, settings, start, days, needle):
    with pytest.raises(service.ForecastInputError, match=needle):
        service.forecast(store, settings, "north", "999", start, days, now=AFTER)


def test_the_staffing_plan_meets_the_line_profile_and_is_saved_for_the_alerts(store, settings):
    rows = service.staffing_plan(store, settings, "north", "999", DAY, now=AFTER)
    assert len(rows) == 96
    assert set(PLAN_FIELDS) <= set(rows[0])
    for row in rows:
        assert row["required_handlers"] >= 1
        assert row["service_level"] >= 0.90  # 999: 90 % in under 10 s
        assert row["occupancy"] <= 0.85
        assert row["required_handlers_upper"] >= row["required_handlers"]
        assert row["rostered_handlers"] == pytest.approx(row["required_handlers"] / 0.65,
                                                         abs=1e-3)
        assert row["rostered_handlers_rounded"] >= row["rostered_handlers"]
        assert row["abandonment"] is not None  # patience estimated from the history
    at = START + timedelta(hours=18, minutes=20)
    saved = store.current_plan("north", "999", at)
    assert saved["interval_start"] == "2026-11-23T18:15:00Z"
    assert saved["required_handlers"] == rows[73]["required_handlers"]
    csv = service.staffing_csv(rows)
    lines = csv.strip().splitlines()
    assert len(lines) == 97 and lines[0].startswith("local_start,room,line,interval_start")


def test_the_101_line_is_planned_to_its_own_threshold(store, settings):
    rows = service.staffing_plan(store, settings, "north", "101", DAY, now=AFTER)
    assert {r["threshold_seconds"] for r in rows} == {60.0}
    assert all(r["service_level"] >= 0.80 for r in rows if r["calls"] > 0.5)


@pytest.mark.parametrize(("day", "intervals"), [(date(2026, 10, 25), 100),
                                                (date(2026, 3, 29), 92)])
def test_clock_change_days_have_their_own_number_of_intervals(settings, day, intervals):
    with HistoryStore.open("sqlite:///:memory:") as store:
        begin = local_day_bounds(day)[0]
        store.upsert_intervals(synthetic_intervals("north", "999", begin - timedelta(days=15),
                                                   15, 6))
        rows = service.staffing_plan(store, settings, "north", "999", day,
                                     now=begin + timedelta(days=2))
    assert len(rows) == intervals
    local = [r["local_start"][11:16] for r in rows]
    assert local[0] == "00:00" and local[-1] == "23:45"


def test_today_is_reforecast_by_actual_over_forecast_so_far(settings):
    with HistoryStore.open("sqlite:///:memory:") as store:
        store.upsert_intervals(synthetic_intervals("north", "999", START - timedelta(days=15),
                                                   15, 8))
        base = service.forecast(store, settings, "north", "999", START, 1, now=AFTER)
        # Today is busier than forecast: 60 % more calls until 12:00, not yet final.
        actual = [{"room": "north", "line": "999", "interval_start": r["interval_start"],
                   "final": False, "offered": round(1.6 * r["calls"])} for r in base[:48]]
        store.upsert_intervals(actual)
        now = START + timedelta(hours=12, minutes=5)
        rows = service.forecast(store, settings, "north", "999", START, 1, now=now)
        factor = sum(a["offered"] for a in actual) / sum(r["calls"] for r in base[:48])
        assert rows[0]["method"] == "prophet"  # elapsed intervals keep the forecast made
        assert rows[0]["calls"] == base[0]["calls"]
        assert rows[47]["method"] == "prophet"
        assert rows[48]["method"] == f"prophet+reforecast×{factor:.2f}"  # 12:00-12:15: open
        assert rows[60]["method"] == rows[48]["method"]
        assert rows[60]["calls"] == pytest.approx(base[60]["calls"] * factor, rel=1e-3)
        plan = service.staffing_plan(store, settings, "north", "999", DAY, now=now)
        assert plan[60]["calls"] == rows[60]["calls"]
        assert plan[60]["method"] == rows[60]["method"]


def test_a_backtest_chooses_the_method_and_the_plan_says_which(settings):
    with HistoryStore.open("sqlite:///:memory:") as store:
        store.upsert_intervals(synthetic_intervals("north", "999", START - timedelta(days=30),
                                                   30, 10))
        outcome = service.forecast_outcome(store, settings, "north", "999", START, 1, now=AFTER)
        assert outcome.backtest is not None and outcome.backtest["weeks"] == 2
        assert outcome.method == outcome.backtest["chosen"]
        saved_end, saved = store.latest_backtest("north", "999")
        assert saved == outcome.backtest
        again = service.forecast_outcome(store, settings, "north", "999", START, 1, now=AFTER)
        assert not again.backtest_is_new
        service.clear_cache()
        refit = service.forecast_outcome(store, settings, "north", "999", START, 1, now=AFTER)
        assert not refit.backtest_is_new  # the stored backtest is reused for a week
        assert refit.forecast_rows == outcome.forecast_rows


def test_plan_many_runs_series_in_worker_processes_and_reports_failures(store, settings):
    seen = []
    outcomes = service.plan_many(store, settings, [("north", "999"), ("north", "101"),
                                                   ("south", "999")],
                                 START, 1, now=AFTER, jobs=2, progress=False,
                                 on_done=seen.append)
    assert [(o.room, o.line) for o in outcomes] == [("north", "999"), ("north", "101"),
                                                    ("south", "999")]
    assert [bool(o.error) for o in outcomes] == [False, False, True]
    assert "at least 14 days" in outcomes[2].error
    assert len(seen) == 3
    assert len(store.plan_rows("north", "101", START, START + timedelta(days=1))) == 96


def test_parse_start_takes_a_local_date_or_an_rfc3339_time():
    assert service.parse_start("2026-07-01") == datetime(2026, 6, 30, 23, tzinfo=UTC)
    assert service.parse_start("2026-11-21T10:15:00Z") == datetime(2026, 11, 21, 10, 15,
                                                                   tzinfo=UTC)
    assert service.parse_start(None) is None
    with pytest.raises(service.ForecastInputError, match="local date"):
        service.parse_start("21/11/2026")
