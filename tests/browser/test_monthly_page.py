"""The page comparing every room's month, in headless Chromium: the API's figures, no errors."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from api.app import create_app
from api.readmodel import ReadModel
from pacesetter.cli import main
from services.contract.settings import Settings
from services.figures.report import compute_records
from services.history.store import HistoryStore
from tests.api.feeds import Server, make_settings, make_topics
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


def test_the_monthly_page_shows_every_rooms_month(bootstrap, chromium, tmp_path,
                                                    capsys) -> None:
    store = HistoryStore.open(f"sqlite:///{tmp_path}/history.db")
    for room, seed in (("east", 5), ("west", 6)):
        path = tmp_path / f"{room}.jsonl"
        assert main(["simulate", "--rooms", "1", "--days", "1", "--start", "2026-05-04",
                     "--seed", str(seed), "--scale", "0.3", "--out", str(path)]) == 0
        lines = [orjson.dumps({**orjson.loads(line), "room": room})
                 for line in path.read_bytes().splitlines()]
        records = compute_records(lines, Settings())
        store.upsert_intervals(r for r in records.intervals.values() if r["final"])
        store.upsert_attendance(list(records.attendance.values()))
    capsys.readouterr()
    settings = make_settings(bootstrap)
    make_topics(settings)
    model = ReadModel(settings).start()
    assert model.wait_ready(30), model.readiness().reason
    browser = None
    try:
        with Server(create_app(settings, read_model=model, store=store)) as server:
            from fastapi.testclient import TestClient

            with TestClient(create_app(settings, read_model=model, store=store)) as client:
                api = client.get("/api/v1/reports/monthly", params={"month": "2026-05"}).json()
            browser = Browser(chromium, tmp_path / "profile",
                              log=open(tmp_path / "chromium.log", "wb"))  # noqa: SIM115
            browser.open_page()
            browser.navigate(server.url + "/reports/monthly?month=2026-05")
            rows = "document.querySelectorAll('#rooms tbody tr').length"
            assert browser.wait_for(f"{rows} === 2 && {rows}") == 2
            for row in api["rooms"]:
                cells = browser.evaluate(
                    f"[...document.querySelector('tr[data-room=\"{row['room']}\"]').cells]"
                    ".map(c => c.textContent)")
                assert cells[0] == row["room"]
                assert cells[1] == f"{row['offered_999']:,}"
                assert cells[2] == f"{row['share_999_under_10s'] * 100:.1f}%"
                assert cells[4] == f"{row['abandonment_rate_101'] * 100:.1f}%"
                immediate = row["grades"]["immediate"]
                assert cells[5] == f"{immediate['within_target_from_call_share'] * 100:.1f}%"
            browser.screenshot(ARTIFACTS / "monthly.png")
            assert browser.errors() == []
    finally:
        if browser is not None:
            browser.close()
        model.stop()
        store.close()
