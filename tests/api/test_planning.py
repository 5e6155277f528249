"""Forecast, staffing and what-if routes, over ``forecasting.service`` and a history store."""

from __future__ import annotations

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
def planner(settings, model, store):
    with TestClient(create_app(settings, read_model=model, store=store)) as test_client:
        yield test_client


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


def test_forecast_without_enough_history_is_409_with_the_reason(planner):
    response = planner.get("/api/v1/rooms/north/forecast", params={"line": "101"})
    assert response.status_code == 409
    assert response.json()["detail"]


def test_forecast_per_interval_from_history(planner):
    tomorrow = (datetime.now(LONDON) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    rows = planner.get("/api/v1/rooms/north/forecast",
                       params={"line": "999", "start": tomorrow.isoformat(), "days": 1}).json()
    assert len(rows) in (92, 96, 100)
    assert rows[0]["interval_start"] == tomorrow.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(r["calls_lower"] <= r["calls"] <= r["calls_upper"] for r in rows)


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
