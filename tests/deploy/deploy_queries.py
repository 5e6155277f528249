"""The PromQL the deploy files hold (rules, Grafana panels), in a form a test can evaluate."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

# API.md, "Prometheus metrics": the names the API promises.
CONTRACT_METRICS = frozenset({
    "pacesetter_calls_offered_total",
    "pacesetter_calls_answered_total",
    "pacesetter_calls_abandoned_total",
    "pacesetter_calls_callbacks_requested_total",
    "pacesetter_answer_wait_seconds_bucket",
    "pacesetter_answer_wait_seconds_count",
    "pacesetter_answer_wait_seconds_sum",
    "pacesetter_queue_calls",
    "pacesetter_queue_longest_wait_seconds",
    "pacesetter_interval_service_level_ratio",
    "pacesetter_interval_abandonment_ratio",
    "pacesetter_failure_demand_ratio",
    "pacesetter_handlers",
    "pacesetter_staffing_required_handlers",
    "pacesetter_forecast_calls",
    "pacesetter_forecast_calls_upper",
    "pacesetter_alerts_firing",
    "pacesetter_events_total",
    "pacesetter_events_rejected_total",
    "pacesetter_event_lag_seconds",
    "pacesetter_readmodel_ready",
}) | frozenset({
    # each worker's /metrics (streams/observe.py)
    "pacesetter_worker_partitions_owned",
    "pacesetter_worker_partitions_rebuilding",
    "pacesetter_worker_rebuild_messages",
    "pacesetter_worker_rebuild_seconds",
    "pacesetter_worker_rebuilds_total",
    "pacesetter_worker_lag_messages",
    "pacesetter_worker_lag_seconds",
    "pacesetter_worker_events_applied_total",
    "pacesetter_worker_rebuild_messages_replayed_total",
    "pacesetter_worker_dead_letters_total",
    "pacesetter_worker_broker_connected",
    "pacesetter_worker_last_commit_age_seconds",
    "pacesetter_worker_event_loop_stall_seconds",
    "pacesetter_worker_ready",
    "pacesetter_worker_fetch_max_wait_ms",
    "pacesetter_worker_checkpoints_total",
    "pacesetter_worker_checkpoint_pause_seconds",
    "pacesetter_worker_freshness_seconds_bucket",
    # the API's own freshness stages (api/metrics.py)
    "pacesetter_api_freshness_seconds_bucket",
})
# Metrics a dashboard may use before the API exports them: their queries are checked for errors
# only. None now: the forecast gauges come from the live state's staffing plan.
PENDING_METRICS: frozenset[str] = frozenset()

RAW_METRIC = re.compile(r"\b(pacesetter_[a-z0-9_]+)\b")
RECORDED_METRIC = re.compile(r"\b(pacesetter:[a-z0-9_:]+)")
CLAUSE_JOIN = re.compile(r"^\s*and\s*$", re.MULTILINE)
# A comparison with a number (or arithmetic on numbers) that ends a clause.
THRESHOLD = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*[-+*/().0-9\s]+$")
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


@dataclass(frozen=True)
class Query:
    """One PromQL expression to evaluate, and where it comes from."""

    source: str
    expr: str

    @property
    def metrics(self) -> set[str]:
        """The raw ``pacesetter_*`` metric names it reads."""
        return set(RAW_METRIC.findall(self.expr))

    @property
    def pending(self) -> bool:
        """Whether it reads a metric the API does not promise yet."""
        return bool(self.metrics & PENDING_METRICS)


def load_rules() -> list[dict[str, Any]]:
    """Every rule of every rule file, each with its group's name under ``group``."""
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                rules.append({**rule, "group": group["name"], "file": path.name})
    return rules


def alert_clauses(expr: str) -> list[tuple[str, str]]:
    """Split an alert expression into ``(left-hand side, threshold comparison)`` per clause.

    Raises:
        ValueError: a clause does not end with a comparison against a number.
    """
    clauses = []
    for part in CLAUSE_JOIN.split(expr.strip()):
        part = part.strip()
        match = THRESHOLD.search(part)
        if not match:
            raise ValueError(f"clause has no trailing threshold comparison: {part!r}")
        clauses.append((part[: match.start()].strip(), match.group(0).strip()))
    return clauses


def rule_queries() -> list[Query]:
    """Recording rule expressions, their recorded names, and the left-hand side of each alert
    clause (alerts are normally quiet: their inputs must not be)."""
    queries = []
    for rule in load_rules():
        if "record" in rule:
            queries.append(Query(f"record {rule['record']} (expr)", rule["expr"]))
            queries.append(Query(f"record {rule['record']}", rule["record"]))
        else:
            for i, (lhs, _) in enumerate(alert_clauses(rule["expr"]), start=1):
                queries.append(Query(f"alert {rule['alert']} clause {i}", lhs))
    return queries


def alert_expressions() -> list[Query]:
    """Whole alert expressions (usually empty, but they must evaluate without error)."""
    return [Query(f"alert {r['alert']}", r["expr"]) for r in load_rules() if "alert" in r]


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Dashboards by file stem."""
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows flattened away)."""
    found = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panels({"panels": panel.get("panels", [])}))
        else:
            found.append(panel)
    return found


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana variables: dashboard ones by ``values`` (default ``.+``), built-ins by a
    fixed duration."""
    values = values or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in GRAFANA_VARIABLES:
            return GRAFANA_VARIABLES[name]
        return values.get(name, ".+")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", replace, expr)


def dashboard_queries() -> list[Query]:
    """Every panel target of every dashboard, variables substituted."""
    queries = []
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                queries.append(Query(
                    f"{name} / {panel['title']} / {target['refId']}",
                    substitute(target["expr"]),
                ))
    return queries


def variable_queries() -> list[tuple[str, str, str]]:
    """``(source, series selector, label)`` of every ``label_values(selector, label)`` variable."""
    found = []
    for name, dashboard in load_dashboards().items():
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", text)
            if match:
                found.append((f"{name} / ${variable['name']}", substitute(match.group(1)),
                              match.group(2)))
    return found


def provisioned_datasource_uid() -> str:
    """The uid of the provisioned Prometheus data source."""
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (prometheus,) = [s for s in sources if s["type"] == "prometheus"]
    return str(prometheus["uid"])
