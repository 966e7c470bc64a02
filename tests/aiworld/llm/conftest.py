"""The provider server of the test suite, and provider settings pointing each SDK at it."""

from __future__ import annotations

import pytest_asyncio

from aiworld.config import ProviderSettings
from tests.aiworld.llm.provider_server import ProviderServer, serve


@pytest_asyncio.fixture(loop_scope="session")
async def provider_server():
    server = ProviderServer()
    running, task = await serve(server)
    yield server
    running.should_exit = True
    await task


def provider_settings(server: ProviderServer, timeout: float = 1.0) -> dict[str, ProviderSettings]:
    """One of each: the SDK's own client, only the endpoint moved to the test server."""
    common = {"api_key": "test-key", "timeout_seconds": timeout}
    return {
        "openai": ProviderSettings(
            kind="openai", endpoint=f"{server.url}/v1", model="gpt-test", embedding_model="embed", **common
        ),
        "azure": ProviderSettings(
            kind="azure_openai",
            endpoint=server.url,
            deployment="npc-mini",
            embedding_deployment="npc-embed",
            api_version="2024-10-21",
            **common,
        ),
        "deepseek": ProviderSettings(
            kind="deepseek", endpoint=f"{server.url}/deepseek", model="deepseek-chat", **common
        ),
        "gemini": ProviderSettings(
            kind="gemini", endpoint=server.url, model="gemini-test", embedding_model="text-embedding-004", **common
        ),
        "ollama": ProviderSettings(kind="ollama", endpoint=server.url, model="llama-test", **common),
        "claude": ProviderSettings(kind="claude", endpoint=server.url, model="claude-test", **common),
    }
