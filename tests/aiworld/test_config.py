"""Settings from the environment and a YAML file; bad values stop with one clear line (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aiworld.config import ConfigError, load_settings


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AIWORLD_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_need_no_configuration(clean_env, tmp_path):
    clean_env.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert settings.task_queue == "aiworld"
    assert settings.llm.default_provider == "offline"
    assert settings.api_port == 8000


def test_environment_with_prefix_and_nesting(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    clean_env.setenv("AIWORLD_API_PORT", "9001")
    clean_env.setenv("AIWORLD_API_KEYS", "old-key, new-key")
    clean_env.setenv("AIWORLD_LLM__DEFAULT_PROVIDER", "azure")
    clean_env.setenv("REDIS_URL", "redis://cache:6379/3")
    settings = load_settings()
    assert settings.api_port == 9001
    assert [key.get_secret_value() for key in settings.api_keys] == ["old-key", "new-key"]
    assert settings.llm.default_provider == "azure"
    assert settings.redis_url == "redis://cache:6379/3"


def test_the_bridge_takes_an_operators_castles_and_log_table(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    clean_env.setenv("AIWORLD_BRIDGE__CASTLE_MAPS", '{"50": "myg_cas01", "15": "prtg_cas01"}')
    clean_env.setenv("AIWORLD_BRIDGE__PICKLOG_TABLE", "ragnarok_log.picklog")
    settings = load_settings()
    assert settings.bridge.castle_maps == {50: "myg_cas01", 15: "prtg_cas01"}
    assert settings.bridge.picklog_table == "ragnarok_log.picklog"


def test_yaml_file_with_env_interpolation(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    config = tmp_path / "aiworld.yaml"
    config.write_text(
        "llm:\n"
        "  default_provider: azure\n"
        "  fallback: [ollama]\n"
        "  providers:\n"
        "    azure:\n"
        "      kind: azure_openai\n"
        "      endpoint: ${AZURE_ENDPOINT}\n"
        "      api_key: ${AZURE_KEY}\n"
        "      deployment: ${AZURE_DEPLOYMENT:-gpt-4o-mini}\n"
        "    ollama:\n"
        "      endpoint: http://127.0.0.1:11434\n"
        "      model: llama3.2\n"
        "api_port: 8100\n"
    )
    clean_env.setenv("AIWORLD_CONFIG", str(config))
    clean_env.setenv("AZURE_ENDPOINT", "https://example.openai.azure.com")
    clean_env.setenv("AZURE_KEY", "secret")
    clean_env.setenv("AIWORLD_API_PORT", "8200")  # the environment wins over the file
    settings = load_settings()
    azure = settings.llm.providers["azure"]
    assert azure.endpoint == "https://example.openai.azure.com"
    assert azure.api_key.get_secret_value() == "secret"
    assert azure.deployment == "gpt-4o-mini"
    assert settings.llm.fallback == ["ollama"]
    assert settings.api_port == 8200


def test_missing_env_reference_names_the_key(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    config = tmp_path / "aiworld.yaml"
    config.write_text("llm:\n  providers:\n    openai:\n      api_key: ${OPENAI_KEY_NOT_SET}\n")
    clean_env.setenv("AIWORLD_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"llm.providers.openai.api_key: environment variable OPENAI_KEY_NOT_SET"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AIWORLD_API_PORT", "eighty", "AIWORLD_API_PORT"),
        ("AIWORLD_API_PORT", "70000", "less than or equal to 65535"),
        ("AIWORLD_REDIS_URL", "localhost:6379", "redis://host:6379/0"),
        ("AIWORLD_TEMPORAL_ADDRESS", "localhost", "host:port"),
        ("AIWORLD_LLM__BATCH_SIZE", "0", "AIWORLD_LLM__BATCH_SIZE"),
        ("AIWORLD_BRIDGE__CASTLE_MAPS", '{"50": "My Castle"}', "AIWORLD_BRIDGE__CASTLE_MAPS"),
        ("AIWORLD_BRIDGE__PICKLOG_TABLE", "picklog; DROP TABLE x", "AIWORLD_BRIDGE__PICKLOG_TABLE"),
    ],
)
def test_invalid_values_are_named(clean_env, tmp_path, name, value, expected):
    clean_env.chdir(tmp_path)
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert expected in str(error.value)


def test_cli_exits_2_with_one_clear_message(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIWORLD_")}
    env["AIWORLD_API_PORT"] = "not-a-port"
    done = subprocess.run(
        [sys.executable, "-m", "aiworld.cli", "npc", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AIWORLD_API_PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_azure_openai_is_the_default_provider_when_configured(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    config = tmp_path / "aiworld.yaml"
    config.write_text(
        "llm:\n  providers:\n    azure:\n      kind: azure_openai\n      endpoint: https://x.openai.azure.com\n"
        "      deployment: npc-mini\n    ollama:\n      model: llama3.2\n"
    )
    clean_env.setenv("AIWORLD_CONFIG", str(config))
    assert load_settings().llm.default_provider == "azure"
    clean_env.setenv("AIWORLD_LLM__DEFAULT_PROVIDER", "ollama")  # an explicit choice wins
    assert load_settings().llm.default_provider == "ollama"
