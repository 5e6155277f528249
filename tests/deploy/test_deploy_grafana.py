"""Grafana provisioning and the supervisor and scheduler dashboards."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from deploy_queries import (
    CONTRACT_METRICS,
    DEPLOY,
    PENDING_METRICS,
    RECORDED_METRIC,
    REPO,
    dashboard_queries,
    load_dashboards,
    load_rules,
    panels,
    provisioned_datasource_uid,
)

PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "pacesetter.yml"


def test_there_is_a_supervisor_and_a_scheduler_dashboard_with_unique_uids():
    boards = load_dashboards()
    assert {"supervisor", "scheduler"} <= set(boards)
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids)


def test_every_panel_queries_the_provisioned_prometheus():
    uid = provisioned_datasource_uid()
    for name, board in load_dashboards().items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in panels(board):
            where = f"{name} / {panel.get('title')}"
            assert panel["datasource"]["uid"] == uid, where
            assert panel.get("targets"), where
            for target in panel["targets"]:
                assert target.get("expr", "").strip(), where
                assert target.get("datasource", panel["datasource"])["uid"] == uid, where
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), where


def test_variables_query_the_provisioned_prometheus():
    uid = provisioned_datasource_uid()
    for name, board in load_dashboards().items():
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == uid, (name, variable["name"])


def test_panels_read_only_known_metrics():
    recorded = {rule["record"] for rule in load_rules() if "record" in rule}
    for query in dashboard_queries():
        assert query.metrics <= CONTRACT_METRICS | PENDING_METRICS, (query.source, query.metrics)
        assert set(RECORDED_METRIC.findall(query.expr)) <= recorded, query.source
        assert "$" not in query.expr, query.source


def test_panel_queries_parse(promtool, tmp_path: Path):
    # promtool has no "check query": each query becomes a recording rule it parses.
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query:{i}", "expr": query.expr}
        for i, query in enumerate(dashboard_queries())
    ]}]}
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scheduler_compares_forecast_with_actual_and_required_with_logged_in():
    exprs = " ".join(t["expr"] for p in panels(load_dashboards()["scheduler"])
                     for t in p["targets"])
    assert "pacesetter_forecast_calls" in exprs and "calls_offered" in exprs
    assert "pacesetter_staffing_required_handlers" in exprs and "pacesetter_handlers" in exprs


def test_provisioning_matches_the_compose_mounts():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    mounts = dict(v.split(":")[:2] for v in compose["grafana"]["volumes"])
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose
