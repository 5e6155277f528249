"""``pacesetter demo`` end to end in Chromium: broker, worker, simulator, API and the dashboard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from services.broker import free_port
from tests.browser.cdp import Browser
from tests.browser.test_dashboard import ARTIFACTS, chromium  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

FIGURES = """JSON.stringify({
  figures: [...document.querySelectorAll('[data-figure]')].map((e) => e.textContent),
  mode: document.getElementById('mode').textContent,
})"""


@pytest.fixture
def demo(tmp_path):
    port = free_port()
    env = dict(os.environ, PACESETTER_API_TOKENS="",
               PACESETTER_STORE_URL=f"sqlite:///{tmp_path / 'store.db'}",
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
        while True:  # ready: the read model has caught up with what the worker published
            try:
                with urllib.request.urlopen(url + "readyz", timeout=2) as response:
                    if json.load(response)["ready"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the API never became ready"
            time.sleep(0.5)
        yield url
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
        browser.navigate(demo)
        browser.wait_for("document.querySelectorAll('.line-charts rect.bar').length > 0", 60)
        first = browser.evaluate(FIGURES)
        deadline = time.monotonic() + 90
        while browser.evaluate(FIGURES) == first:
            assert time.monotonic() < deadline, f"nothing changed on screen: {first}"
            time.sleep(0.5)
        browser.screenshot(ARTIFACTS / "demo.png")
        assert browser.errors() == []
    finally:
        browser.close()
