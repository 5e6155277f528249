"""Every room at a glance: /api/v1/overview against the seeded day, and the /rooms page."""

from __future__ import annotations

from datetime import timedelta

from tests.api.feeds import BASE, interval_record


def _seeded_today(line: str) -> list[dict]:
    """The seeded records of ``line`` in north from UK midnight (00:00 UTC in November)."""
    records = {}
    for i in range(96):
        start = BASE - timedelta(hours=24) + timedelta(minutes=15 * i)
        if start >= BASE.replace(hour=0):
            offered = 20 + i % 7 if line == "999" else 30 + i % 5
            records[start] = interval_record("north", line, start, offered=offered)
    if line == "999":
        start = BASE - timedelta(hours=1)
        records[start] = interval_record("north", "999", start, offered=99)
    return list(records.values())


def test_overview_has_every_room_with_figures_now_and_today(client):
    rows = {r["room"]: r for r in client.get("/api/v1/overview").json()}
    assert sorted(rows) == ["north", "south"]
    north = rows["north"]

    day = _seeded_today("999")
    within = sum(r["answered_within_threshold"] for r in day)
    assert north["service_level_999_today"] == within / sum(r["answered"] for r in day)
    day101 = _seeded_today("101")
    short = sum(r["short_abandoned"] for r in day101)
    assert north["abandonment_101_today"] == (
        (sum(r["abandoned"] for r in day101) - short) / (sum(r["offered"] for r in day101) - short))

    live = client.get("/api/v1/rooms/north/live").json()
    assert north["service_level_999_now"] == live["lines"]["999"]["interval"]["service_level"][
        "answered"]
    assert north["abandonment_101_60m"] == live["lines"]["101"]["rolling_60m"]["abandonment_rate"]
    assert north["calls_waiting"] == 2 + 1  # 999 and 101 queues of the seeded live state
    assert north["longest_wait_seconds"] == 40.0  # 101's wait beats 999's 14.2 s
    assert north["service_level_999_target"] == 0.9
    assert north["abandonment_101_standard"] == 0.05
    firing = [a["rule"] for a in north["alerts"]]
    assert firing == ["service_level_below_target"]
    assert all(a["acknowledged_at"] is None for a in north["alerts"])
    assert north["incidents_beyond_target"] == 0
    assert rows["south"]["calls_waiting"] == 1  # its 101 line in the seeded state


def test_rooms_page_is_served_and_linked_from_the_dashboard(client):
    page = client.get("/rooms")
    assert page.status_code == 200 and "Every room" in page.text
    assert 'href="/rooms"' in client.get("/").text
