"""docker-compose.temporal.yml is wired right: validated by `docker compose config` where the
client has the compose plugin, and in every case parsed and checked service by service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aiworld.config import LlmSettings, ObservabilitySettings, Settings

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "docker-compose.temporal.yml"
REQUIRED_ENV = {
    "AIWORLD_API_KEYS": "k1",
    "AIWORLD_JWT_SECRET": "s" * 32,
    "AIWORLD_DB_HOST": "db",
    "AIWORLD_DB_PASSWORD": "p",
    "TEMPORAL_DB_PASSWORD": "t",
    "PROMETHEUS_API_KEY": "k1",
    "GRAFANA_ADMIN_PASSWORD": "g",
}
# Services without authentication of their own: never published beyond this host.
UNAUTHENTICATED = ("temporal", "temporal-ui", "postgresql", "dragonfly", "temporal-admin-tools", "prometheus")
OUR_SERVICES = ("worker", "api", "bridge")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def settings_env_names() -> set[str]:
    names = {f"AIWORLD_{name.upper()}" for name in Settings.model_fields}
    names |= {f"AIWORLD_LLM__{name.upper()}" for name in LlmSettings.model_fields}
    names |= {f"AIWORLD_OBSERVABILITY__{name.upper()}" for name in ObservabilitySettings.model_fields}
    return names


def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker compose plugin on this machine; the wiring tests below still run")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "-q"],
        env={**os.environ, **REQUIRED_ENV},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        one_shot = service.get("restart") == "no"
        assert one_shot or "healthcheck" in service, f"{name} has no healthcheck"


def test_dependencies_exist_and_wait_for_health(compose):
    services = compose["services"]
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert rule["condition"] in {"service_healthy", "service_completed_successfully"}
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"


def test_temporal_runs_on_postgres_with_pause_enabled(compose):
    temporal = compose["services"]["temporal"]
    assert temporal["environment"]["DB"] == "postgres12"
    assert temporal["environment"]["POSTGRES_SEEDS"] == "postgresql"
    mounted = [volume.split(":")[0] for volume in temporal["volumes"]]
    config = yaml.safe_load((ROOT / mounted[0]).read_text())
    assert config["frontend.WorkflowPauseEnabled"][0]["value"] is True
    assert compose["services"]["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    registered = " ".join(compose["services"]["temporal-search-attributes"]["command"])
    assert all(name in registered for name in ("NpcMap", "NpcFaction", "NpcMood", "NpcActivity"))


def test_our_services_point_at_the_right_places(compose):
    services = compose["services"]
    for name in OUR_SERVICES:
        env = services[name]["environment"]
        assert env["AIWORLD_TEMPORAL_ADDRESS"] == "temporal:7233", name
        assert env["AIWORLD_REDIS_URL"].startswith("redis://dragonfly:6379"), name
        assert services[name]["command"][:2] == ["aiworld", name]
        assert services[name]["build"] == "."
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["bridge"]["environment"]["AIWORLD_API_URL"] == "http://api:8000"
    assert "8000:8000" in services["api"]["ports"]
    assert services["api"]["environment"]["AIWORLD_API_HOST"] == "0.0.0.0"


def test_every_aiworld_variable_is_a_real_setting(compose):
    known = settings_env_names()
    used = set(re.findall(r"\bAIWORLD_[A-Z_]*[A-Z]\b", COMPOSE.read_text()))
    assert used and used <= known, f"not settings: {sorted(used - known)}"


def test_dockerfile_installs_the_cli():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "USER aiworld" in dockerfile
    for package in ("aiworld", "workflows", "activities", "api", "bridge"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_unauthenticated_services_are_published_on_loopback_only(compose):
    services = compose["services"]
    assert "127.0.0.1:8080:8080" in services["temporal-ui"]["ports"]
    for name in UNAUTHENTICATED:
        for published in services[name].get("ports", []):
            assert str(published).startswith("127.0.0.1:"), f"{name} publishes {published} on every interface"


def test_secrets_are_required_never_defaulted():
    text = COMPOSE.read_text()
    secrets = re.findall(r"\$\{([A-Z_]*(?:PASSWORD|SECRET|KEYS?)[A-Z_]*)(:[-?])", text)
    assert {name for name, _ in secrets} >= {
        "TEMPORAL_DB_PASSWORD",
        "AIWORLD_JWT_SECRET",
        "AIWORLD_DB_PASSWORD",
        "AIWORLD_API_KEYS",
    }
    defaulted = sorted({name for name, form in secrets if form != ":?"})
    assert not defaulted, f"secrets with a default: {defaulted}"


def test_prometheus_scrapes_every_metrics_port_and_grafana_gets_the_dashboard(compose):
    services = compose["services"]
    worker = services["worker"]["environment"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    ports = {job["dns_sd_configs"][0]["port"] for job in jobs.values() if "dns_sd_configs" in job}
    assert ports == {
        worker["AIWORLD_OBSERVABILITY__TEMPORAL_METRICS_PORT"],
        worker["AIWORLD_OBSERVABILITY__WORKER_METRICS_PORT"],
    }
    assert worker["AIWORLD_OBSERVABILITY__METRICS_HOST"] == "0.0.0.0"
    api = jobs["aiworld-api"]
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    key_file = api["http_headers"]["X-API-Key"]["files"][0]
    assert {"source": "prometheus-api-key", "target": key_file} in services["prometheus"]["configs"]
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in services["grafana"]["volumes"]}
    provisioning = ROOT / mounted["/etc/grafana/provisioning"]
    dashboards = yaml.safe_load((provisioning / "dashboards" / "aiworld.yml").read_text())["providers"][0]
    assert (ROOT / mounted[dashboards["options"]["path"]] / "aiworld.json").is_file()
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
