"""The scheduler's commands: import, forecast, staffing and backtest on a store file."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from forecasting.synthetic import synthetic_intervals
from pacesetter.cli import main
from services.planning.calendar import local_day_bounds

FIRST = datetime(2026, 10, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def history_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "intervals.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["room", "line", "interval_start", "offered", "aht_seconds"])
        for record in synthetic_intervals("north", "999", FIRST, 30, seed=21):
            writer.writerow([record["room"], record["line"], record["interval_start"],
                             record["offered"], record["aht_seconds"] or ""])
        writer.writerow(["north", "999", "2026-11-09T00:05:00Z", "3", ""])
    return path


@pytest.fixture(scope="module")
def store_url(history_csv, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'history.db'}"
    assert main(["import", "intervals", str(history_csv), "--store", url]) == 1  # one bad row
    return url


def test_import_reports_bad_rows_by_line_and_imports_the_rest(history_csv, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    assert main(["import", "intervals", str(history_csv), "--store", url]) == 1
    out, err = capsys.readouterr()
    assert "column interval_start:" in err and "quarter hour" in err
    assert "intervals imported, 1 rows rejected" in out


def test_import_calls_with_a_column_map(tmp_path, capsys):
    path = tmp_path / "calls.csv"
    path.write_text("Site,Queue,Start,Answer,End\n"
                    "north,101,2026-11-21T10:01:00Z,2026-11-21T10:02:00Z,2026-11-21T10:06:00Z\n"
                    "north,101,2026-11-21T10:03:00Z,,\n")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["import", "calls", str(path), "--store", url, "--map",
                 "offered_at=Start,answered_at=Answer,ended_at=End,line=Queue,room=Site"]) == 0
    assert "2 calls aggregated into 1 intervals, 0 rows rejected" in capsys.readouterr().out


def test_staffing_prints_a_table_and_the_chosen_method(store_url, capsys):
    assert main(["staffing", "--room", "north", "--line", "999", "--date", "2026-11-09",
                 "--store", store_url]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "target 90% answered in under 10 s" in lines[0]
    assert lines[1].split()[:5] == ["local", "calls", "upper", "AHT", "s"]
    assert sum(1 for line in lines if line[:2].isdigit() and line[2] == ":") == 96
    assert "method: " in lines[-1] and "backtest: WAPE" in lines[-1]


def test_staffing_as_csv(store_url, capsys):
    assert main(["staffing", "--room", "north", "--line", "999", "--date", "2026-11-09",
                 "--store", store_url, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 96 and int(rows[40]["required_handlers"]) >= 1


def test_backtest_as_json_and_as_a_table(store_url, capsys):
    assert main(["backtest", "--room", "north", "--line", "999", "--weeks", "2",
                 "--store", store_url, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    methods = result["methods"]
    assert {"prophet", "seasonal_naive", "smoothed_profile", "combination"} <= set(methods)
    assert {f"mean_{n}w" for n in range(2, 9)} | {f"median_{n}w" for n in range(2, 9)} \
        <= set(methods)
    assert all({"wape", "mase", "coverage"} <= set(scores) for scores in methods.values())
    assert result["chosen"] in methods and result["best_simple"] in methods
    # The choice is never worse than what a scheduler would do by hand.
    assert methods[result["chosen"]]["wape"] <= methods[result["best_simple"]]["wape"]
    assert 0 < result["noise_floor"] < methods[result["chosen"]]["wape"]
    assert main(["backtest", "--room", "north", "--line", "999", "--weeks", "2",
                 "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert "WAPE" in out and "MASE" in out and "chosen (*):" in out
    assert "against the best simple method" in out and "noise floor" in out
    assert main(["backtest", "--room", "north", "--line", "999", "--weeks", "4",
                 "--store", store_url]) == 2
    assert "needs at least 43 days" in capsys.readouterr().err


def test_forecast_plot_and_csv(store_url, tmp_path, capsys):
    plot = tmp_path / "north-999.png"
    assert main(["forecast", "--room", "north", "--line", "999", "--days", "2",
                 "--start", "2026-11-09", "--plot", str(plot), "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert "Mon 2026-11-09" in out and "method: " in out
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["forecast", "--room", "north", "--line", "999", "--days", "1", "--csv",
                 "--start", "2026-11-09", "--store", store_url]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 96 and rows[0]["interval_start"] == "2026-11-09T00:00:00Z"


def test_forecast_all_plans_every_line_in_the_store(store_url, capsys):
    start = local_day_bounds((FIRST + timedelta(days=30)).date())[0]
    assert main(["forecast", "--all", "--days", "1", "--start", start.date().isoformat(),
                 "--jobs", "1", "--store", store_url]) == 0
    assert "1 series planned, 0 failed" in capsys.readouterr().out


def test_the_store_comes_from_the_settings(store_url, monkeypatch, capsys):
    monkeypatch.setenv("PACESETTER_STORE_URL", store_url)
    assert main(["forecast", "--room", "north", "--line", "101", "--days", "1"]) == 2
    assert "no final intervals" in capsys.readouterr().err
    assert main(["forecast", "--days", "1"]) == 2
    assert "--room and --line" in capsys.readouterr().err
