"""``pacesetter demo`` end to end: broker, worker, simulator, planner, API and the dashboard.

One demo serves the module's tests: the dashboard in Chromium, and the staffing plans the
demo's planner makes while the dashboard test runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.history.store import HistoryStore
from services.kafka.broker import free_port
from services.simulation.simulator import LINES
from tests.browser.cdp import Browser
from tests.browser.test_dashboard import ARTIFACTS, chromium  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

FIGURES = """JSON.stringify({
  figures: [...document.querySelectorAll('[data-figure]')].map((e) => e.textContent),
  mode: document.getElementById('mode').textContent,
})"""


# The planner simulates 28 days and plans (20-60 s on 2 busy cores); then the worker's plan
# look-up, which keeps "no plan" for 60 s, finds them: about 70 s from the demo's start.
PLANS_WITHIN_SECONDS = 240


@dataclass
class Demo:
    """A running ``pacesetter demo``."""

    url: str
    store_url: str
    log: Path

    def tail(self) -> str:
        """The planner's lines and the end of the log, for failure messages."""
        text = self.log.read_text(errors="replace")
        planner = [line for line in text.splitlines() if line.startswith("planner")]
        return "\n".join(planner) + "\n...\n" + text[-2500:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    port = free_port()
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = dict(os.environ, PACESETTER_API_TOKENS="", PACESETTER_STORE_URL=store_url,
               PACESETTER_DATA_DIR=str(tmp_path / "data"))
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "pacesetter.cli", "demo", "--api-port", str(port),
         "--backfill-hours", "3"],
        stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    url = None
    try:
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode().strip()
            if line.startswith("dashboard:"):
                url = line.split(":", 1)[1].strip()
                break
            assert time.monotonic() < deadline
        assert url, (tmp_path / "demo.log").read_text()[-3000:]
        # the parts that inherit the demo's standard output must never find it full
        threading.Thread(target=process.stdout.read, daemon=True).start()
        while True:  # ready: the read model has caught up with what the worker published
            try:
                with urllib.request.urlopen(url + "readyz", timeout=2) as response:
                    if json.load(response)["ready"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the API never became ready"
            time.sleep(0.5)
        yield Demo(url, store_url, tmp_path / "demo.log")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait(10)
        log.close()
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]


def test_demo_dashboard_changes_as_simulated_events_arrive(demo, chromium, tmp_path):  # noqa: F811
    browser = Browser(chromium, tmp_path / "profile")
    try:
        browser.open_page()
        browser.navigate(demo.url)
        browser.wait_for("document.querySelectorAll('.line-charts rect.bar').length > 0", 60)
        first = browser.evaluate(FIGURES)
        # Simulated demand follows the time of day: at 4 a.m. a room can be quiet for minutes.
        # If nothing has changed after 30 s, a caller rings each line of both rooms, through
        # the demo's own Kafka, as a telephony system would.
        quiet_until = time.monotonic() + 30
        deadline = time.monotonic() + 90
        rang = False
        while browser.evaluate(FIGURES) == first:
            assert time.monotonic() < deadline, f"nothing changed on screen: {first}"
            if not rang and time.monotonic() > quiet_until:
                ring_every_line(demo.log)
                rang = True
            time.sleep(0.5)
        browser.screenshot(ARTIFACTS / "demo.png")
        assert browser.errors() == []
    finally:
        browser.close()


def ring_every_line(log: Path) -> None:
    """Offer a call on every line of both demo rooms, now, through the demo's broker."""
    import re
    import uuid

    from services.figures.kpis import iso
    from tests.integration.harness import produce_lines

    found = re.search(r"Kafka at (\S+);", log.read_text())
    assert found, "the demo did not say where its Kafka is"
    now_us = time.time_ns() // 1000
    lines = [orjson.dumps({"v": 1, "id": f"ring-{uuid.uuid4().hex}", "type": "call.offered",
                           "room": room, "at": iso(now_us), "call": f"ring-{uuid.uuid4().hex}",
                           "line": line})
             for room in ("north", "south") for line in ("999", "101", "online")]
    produce_lines(found.group(1), "pacesetter.events", lines)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return json.load(response)


def iso_z(at: datetime) -> str:
    """``at`` as the API's UTC time text (whole seconds, ``Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_demo_shows_staffing_plans_in_the_live_state(demo):
    # Plans are saved series by series, so the live state can turn "active" before the planner
    # has finished: wait for a saved plan of every series (the demo's two rooms, every line),
    # then for every line to show its plan.
    deadline = time.monotonic() + PLANS_WITHIN_SECONDS
    series = [(room, line) for room in ("north", "south") for line in LINES]

    def unplanned() -> list[tuple[str, str]]:
        at = datetime.now(UTC)
        with HistoryStore.open(demo.store_url) as store:
            return [(room, line) for room, line in series
                    if store.current_plan(room, line, at) is None]

    while missing := unplanned():
        assert time.monotonic() < deadline, (
            f"the planner did not plan {missing}\n{demo.tail()}")
        time.sleep(1)
    # it planned from the 28 days of simulated history it stored, which the API serves
    now_utc = datetime.now(UTC)
    oldest = _get(demo.url + "api/v1/rooms/north/intervals?" + urllib.parse.urlencode(
        {"start": iso_z(now_utc - timedelta(days=29)),
         "end": iso_z(now_utc - timedelta(days=27))}))
    assert oldest and all(record["final"] for record in oldest), oldest[:2]
    assert min(record["interval_start"] for record in oldest) <= iso_z(
        now_utc - timedelta(days=27, hours=12))
    while True:
        state = _get(demo.url + "api/v1/rooms/north/live")
        if state["staffing_plan"] == "active" and all(
                live["staffing"] is not None for live in state["lines"].values()):
            break
        assert time.monotonic() < deadline, (
            f"no staffing plan in the live state: {state['staffing_plan']}\n{demo.tail()}")
        time.sleep(1)

    # Every line shows the saved plan of the current quarter hour.
    staffing = {line: live["staffing"] for line, live in state["lines"].items()}
    assert set(staffing) == set(LINES), staffing
    now = datetime.fromisoformat(state["now"])
    with HistoryStore.open(demo.store_url) as store:
        for line, shown in staffing.items():
            row = store.current_plan("north", line, now)
            assert row is not None, f"no saved plan of north {line} at {state['now']}"
            assert shown == {"required_handlers": row["required_handlers"],
                             "forecast_calls": row["calls"],
                             "forecast_calls_upper": row["calls_upper"]}
    assert sum(shown["required_handlers"] for shown in staffing.values()) >= 1, staffing
