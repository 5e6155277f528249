"""A supervisor's shift in headless Chromium: sign in, acknowledge an alert, reload, sign out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

from api.app import create_app
from api.readmodel import ReadModel
from services.history.store import HistoryStore
from tests.api.feeds import Feed, Server, iso, live_state, make_settings, make_topics
from tests.browser.axe import axe_source, run_axe, serious
from tests.browser.cdp import Browser
from tests.browser.test_dashboard import ARTIFACTS, chromium  # noqa: F401 - fixture

TOKENS = "viewer:viewer-token-1,a.khan=supervisor:supervisor-token-1"
SIGN_IN_SHOWN = "!document.getElementById('signin').hidden"


def _alert(room: str, started: datetime) -> dict:
    return {"id": f"{room}:long_wait:999", "rule": "long_wait", "room": room, "line": "999",
            "incident": None, "severity": "critical", "state": "firing",
            "started_at": iso(started), "resolved_at": None, "value": 75.0, "threshold": 60.0,
            "message": "999: a caller has waited 1 min 15 s (limit 1 min)"}


def _type(browser: Browser, selector: str, text: str) -> None:
    """Focus a field and type into it as a keyboard would."""
    browser.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
    browser.send("Input.insertText", {"text": text})


def _press_enter(browser: Browser) -> None:
    for kind in ("keyDown", "keyUp"):
        browser.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                "windowsVirtualKeyCode": 13, "text": "\r"})


def _cookies(browser: Browser, url: str) -> list[str]:
    found = browser.send("Network.getCookies", {"urls": [url]})["cookies"]
    return [c["name"] for c in found]


def test_sign_in_acknowledge_reload_and_sign_out(bootstrap, chromium, tmp_path):  # noqa: F811
    settings = make_settings(bootstrap, api_tokens=TOKENS)
    make_topics(settings)
    feed = Feed(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    live = live_state("north", now, alerts=[_alert("north", now - timedelta(minutes=4))])
    for line in live["lines"].values():
        line["staffing"] = None  # no staffing plan: the page asks for no forecast
    feed.live(live)
    feed.alert(_alert("north", now - timedelta(minutes=4)))
    feed.flush()
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'history.db'}")
    model = ReadModel(settings).start()
    assert model.wait_ready(30), model.readiness().reason
    browser = None
    try:
        with Server(create_app(settings, read_model=model, store=store)) as server:
            browser = Browser(chromium, tmp_path / "profile",
                              log=open(tmp_path / "chromium.log", "wb"))  # noqa: SIM115
            browser.open_page()
            browser.navigate(server.url + "/")
            browser.wait_for(SIGN_IN_SHOWN)
            assert serious(run_axe(browser, axe_source())) == []

            _type(browser, "#signin-token", "supervisor-token-1")
            _press_enter(browser)
            browser.wait_for("document.getElementById('account').textContent.includes('a.khan')")
            assert "token" not in browser.evaluate("location.href")
            assert "pacesetter_session" not in browser.evaluate("document.cookie")  # HttpOnly
            assert _cookies(browser, server.url) == ["pacesetter_session"]

            button = "document.querySelector('#alerts button.ack')"
            browser.wait_for(f"!!{button}")
            browser.evaluate(f"{button}.focus()")
            _press_enter(browser)  # keyboard, not a mouse
            browser.wait_for("document.activeElement && document.activeElement.id === 'ack-note'")
            browser.send("Input.insertText", {"text": "seen, calling in two more handlers"})
            _press_enter(browser)
            acked = "document.querySelector('#alerts .acked')?.textContent || ''"
            assert "a.khan" in browser.wait_for(acked)
            browser.screenshot(ARTIFACTS / "dashboard-acknowledged.png")
            assert serious(run_axe(browser, axe_source())) == []

            browser.navigate(server.url + "/")  # reload: still signed in, still acknowledged
            shown = browser.wait_for(acked)
            assert "a.khan" in shown and "two more handlers" in shown
            assert browser.evaluate(SIGN_IN_SHOWN) is False

            # The next shift reads it in the dashboard's history, opened from the keyboard.
            browser.evaluate("document.querySelector('#history summary').focus()")
            _press_enter(browser)
            row = "document.querySelector('#history-body tbody tr')?.innerText || ''"
            assert "a.khan" in browser.wait_for(row)

            # What the next shift and an inspector read, with a token of their own.
            history = httpx.get(server.url + "/api/v1/rooms/north/alerts/history",
                                headers={"Authorization": "Bearer viewer-token-1"}).json()
            assert [(e["acknowledged_by"], e["note"]) for e in history] == [
                ("a.khan", "seen, calling in two more handlers")]

            browser.evaluate("document.getElementById('signout').click()")
            browser.wait_for(SIGN_IN_SHOWN)
            assert _cookies(browser, server.url) == []
            browser.navigate(server.url + "/")
            browser.wait_for(SIGN_IN_SHOWN)
            assert browser.evaluate("document.querySelectorAll('#alerts li[data-alert]').length") \
                == 0
            errors = browser.errors()
            assert errors == [], errors
    finally:
        if browser is not None:
            browser.close()
        model.stop()
        feed.close()
        store.close()
