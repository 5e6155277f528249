"""docker-compose.yml, the Dockerfile and the Kafka topic script."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml
from deploy_queries import DEPLOY, REPO

COMPOSE = REPO / "docker-compose.yml"
SECRETS = {
    "PACESETTER_API_TOKENS": "viewer:compose-test-token,admin:compose-test-admin",
    "PACESETTER_GRAFANA_ADMIN_PASSWORD": "compose-test-password",
}
PACESETTER_SERVICES = {"worker-1", "worker-2", "api", "forecaster"}
# Services without a health check, and why: batch jobs have no port to ask.
WITHOUT_HEALTHCHECK = {"kafka-init", "forecaster"}


def compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PACESETTER_") and not k.startswith("COMPOSE_")}
    env.update(extra)
    return env


def compose_config(docker_compose: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker_compose, "-f", str(COMPOSE), "config"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_docker_compose_accepts_the_file(docker_compose):
    result = compose_config(docker_compose, compose_env(**SECRETS))
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) >= PACESETTER_SERVICES | {
        "kafka", "kafka-init", "prometheus", "alertmanager", "grafana"}
    # Secrets reach the containers from the environment.
    api_env = resolved["services"]["api"]["environment"]
    assert api_env["PACESETTER_API_TOKENS"] == SECRETS["PACESETTER_API_TOKENS"]


def test_docker_compose_refuses_to_run_without_the_secrets(docker_compose):
    for missing in SECRETS:
        present = {k: v for k, v in SECRETS.items() if k != missing}
        result = compose_config(docker_compose, compose_env(**present))
        assert result.returncode != 0
        assert missing in result.stderr


def test_the_file_holds_no_secret_values():
    for name, service in services().items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if re.search(r"TOKEN|PASSWORD|SECRET|_KEY$", key):
                assert value is None or re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), (
                    f"{name}: {key} must come from the environment")


def test_pacesetter_containers_are_configured_through_pacesetter_variables_only():
    for name in PACESETTER_SERVICES:
        env = services()[name]["environment"]
        assert env, name
        assert all(key.startswith("PACESETTER_") for key in env), (
            f"{name}: {[k for k in env if not k.startswith('PACESETTER_')]}")


def test_workers_share_a_group_but_not_their_state():
    s = services()
    assert s["worker-1"]["environment"]["PACESETTER_WORKER_ID"] == (
        s["worker-2"]["environment"]["PACESETTER_WORKER_ID"])
    state = [{v for v in s[w]["volumes"] if v.endswith(":/var/lib/pacesetter/worker")}
             for w in ("worker-1", "worker-2")]
    assert state[0] and state[1] and not state[0] & state[1]


def test_long_running_services_have_health_checks():
    for name, service in services().items():
        if name not in WITHOUT_HEALTHCHECK:
            assert service.get("healthcheck", {}).get("test"), name


def test_dependencies_wait_for_a_condition():
    for name, service in services().items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert rule["condition"] in {
                "service_healthy", "service_completed_successfully", "service_started"
            }, (name, dependency)
    assert services()["api"]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully")
    assert services()["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_third_party_images_are_pinned():
    for name, service in services().items():
        image = service["image"]
        if name in PACESETTER_SERVICES:
            continue
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), name
    assert services()["kafka"]["image"].startswith("apache/kafka:")


def test_bind_mounts_exist():
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source}"


def test_topic_script_creates_every_topic_with_its_partitions_and_retention(tmp_path: Path):
    log = tmp_path / "calls.log"
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        fake = tmp_path / tool
        fake.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "KAFKA_BIN": str(tmp_path), "PACESETTER_PARTITIONS": "12"}
    subprocess.run(["bash", str(DEPLOY / "kafka" / "create-topics.sh")], env=env, check=True,
                   capture_output=True, text=True, timeout=30)
    created = {}
    for line in log.read_text().splitlines():
        if line.startswith("kafka-topics.sh") and "--create" in line:
            topic = re.search(r"--topic (\S+)", line).group(1)
            created[topic] = line
    assert set(created) == {"pacesetter.events", "pacesetter.intervals", "pacesetter.live",
                            "pacesetter.alerts", "pacesetter.deadletter"}
    assert all("--partitions 12" in line for line in created.values())
    day_ms = 86_400_000
    assert f"retention.ms={14 * day_ms}" in created["pacesetter.events"]
    assert f"retention.ms={30 * day_ms}" in created["pacesetter.deadletter"]
    altered = {re.search(r"--entity-name (\S+)", line).group(1): line
               for line in log.read_text().splitlines() if line.startswith("kafka-configs.sh")}
    for topic in ("pacesetter.intervals", "pacesetter.live", "pacesetter.alerts"):
        # bounded: the API's 8 days of records and 2 days more, then deleted
        assert "cleanup.policy=compact,delete" in created[topic]
        assert f"retention.ms={10 * day_ms}" in created[topic]
        assert "cleanup.policy=[compact,delete]" in altered[topic]


def test_image_is_multi_stage_and_runs_as_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+", dockerfile, re.MULTILINE)
    assert len(stages) >= 2
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    # The build context holds the packages, not the virtualenv or the repository history.
    ignore = (REPO / ".dockerignore").read_text().split()
    assert "*" in ignore and not any(p.startswith(("!.venv", "!.git", "!data")) for p in ignore)
