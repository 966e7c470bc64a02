"""`aiworld doctor`: is every part the service needs there, and if not, how to fix it.

Each check has a short timeout, so the doctor answers in seconds even when everything is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import aiomysql
import httpx
import redis.asyncio as redis
from rich.console import Console
from rich.table import Table
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

from aiworld.config import Settings
from aiworld.memory import memori
from aiworld.memory.retrieval import store_has_search
from aiworld.npc import search_attributes
from aiworld.temporal import connect

CHECK_TIMEOUT_SECONDS = 3.0
AI_TABLES = (
    "ai_event",
    "ai_action",
    "ai_dialogue",
    "ai_bridge_cursor",
    "ai_presence",
    "ai_event_rejected",
    "ai_castle_owner",
)
# Where each SDK sends requests when no endpoint is configured.
DEFAULT_ENDPOINTS = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com",
    "claude": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "ollama": "http://127.0.0.1:11434",
}


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""


async def check_temporal(settings: Settings) -> CheckResult:
    name = f"Temporal {settings.temporal_address}"
    try:
        client = await asyncio.wait_for(connect(settings), CHECK_TIMEOUT_SECONDS)
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace),
            timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS),
        )
    except (TimeoutError, RuntimeError, OSError) as error:
        return CheckResult(
            name,
            False,
            f"cannot reach Temporal: {error or 'timed out'}",
            "start it (`aiworld dev` runs one) or set AIWORLD_TEMPORAL_ADDRESS to your cluster's frontend",
        )
    missing = [key.name for key in search_attributes.ALL if key.name not in listed.custom_attributes]
    if missing:
        commands = "; ".join(
            f"temporal operator search-attribute create --address {settings.temporal_address} "
            f"--namespace {settings.temporal_namespace} --name {attribute} --type Keyword"
            for attribute in missing
        )
        return CheckResult(
            name,
            False,
            f"search attributes missing: {', '.join(missing)} (NPC registrations are refused)",
            f"start `aiworld worker` once (it creates them), or: {commands}",
        )
    return CheckResult(name, True, f"reachable, namespace {settings.temporal_namespace}, search attributes registered")


async def check_redis(settings: Settings) -> CheckResult:
    url = settings.redis_url
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        await client.ping()
        info = await client.info("server")
    except (redis.RedisError, OSError) as error:
        return CheckResult(
            f"state store {url}",
            False,
            f"{error}",
            f"start a Redis-compatible server there (e.g. `redis-server --port {_port(url)}`, DragonflyDB in "
            "production) or set AIWORLD_REDIS_URL / REDIS_URL to one that runs; `aiworld dev` starts its own",
        )
    finally:
        await client.aclose()
    version = info.get("dragonfly_version") or info.get("redis_version", "?")
    return CheckResult(f"state store {url}", True, f"answers (server {version})")


def _port(url: str) -> str:
    tail = url.split("://", 1)[-1].split("/", 1)[0]
    return tail.rsplit(":", 1)[-1] if ":" in tail else "6379"


async def check_mariadb(settings: Settings) -> CheckResult:
    name = f"MariaDB {settings.db_user}@{settings.db_host}:{settings.db_port}/{settings.db_name}"
    try:
        connection = await asyncio.wait_for(
            aiomysql.connect(
                host=settings.db_host,
                port=settings.db_port,
                user=settings.db_user,
                password=settings.db_password.get_secret_value(),
                db=settings.db_name,
                connect_timeout=CHECK_TIMEOUT_SECONDS,
            ),
            CHECK_TIMEOUT_SECONDS,
        )
    except (TimeoutError, aiomysql.Error, OSError) as error:
        return CheckResult(
            name,
            False,
            f"cannot connect: {error or 'timed out'}",
            "check AIWORLD_DB_HOST/PORT/USER/PASSWORD/NAME (the database rAthena's map-server uses); "
            "only the bridge needs it",
        )
    try:
        async with connection.cursor() as cursor:
            await cursor.execute("SHOW TABLES LIKE 'ai\\_%'")
            present = {row[0] for row in await cursor.fetchall()}
    finally:
        connection.close()
    missing = [table for table in AI_TABLES if table not in present]
    if missing:
        return CheckResult(
            name,
            False,
            f"tables missing: {', '.join(missing)}",
            f"import rathena/sql/ai_world.sql: mariadb -u {settings.db_user} -p {settings.db_name} < rathena/sql/ai_world.sql",
        )
    return CheckResult(name, True, "reachable, AI World tables present")


async def check_llm_provider(name: str, settings: Settings) -> CheckResult:
    provider = settings.llm.providers[name]
    kind = provider.kind or name
    if kind == "offline":
        return CheckResult(f"LLM {name}", True, "offline policy: no network needed")
    endpoint = provider.endpoint or DEFAULT_ENDPOINTS.get(kind)
    if not endpoint:
        return CheckResult(f"LLM {name}", False, "no endpoint configured", f"set llm.providers.{name}.endpoint")
    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as http:
            answer = await http.get(endpoint)
    except httpx.HTTPError as error:
        return CheckResult(
            f"LLM {name}",
            False,
            f"{endpoint} unreachable: {error.__class__.__name__} {error}".strip(),
            f"check llm.providers.{name}.endpoint and the network, or remove it from the chain",
        )
    # Any HTTP answer (even 401/404 on the bare endpoint) proves the service is reachable.
    return CheckResult(f"LLM {name}", True, f"{endpoint} answers (HTTP {answer.status_code})")


async def check_memory(settings: Settings) -> CheckResult:
    memory = settings.memory
    name = f"memory backend {memory.backend}"
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        has_search = await store_has_search(client)
    except (redis.RedisError, OSError) as error:
        return CheckResult(name, False, f"the state store does not answer: {error}", "see above")
    finally:
        await client.aclose()
    if memory.backend == "memori":
        return await check_memori(settings)
    if memory.vector_search == "store" and not has_search:
        return CheckResult(
            name,
            False,
            "memory.vector_search=store, but the state store has no FT.SEARCH",
            "use DragonflyDB, Redis 8 or Redis Stack, or set AIWORLD_MEMORY__VECTOR_SEARCH=auto",
        )
    searched = "FT.SEARCH KNN" if has_search and memory.vector_search != "in_process" else "in-process cosine"
    embedded = "the LLM chain's embed()" if memory.embeddings == "provider" else "the local embedding"
    return CheckResult(
        name,
        True,
        f"vector search: {searched}; embeddings: {embedded}; cap {memory.max_memories_per_npc} memories per NPC",
    )


async def check_memori(settings: Settings) -> CheckResult:
    """Memori as the worker would open it: installed, its model on disk (loaded offline, with a
    probe embedded), its tables in its database (created when missing)."""
    name = "memory backend memori"
    version = memori.installed_version()
    if version is None:
        return CheckResult(
            name,
            False,
            "the Memori SDK (memori) is not installed in this environment",
            f"{memori.INSTALL_HINT}, or set AIWORLD_MEMORY__BACKEND=builtin",
        )
    try:
        model = memori.model_directory(settings.memory)
    except memori.MemoriUnavailable as error:
        return CheckResult(
            name,
            False,
            f"memori {version}: {error}",
            f"{memori.INSTALL_HINT}, or set AIWORLD_MEMORY__MEMORI_EMBEDDINGS_MODEL to a model directory",
        )
    try:
        backend = await memori.MemoriBackend.open(settings.memory)
    except memori.MemoriUnavailable as error:
        return CheckResult(
            name,
            False,
            f"memori {version}, model {model}: {error}",
            "check AIWORLD_MEMORY__MEMORI_DATABASE_URL and that database",
        )
    await backend.close()
    return CheckResult(
        name,
        True,
        f"memori {version}; model {model} ({backend.dimensions} dimensions, loaded offline: no download); "
        f"tables at {backend.database}; records in the state store; cap {settings.memory.max_memories_per_npc} memories per NPC",
    )


CHECKS = ("temporal", "redis", "mariadb", "llm", "memory")


async def run_checks(settings: Settings, only: frozenset[str] = frozenset(CHECKS)) -> list[CheckResult]:
    """Every check, or those named in `only` (a container's healthcheck needs just its own)."""
    checks = []
    if "temporal" in only:
        checks.append(check_temporal(settings))
    if "redis" in only:
        checks.append(check_redis(settings))
    if "mariadb" in only:
        checks.append(check_mariadb(settings))
    if "memory" in only:
        checks.append(check_memory(settings))
    if "llm" in only:
        checks += [check_llm_provider(name, settings) for name in settings.llm.providers]
    return list(await asyncio.gather(*checks))


def render(results: list[CheckResult], console: Console) -> None:
    table = Table(title="aiworld doctor", header_style="bold cyan", show_lines=True)
    for column in ("", "check", "status", "how to fix"):
        table.add_column(column)
    for result in results:
        mark = "[green]✔[/]" if result.ok else "[red]✖[/]"
        table.add_row(mark, result.name, result.detail, result.fix)
    console.print(table)
    failed = [result for result in results if not result.ok]
    console.print("[green]all good[/]" if not failed else f"[red]{len(failed)} problem(s)[/]")


def main_doctor(settings: Settings, only: frozenset[str] = frozenset(CHECKS), console: Console | None = None) -> int:
    results = asyncio.run(run_checks(settings, only))
    render(results, console or Console(highlight=False, soft_wrap=True))
    return 0 if all(result.ok for result in results) else 1
