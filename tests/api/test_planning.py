"""Forecast, staffing and what-if routes, over ``forecasting.service`` and a history store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.app import create_app

LONDON = ZoneInfo("Europe/London")
WHAT_IF = {"calls": 100, "interval_seconds": 1800, "aht_seconds": 180, "handlers": 14,
           "threshold_seconds": 20}


@pytest.fixture(scope="module")
def store():
    from forecasting.synthetic import synthetic_intervals
    from services.history.store import HistoryStore

    opened = HistoryStore.open("sqlite:///:memory:")
    today = datetime.now(LONDON).replace(hour=0, minute=0, second=0, microsecond=0)
    opened.upsert_intervals(synthetic_intervals("north", "999", today.astimezone(UTC)
                                                - timedelta(days=28), 28, seed=7))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def app(settings, model, store):
    return create_app(settings, read_model=model, store=store)


@pytest.fixture(scope="module")
def unplanned(app):
    """The API before any plan was made."""
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def planner(app, unplanned):
    """The API once a scheduler's planning job for north/999 is done."""
    asked = unplanned.post("/api/v1/rooms/north/plans", params={"line": "999", "days": 3})
    assert asked.status_code == 202, asked.text
    url = asked.headers["Location"]
    assert asked.json()["url"] == url
    deadline = time.monotonic() + 300
    while (job := unplanned.get(url).json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["state"] == "done" and job["planned"] == ["999"], job
    return unplanned


def test_what_if_erlang_c_matches_the_worked_example(client):
    body = client.post("/api/v1/staffing/what-if", json=WHAT_IF).json()
    assert body["model"] == "erlang_c"
    assert body["p_wait"] == pytest.approx(0.174132, abs=1e-6)
    assert body["service_level"] == pytest.approx(0.888350, abs=1e-6)
    assert body["asa_seconds"] == pytest.approx(7.835937, abs=1e-6)
    assert body["abandonment"] is None
    assert body["occupancy"] == pytest.approx(0.714286, abs=1e-6)


def test_what_if_with_patience_is_erlang_a(client):
    body = client.post("/api/v1/staffing/what-if", json={**WHAT_IF, "patience_seconds": 300}).json()
    assert body["model"] == "erlang_a"
    assert body["p_wait"] == pytest.approx(0.145260, abs=1e-6)
    assert body["abandonment"] == pytest.approx(0.013984, abs=1e-6)
    assert body["mean_wait_seconds"] == pytest.approx(4.195, abs=1e-3)


def test_what_if_rejects_impossible_inputs_with_422(client):
    for bad in ({**WHAT_IF, "handlers": 0}, {**WHAT_IF, "calls": -1},
                {**WHAT_IF, "aht_seconds": "long"}, {**WHAT_IF, "handlers": 2.5},
                {k: v for k, v in WHAT_IF.items() if k != "calls"}):
        assert client.post("/api/v1/staffing/what-if", json=bad).status_code == 422, bad


def test_forecast_without_a_store_is_503(client):
    response = client.get("/api/v1/rooms/north/forecast", params={"line": "999"})
    assert response.status_code == 503
    assert "store" in response.json()["detail"]


def test_forecast_needs_a_line_and_a_quarter_hour_start(planner):
    assert planner.get("/api/v1/rooms/north/forecast").status_code == 422
    response = planner.get("/api/v1/rooms/north/forecast",
                           params={"line": "999", "start": "2026-11-21T10:07:00Z"})
    assert response.status_code == 422
    assert "quarter hour" in response.json()["detail"]


def test_before_the_planner_made_a_plan_reads_answer_409_naming_the_fix(unplanned):
    for path in ("forecast", "staffing"):
        response = unplanned.get(f"/api/v1/rooms/north/{path}", params={"line": "101"})
        assert response.status_code == 409
        assert "POST /api/v1/rooms/north/plans" in response.json()["detail"]


def test_a_line_without_enough_history_fails_its_job_with_the_reason(planner):
    asked = planner.post("/api/v1/rooms/north/plans", params={"line": "101", "days": 1})
    assert asked.status_code == 202
    deadline = time.monotonic() + 120
    while (job := planner.get(asked.headers["Location"]).json())["state"] in ("queued",
                                                                              "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["state"] == "failed" and "101" in job["errors"]
    assert planner.get("/api/v1/plans/nosuchjob").status_code == 404


def test_reading_a_plan_never_fits_or_changes_it(planner):
    day = datetime.now(LONDON).date().isoformat()
    first = planner.get("/api/v1/rooms/north/staffing", params={"line": "999", "date": day})
    again = planner.get("/api/v1/rooms/north/staffing", params={"line": "999", "date": day})
    assert first.status_code == 200
    assert first.json() == again.json()  # same generated_at: nothing was refitted


def test_a_full_planner_queue_answers_429(settings, model, store):
    import threading

    from api.planning import Planner

    release = threading.Event()
    app = create_app(settings, read_model=model, store=store)
    app.state.planner = Planner(lambda job: release.wait(30), size=1)
    with TestClient(app) as client:
        first = client.post("/api/v1/rooms/north/plans", params={"line": "999"})
        deadline = time.monotonic() + 10
        while client.get(first.headers["Location"]).json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = client.post("/api/v1/rooms/north/plans", params={"line": "999"})
        third = client.post("/api/v1/rooms/north/plans", params={"line": "999"})
        release.set()
    # one running, one queued, the next refused
    assert (first.status_code, second.status_code, third.status_code) == (202, 202, 429)
    assert third.headers["Retry-After"]


def test_forecast_per_interval_from_history(planner):
    tomorrow = (datetime.now(LONDON) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    rows = planner.get("/api/v1/rooms/north/forecast",
                       params={"line": "999", "start": tomorrow.isoformat(), "days": 1}).json()
    assert len(rows) in (92, 96, 100)
    assert rows[0]["interval_start"] == tomorrow.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(r["calls_lower"] <= r["calls"] <= r["calls_upper"] for r in rows)


def test_the_forecast_says_its_method_and_the_backtest_that_chose_it(planner):
    tomorrow = (datetime.now(LONDON) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    response = planner.get("/api/v1/rooms/north/forecast",
                           params={"line": "999", "start": tomorrow.isoformat(), "days": 1})
    method = response.headers["X-Forecast-Method"]
    assert response.json()[0]["method"].split("+")[0] == method
    assert "/api/v1/rooms/north/forecast/accuracy?line=999" in response.headers["Link"]
    accuracy = planner.get("/api/v1/rooms/north/forecast/accuracy", params={"line": "999"})
    assert accuracy.status_code == 200
    body = accuracy.json()
    assert body["chosen"] == method and body["weeks"] >= 1
    wapes = {m["method"]: m["wape"] for m in body["methods"]}
    assert {"seasonal_naive", "mean_8w", "median_4w", "smoothed_profile"} <= set(wapes)
    assert {m["kind"] for m in body["methods"]} == {"simple", "model"}
    assert wapes[method] <= wapes[body["best_simple"]] and body["improvement"] >= 0
    assert all(0 <= m["coverage"] <= 1 for m in body["methods"])
    assert 0 < body["noise_floor"] < wapes[method]
    assert body["prophet_tuning"] is None  # never tuned (pacesetter backtest --tune): defaults
    missing = planner.get("/api/v1/rooms/north/forecast/accuracy", params={"line": "101"})
    assert missing.status_code == 409 and "no backtest" in missing.json()["detail"]


def test_staffing_plan_as_json_and_csv(planner):
    day = (datetime.now(LONDON) + timedelta(days=1)).date().isoformat()
    rows = planner.get("/api/v1/rooms/north/staffing", params={"line": "999", "date": day}).json()
    assert len(rows) in (92, 96, 100)
    assert all(r["required_handlers"] >= 1 for r in rows)
    csv = planner.get("/api/v1/rooms/north/staffing", params={"line": "999", "date": day},
                      headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == len(rows) + 1
    same = planner.get("/api/v1/rooms/north/staffing",
                       params={"line": "999", "date": day, "format": "csv"})
    assert same.headers["content-type"].startswith("text/csv")
    assert same.text.splitlines()[0] == csv.text.splitlines()[0]  # generated_at differs
    assert planner.get("/api/v1/rooms/north/staffing",
                       params={"line": "999", "date": "21/11/2026"}).status_code == 422
    assert planner.get("/api/v1/rooms/west/staffing", params={"line": "999"}).status_code == 404
