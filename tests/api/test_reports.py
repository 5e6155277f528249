"""Monthly report routes: one room (JSON, CSV, HTML), all rooms side by side, and their page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.readmodel import ReadModel
from pacesetter.cli import main
from services.contract.settings import Settings
from services.figures.monthly import comparison_row, monthly_report, report_csv
from services.figures.report import compute_records
from services.history.store import HistoryStore

APRIL = (datetime(2026, 3, 31, 23, tzinfo=UTC), datetime(2026, 4, 30, 23, tzinfo=UTC))
NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def simulated_records(tmp: Path, room: str, seed: int) -> Any:
    path = tmp / f"{room}.jsonl"
    assert main(["simulate", "--rooms", "1", "--days", "1", "--start", "2026-04-02",
                 "--seed", str(seed), "--scale", "0.3", "--out", str(path)]) == 0
    lines = [orjson.dumps({**orjson.loads(line), "room": room})
             for line in path.read_bytes().splitlines()]
    return compute_records(lines, Settings())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryStore]:
    tmp = tmp_path_factory.mktemp("reports")
    opened = HistoryStore.open(f"sqlite:///{tmp}/history.db")
    for room, seed in (("april-a", 3), ("april-b", 4)):
        records = simulated_records(tmp, room, seed)
        opened.upsert_intervals(r for r in records.intervals.values() if r["final"])
        opened.upsert_attendance(list(records.attendance.values()))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def reports(settings: Settings, model: ReadModel, store: HistoryStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, read_model=model, store=store)) as client:
        yield client


def expected(store: HistoryStore, room: str, settings: Settings) -> dict[str, Any]:
    return monthly_report(room, "2026-04", store.intervals(room, start=APRIL[0], end=APRIL[1]),
                          store.attendance(room, *APRIL), settings)


def test_a_rooms_month_from_the_store_as_json_and_csv(
        reports: TestClient, store: HistoryStore, settings: Settings) -> None:
    want = orjson.loads(orjson.dumps(expected(store, "april-a", settings)))
    answer = reports.get("/api/v1/rooms/april-a/reports/monthly", params={"month": "2026-04"})
    assert answer.status_code == 200
    body = answer.json()
    assert body == want
    assert body["lines"] and body["grades"] and body["completeness"]["hours"] == 720

    as_csv = reports.get("/api/v1/rooms/april-a/reports/monthly", params={"month": "2026-04"},
                         headers={"Accept": "text/csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text == report_csv(expected(store, "april-a", settings))
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    offered = {r["subject"]: int(r["value"]) for r in rows
               if r["section"] == "line" and r["measure"] == "offered"}
    assert offered == {line["line"]: line["offered"] for line in body["lines"]}

    page = reports.get("/api/v1/rooms/april-a/reports/monthly",
                       params={"month": "2026-04", "format": "html"})
    assert page.status_code == 200 and "<svg" in page.text


def test_recent_records_of_the_read_model_count_too(
        reports: TestClient, model: ReadModel, settings: Settings) -> None:
    # north's day of November lives only in the read model (tests/api/feeds.py)
    want = monthly_report("north", "2026-11", model.intervals("north", None, *NOVEMBER),
                          model.attendance("north", None, *NOVEMBER), settings)
    body = reports.get("/api/v1/rooms/north/reports/monthly", params={"month": "2026-11"}).json()
    assert body == orjson.loads(orjson.dumps(want))
    assert body["lines"][0]["offered"] > 0


def test_every_rooms_month_side_by_side(reports: TestClient, store: HistoryStore,
                                        settings: Settings) -> None:
    answer = reports.get("/api/v1/reports/monthly", params={"month": "2026-04"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["start"] == "2026-03-31T23:00:00Z" and body["end"] == "2026-04-30T23:00:00Z"
    assert [row["room"] for row in body["rooms"]] == ["april-a", "april-b"]
    for row in body["rooms"]:
        assert row == orjson.loads(orjson.dumps(
            comparison_row(expected(store, row["room"], settings))))
        assert row["share_999_under_10s"] is not None
        assert row["grades"]["immediate"]["within_target_from_call_share"] is not None
    # north and south have records in November only (the read model's)
    november = reports.get("/api/v1/reports/monthly", params={"month": "2026-11"}).json()
    assert {row["room"] for row in november["rooms"]} == {"north", "south"}


@pytest.mark.parametrize("month", ["2026-13", "April", "2026-4"])
def test_a_bad_month_is_422_naming_it(reports: TestClient, month: str) -> None:
    for path in ("/api/v1/rooms/april-a/reports/monthly", "/api/v1/reports/monthly"):
        answer = reports.get(path, params={"month": month})
        assert answer.status_code == 422
        assert "month" in answer.text


def test_a_room_without_records_is_404_and_no_store_is_503(
        reports: TestClient, settings: Settings, model: ReadModel) -> None:
    answer = reports.get("/api/v1/rooms/nowhere/reports/monthly", params={"month": "2026-04"})
    assert answer.status_code == 404 and "nowhere" in answer.json()["detail"]
    with TestClient(create_app(settings, read_model=model)) as bare:
        assert bare.get("/api/v1/reports/monthly",
                        params={"month": "2026-04"}).status_code == 503


def test_the_comparison_page_is_served_whole(reports: TestClient) -> None:
    page = reports.get("/reports/monthly")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/api/v1/reports/monthly" in page.text
    assert "src=" not in page.text and "href=\"http" not in page.text  # nothing from elsewhere
