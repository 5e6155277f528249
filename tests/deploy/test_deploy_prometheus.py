"""Prometheus configuration, recording and alert rules, and the Alertmanager route."""

from __future__ import annotations

import subprocess

import yaml
from deploy_queries import (
    CONTRACT_METRICS,
    DEPLOY,
    RAW_METRIC,
    RECORDED_METRIC,
    RULE_FILES,
    alert_clauses,
    load_rules,
)

PROMETHEUS = DEPLOY / "prometheus"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict]:
    return [rule for rule in load_rules() if "alert" in rule]


def test_prometheus_config_is_valid(promtool):
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_files_are_valid(promtool):
    result = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool):
    assert RULE_TESTS
    result = run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it():
    fired = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert {rule["alert"] for rule in alerts()} - fired == set()


def test_every_alert_has_a_severity_and_a_summary_a_person_can_read():
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_every_alert_clause_ends_with_a_threshold_so_its_inputs_can_be_checked():
    for rule in alerts():
        for lhs, comparison in alert_clauses(rule["expr"]):
            assert lhs and comparison, rule["alert"]


def test_the_required_alerts_exist():
    names = {rule["alert"] for rule in alerts()}
    assert {
        "Pacesetter999ServiceLevelFastBurn",
        "Pacesetter999ServiceLevelSlowBurn",
        "Pacesetter101AbandonmentHigh",
        "Pacesetter999LongWait",
        "PacesetterLongWait",
        "PacesetterPipelineLag",
        "PacesetterDeadLetterRate",
    } <= names


def test_rules_read_only_metrics_the_api_promises_or_rules_record():
    recorded = {rule["record"] for rule in load_rules() if "record" in rule}
    for rule in load_rules():
        name = rule.get("record") or rule["alert"]
        raw = set(RAW_METRIC.findall(rule["expr"]))
        assert raw <= CONTRACT_METRICS, f"{name}: {raw - CONTRACT_METRICS}"
        assert set(RECORDED_METRIC.findall(rule["expr"])) <= recorded, name


def test_recorded_names_follow_level_metric_operation():
    for rule in load_rules():
        if "record" in rule:
            level, metric, operation = rule["record"].split(":")
            assert level == "pacesetter" and metric and operation, rule["record"]


def test_alertmanager_routes_every_severity_to_a_defined_receiver():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers
    routed = set()
    for sub in route.get("routes", []):
        assert sub["receiver"] in receivers
        for matcher in sub.get("matchers", []):
            if matcher.startswith("severity="):
                routed.add(matcher.split("=", 1)[1].strip('"'))
    severities = {rule["labels"]["severity"] for rule in alerts()}
    # Severities without their own route go to the default receiver.
    assert routed <= severities
    assert {"room", "line"} <= set(route["group_by"])


def test_alertmanager_config_is_valid(amtool: str):
    result = subprocess.run([amtool, "check-config", str(ALERTMANAGER)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for labels, receiver in [(["severity=critical"], "duty-manager"),
                             (["severity=warning"], "it-service-desk"),
                             (["severity=info"], "performance-team")]:
        result = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
             f"--verify.receivers={receiver}", *labels],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
