"""The REST routes over a read model fed by real messages: contents, filters, order, errors."""

from __future__ import annotations

from datetime import timedelta

from tests.api.feeds import BASE, iso


def test_rooms_lists_every_room_with_its_lines(client):
    assert client.get("/api/v1/rooms").json() == [
        {"room": "north", "lines": ["101", "999"]},
        {"room": "south", "lines": ["101", "999"]},
    ]


def test_live_state_is_the_latest_published(client):
    body = client.get("/api/v1/rooms/north/live").json()
    assert body["room"] == "north"
    assert body["lines"]["999"]["in_queue"] == 2
    assert body["totals"]["lines"]["999"]["offered"] == 1234


def test_intervals_are_oldest_first_then_by_line_and_the_latest_message_wins(client):
    rows = client.get("/api/v1/rooms/north/intervals").json()
    assert len(rows) == 96 * 2
    keys = [(r["interval_start"], r["line"]) for r in rows]
    assert keys == sorted(keys)
    updated = [r for r in rows if r["interval_start"] == iso(BASE - timedelta(hours=1))
               and r["line"] == "999"]
    assert updated[0]["offered"] == 99


def test_intervals_filter_by_line_and_half_open_time_range(client):
    start, end = BASE - timedelta(hours=2), BASE - timedelta(hours=1)
    rows = client.get("/api/v1/rooms/north/intervals",
                      params={"line": "999", "start": iso(start), "end": iso(end)}).json()
    assert [r["interval_start"] for r in rows] == [
        iso(start + timedelta(minutes=15 * i)) for i in range(4)]
    assert {r["line"] for r in rows} == {"999"}


def test_times_with_an_offset_are_the_same_instant(client):
    start = (BASE - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + "+00:00"
    later = (BASE - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S") + "+01:00"
    rows = client.get("/api/v1/rooms/north/intervals",
                      params={"line": "101", "start": start, "end": later}).json()
    assert [r["interval_start"] for r in rows] == [
        iso(BASE - timedelta(minutes=120)), iso(BASE - timedelta(minutes=105))]
    rows = client.get("/api/v1/rooms/north/intervals", params={"start": start}).json()
    assert len(rows) == 8 * 2


def test_attendance_filters_by_grade(client):
    everything = client.get("/api/v1/rooms/north/attendance").json()
    assert len(everything) == 48
    immediate = client.get("/api/v1/rooms/north/attendance", params={"grade": "immediate"}).json()
    assert len(immediate) == 24 and {r["grade"] for r in immediate} == {"immediate"}
    starts = [r["interval_start"] for r in immediate]
    assert starts == sorted(starts)


def test_handlers_records_in_range(client):
    rows = client.get("/api/v1/rooms/north/handlers",
                      params={"start": iso(BASE - timedelta(hours=3))}).json()
    assert len(rows) == 3
    assert rows[0]["occupancy"] == 0.75


def test_alerts_newest_first_and_filtered(client):
    rows = client.get("/api/v1/alerts").json()
    assert [a["room"] for a in rows] == ["south", "north", "north"]
    started = [a["started_at"] for a in rows]
    assert started == sorted(started, reverse=True)
    firing = client.get("/api/v1/alerts", params={"room": "north", "state": "firing"}).json()
    assert [a["rule"] for a in firing] == ["service_level_below_target"]
    resolved = client.get("/api/v1/alerts", params={"state": "resolved"}).json()
    assert [a["rule"] for a in resolved] == ["long_wait"]  # the later transition won


def test_unknown_room_is_404_naming_it(client):
    for path in ("/api/v1/rooms/west/live", "/api/v1/rooms/west/intervals",
                 "/api/v1/rooms/west/attendance", "/api/v1/rooms/west/handlers"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "unknown room 'west'"}
    assert client.get("/api/v1/alerts", params={"room": "west"}).status_code == 404


def _problem(response):
    assert response.status_code == 422, response.text
    body = response.json()
    return {tuple(e["loc"]): e["msg"] for e in body["detail"]}, body["message"]


def test_naive_time_is_422_telling_to_add_a_zone(client):
    errors, message = _problem(client.get("/api/v1/rooms/north/intervals",
                                          params={"start": "2026-11-21T12:00:00"}))
    assert "add 'Z'" in errors[("query", "start")]
    assert "start" in message


def test_bad_time_is_422_naming_the_parameter(client):
    errors, _ = _problem(client.get("/api/v1/rooms/north/handlers", params={"end": "yesterday"}))
    assert ("query", "end") in errors


def test_end_not_after_start_is_422_naming_end(client):
    errors, _ = _problem(client.get("/api/v1/rooms/north/intervals",
                                    params={"start": iso(BASE), "end": iso(BASE)}))
    assert errors == {("query", "end"): "end must be after start"}


def test_bad_line_and_grade_are_422(client):
    errors, _ = _problem(client.get("/api/v1/rooms/north/intervals", params={"line": "9 9 9"}))
    assert ("query", "line") in errors
    errors, _ = _problem(client.get("/api/v1/rooms/north/attendance", params={"grade": "urgent"}))
    assert ("query", "grade") in errors
    errors, _ = _problem(client.get("/api/v1/alerts", params={"state": "open"}))
    assert ("query", "state") in errors


def test_openapi_and_docs_are_served(client):
    spec = client.get("/openapi.json").json()
    assert "/api/v1/rooms/{room}/intervals" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_dashboard_and_its_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert "https://" not in response.text
