"""The dashboard in headless Chromium: loads, shows the figures, follows the stream, no errors."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.app import create_app
from api.readmodel import ReadModel
from tests.api.feeds import (
    Feed,
    Server,
    alert,
    interval_record,
    live_state,
    make_settings,
    make_topics,
)
from tests.browser.cdp import Browser, find_chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed (Debian package 'chromium'); CI needs it")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return binary


def _quarter(at: datetime) -> datetime:
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def _day_of_intervals(feed: Feed, room: str, now: datetime) -> None:
    """24 hours of plausible intervals: a daily curve, a service-level dip in the evening."""
    first = _quarter(now) - timedelta(hours=24)
    for i in range(97):
        start = first + timedelta(minutes=15 * i)
        hour = start.hour + start.minute / 60
        demand = 0.55 + 0.45 * math.sin((hour - 9) / 24 * 2 * math.pi)
        for line, scale, target in (("999", 40, 0.9), ("101", 60, 0.8), ("online", 15, 0.8)):
            offered = max(1, round(scale * demand + (i * 7) % 5))
            dip = 0.14 if 18 <= hour < 21 else 0.0
            level = min(1.0, target + 0.06 - dip + ((i * 13) % 7) / 100)
            answered = offered - 2
            record = interval_record(room, line, start, offered=offered, final=i < 89,
                                     answered=answered, asa_seconds=4.0 + 10 * dip)
            record["service_level"] = {"answered": level, "offered": level - 0.02,
                                       "excl_early_abandons": level - 0.01}
            feed.interval(record)


def _live(room: str, now: datetime, in_queue: int) -> dict:
    state = live_state(room, now, in_queue=in_queue, longest=20.0 + 9 * in_queue)
    state["lines"]["online"] = dict(state["lines"]["101"], in_queue=0, longest_wait_seconds=None)
    for line in state["lines"].values():
        line["staffing"] = None  # no staffing plan yet: the page asks for no forecast
    return state


def test_dashboard_follows_live_figures_without_console_errors(bootstrap, chromium, tmp_path):
    settings = make_settings(bootstrap)
    make_topics(settings)
    feed = Feed(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    _day_of_intervals(feed, "north", now)
    _day_of_intervals(feed, "south", now)
    feed.alert(alert("north", "long_wait", "999", now - timedelta(minutes=4), value=75.0,
                     threshold=60.0))
    feed.alert(alert("north", "failure_demand_high", "101", now - timedelta(minutes=40),
                     value=0.23, threshold=0.2,
                     message="101: 23 % of calls in the last 24 h were failure demand "
                             "(limit 20 %)") | {"severity": "warning"})
    feed.live(_live("north", now, in_queue=2))
    feed.live(_live("south", now, in_queue=0))
    feed.flush()

    model = ReadModel(settings).start()
    assert model.wait_ready(30), model.readiness().reason
    browser = None
    try:
        with Server(create_app(settings, read_model=model)) as server:
            browser = Browser(chromium, tmp_path / "profile",
                              log=open(tmp_path / "chromium.log", "wb"))  # noqa: SIM115
            browser.open_page()
            browser.navigate(server.url + "/")
            queue = "document.querySelector('[data-figure=\"in_queue-999\"]')?.textContent"
            assert browser.wait_for(f"{queue} === '2' && {queue}")
            bars = "document.querySelectorAll('.line-charts rect.bar').length"
            assert browser.wait_for(f"{bars} >= 3 * 90")
            assert "BELOW" in browser.evaluate("document.body.innerText")  # text, not colour only
            assert browser.evaluate("document.querySelectorAll('#alerts li.critical').length") == 1

            # Events arrive: the figure on screen follows them over server-sent events.
            seen = []
            for step, waiting in enumerate((5, 7, 3)):
                feed.live(_live("north", now + timedelta(seconds=step + 1), in_queue=waiting))
                feed.flush()
                seen.append(browser.wait_for(f"{queue} === '{waiting}' && {queue}"))
            assert seen == ["5", "7", "3"]
            clock = browser.evaluate("document.getElementById('clock').textContent")
            assert clock and clock != "--:--:--"
            browser.wait_for("document.getElementById('connection').textContent.includes('LIVE')")
            browser.screenshot(ARTIFACTS / "dashboard.png")
            assert browser.errors() == []
    finally:
        if browser is not None:
            browser.close()
        model.stop()
        feed.close()
