"""A real Prometheus scraping `pacesetter demo`: every rule and panel query returns data."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_queries import (
    DEPLOY,
    RULE_FILES,
    Query,
    alert_expressions,
    dashboard_queries,
    rule_queries,
    variable_queries,
)

from services.kafka.broker import free_port

pytestmark = pytest.mark.integration

TIMEOUT_SECONDS = 240
# Leaves time to stop the processes (gracefully: up to 20 s each) before pytest-timeout strikes.
BUDGET_SECONDS = TIMEOUT_SECONDS - 60
# Once every query has a series and the only ones waiting show just NaN (a ratio over a window
# without 999 calls, which are sparse in the demo), how much longer they get to show a number.
# NaN passes with a warning either way: waiting on to the budget (180 s) proved nothing more.
NAN_GRACE_SECONDS = 20


# -- processes ----------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, str] | None:
    """``(parent pid, start time)`` of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root`` with its start time (to never signal a reused pid)."""
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents[int(entry.name)], started[int(entry.name)] = stat
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started[pid]
                frontier.append(pid)
    return found


@contextmanager
def spawned(argv: list[str], log: Path, env: dict[str, str], cwd: Path) -> Iterator[Any]:
    """Run ``argv`` in a session of its own; on exit SIGTERM it, then SIGKILL what is left."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    family: dict[int, str] = {}
    try:
        yield proc
    finally:
        # `pacesetter demo` starts each part in a session of its own: remember them all first.
        family = _descendants(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for pid, started in family.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- Prometheus ---------------------------------------------------------------------------------
def prometheus_config(api_port: int, rules_dir: Path, worker_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, scraping the demo's API and worker every second."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "pacesetter-api"]
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{api_port}"]}]
    (worker,) = [j for j in config["scrape_configs"] if j["job_name"] == "pacesetter-worker"]
    worker["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["scrape_configs"] = [job, worker]
    config.pop("alerting", None)
    # The same rules, evaluated every second instead of every minute so the test is short.
    rule_paths = []
    for path in RULE_FILES:
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            group.pop("interval", None)
        copy = rules_dir / path.name
        copy.write_text(yaml.safe_dump(rules, sort_keys=False))
        rule_paths.append(str(copy))
    config["rule_files"] = rule_paths
    return config


def api_get(port: int, path: str, **params: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:  # Prometheus explains a bad query in the body
        return dict(json.load(exc))


def samples(result: dict[str, Any]) -> list[float]:
    """The values of an instant query's result."""
    data = result.get("data", {})
    found = data.get("result", [])
    if data.get("resultType") == "scalar":
        found = [{"value": found}]
    return [float(s["value"][1]) for s in found]


def has_data(result: dict[str, Any]) -> bool:
    """Whether a query result holds at least one sample that is a number (not NaN)."""
    return any(not math.isnan(v) for v in samples(result))


def seed_staffing_plans(store_url: str) -> None:
    """Stand in for the forecaster: a plan for every simulated room and line, around now."""
    from services.history.store import HistoryStore
    from services.simulation.simulator import LINES, ROOM_NAMES

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=now.minute % 15 + 60)
    rows = [
        {"room": room, "line": line,
         "interval_start": (start + timedelta(minutes=15 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "calls": 20.0, "calls_lower": 15.0, "calls_upper": 26.0, "aht_seconds": 240.0,
         "required_handlers": 8, "required_handlers_upper": 10, "method": "e2e-test"}
        for room in ROOM_NAMES for line in LINES for i in range(24)
    ]
    store = HistoryStore.open(store_url)
    try:
        store.save_plan(rows)
    finally:
        store.close()


@pytest.mark.timeout(TIMEOUT_SECONDS)
def test_every_rule_and_panel_query_has_data_from_a_live_demo(prometheus: str, tmp_path: Path):
    started = time.monotonic()
    deadline = started + BUDGET_SECONDS
    api_port, prom_port = free_port(), free_port()
    store_url = f"sqlite:///{tmp_path}/history.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACESETTER_")}
    worker_port = free_port()
    env.update(PACESETTER_STORE_URL=store_url, PACESETTER_DATA_DIR=str(tmp_path / "data"),
               PACESETTER_WORKER_METRICS_PORT=str(worker_port))
    (tmp_path / "data").mkdir()
    seed_staffing_plans(store_url)

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(api_port, rules_dir, worker_port)))
    demo_log, prom_log = tmp_path / "demo.log", tmp_path / "prometheus.log"

    # --no-plans: the plans are seeded above; the demo's planner (28 simulated days of
    # history, then Prophet fits) would only take the CPU the live demo needs.
    with spawned([sys.executable, "-m", "pacesetter.cli", "demo", "--api-port", str(api_port),
                  "--backfill-hours", "2", "--no-plans"], demo_log, env, tmp_path) as demo, \
         spawned([prometheus, f"--config.file={config}",
                  f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}"], prom_log, env, tmp_path) as prom:

        def logs() -> str:
            return (f"\n--- demo log ---\n{_tail(demo_log)}"
                    f"\n--- prometheus log ---\n{_tail(prom_log)}")

        def query(expr: str) -> dict[str, Any]:
            return api_get(prom_port, "/api/v1/query", query=expr)

        # Data flows once Prometheus holds the demo's counters.
        while True:
            assert demo.poll() is None, f"pacesetter demo exited with {demo.returncode}{logs()}"
            assert prom.poll() is None, f"prometheus exited with {prom.returncode}{logs()}"
            try:
                if has_data(query("pacesetter_calls_offered_total")):
                    break
            except OSError:
                pass  # Prometheus is still starting
            assert time.monotonic() < deadline, f"no pacesetter metrics in Prometheus{logs()}"
            time.sleep(1)

        strict = [q for q in rule_queries() + dashboard_queries() if not q.pending]
        lenient = alert_expressions() + [q for q in dashboard_queries() if q.pending]
        for q in lenient:  # checked for errors only: normally empty, or not exported yet
            result = query(q.expr)
            assert result["status"] == "success", f"{q.source}: {result.get('error')}\n{q.expr}"

        waiting: dict[str, tuple[Query, dict[str, Any]]] = {q.source: (q, {}) for q in strict}
        only_nan_since: float | None = None
        while waiting and time.monotonic() < deadline:
            for source, (q, _) in list(waiting.items()):
                result = query(q.expr)
                assert result["status"] == "success", (
                    f"{source}: {result.get('error')}\n{q.expr}")
                if has_data(result):
                    del waiting[source]
                else:
                    waiting[source] = (q, result)
            if not all(samples(r) for _q, r in waiting.values()):
                only_nan_since = None
            elif only_nan_since is None:
                only_nan_since = time.monotonic()
            elif time.monotonic() - only_nan_since >= NAN_GRACE_SECONDS:
                break
            if waiting:
                time.sleep(2)
        # NaN is a ratio over a window without calls (999 calls are sparse in the demo): the
        # query is right, the demo was just quiet. No series at all means a broken query.
        empty = {s: q for s, (q, r) in waiting.items() if not samples(r)}
        missing = "\n".join(f"- {s}: {q.expr!r}" for s, q in sorted(empty.items()))
        assert not empty, (f"queries without data after {time.monotonic() - started:.0f} s:\n"
                           f"{missing}{logs()}")
        if waiting:
            warnings.warn("only NaN (no calls in the window) from: " + ", ".join(sorted(waiting)),
                          stacklevel=1)

        for source, selector, label in variable_queries():
            series = api_get(prom_port, "/api/v1/series", **{"match[]": selector})
            assert any(label in s for s in series.get("data", [])), f"{source}: no {label}"

        rules = api_get(prom_port, "/api/v1/rules")["data"]["groups"]
        broken = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"]
                  if r.get("health") != "ok"]
        assert not broken, broken
