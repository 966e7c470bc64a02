"""Each provider through its official SDK, over HTTP, against the test suite's provider server."""

from __future__ import annotations

import pytest

from aiworld.llm.providers import (
    EmbeddingsUnsupported,
    InvalidOutput,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
    build_provider,
)
from aiworld.models import Decision
from tests.aiworld.llm.conftest import provider_settings

FAMILIES = {
    "openai": "openai",
    "azure": "azure",
    "deepseek": "deepseek",
    "gemini": "gemini",
    "ollama": "ollama",
    "claude": "claude",
}


@pytest.mark.parametrize("name", list(FAMILIES))
async def test_text_structured_output_and_embeddings(provider_server, name):
    provider = build_provider(name, provider_settings(provider_server)[name])
    try:
        before = provider_server.calls[FAMILIES[name]]
        text = await provider.generate("You are a test.", "Say hello.")
        assert text.text == "Hello from the test provider" and text.tokens_in > 0
        decision, completion = await provider.generate_structured("You are a test.", "Decide.", Decision)
        assert decision.actions[0].kind == "say" and decision.mood == "happy"
        assert completion.tokens_out > 0
        assert provider_server.calls[FAMILIES[name]] == before + 2, "both went over HTTP to the server"
        if name in ("claude", "deepseek"):  # neither service has an embeddings endpoint
            with pytest.raises(EmbeddingsUnsupported):
                await provider.embed(["a"])
        else:
            vectors = await provider.embed(["fresh bread", "old sword"])
            assert len(vectors) == 2 and all(len(vector) == 3 for vector in vectors)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("name", list(FAMILIES))
async def test_faults_become_typed_errors(provider_server, name):
    provider = build_provider(name, provider_settings(provider_server, timeout=0.5)[name])
    try:
        provider_server.faults[:] = ["429"]
        with pytest.raises(ProviderRateLimited) as limited:
            await provider.generate_structured("s", "Decide.", Decision)
        if name not in ("gemini", "ollama"):  # those SDKs do not expose response headers on errors
            assert limited.value.retry_after == 7
        provider_server.faults[:] = ["401"]
        with pytest.raises(ProviderAuthError):
            await provider.generate("s", "hi")
        provider_server.faults[:] = ["500"]
        with pytest.raises(ProviderUnavailable):
            await provider.generate("s", "hi")
        provider_server.faults[:] = ["stall"]
        with pytest.raises(ProviderUnavailable):
            await provider.generate("s", "hi")
        provider_server.faults[:] = ["malformed"]
        with pytest.raises(InvalidOutput, match="not JSON"):
            await provider.generate_structured("s", "Decide.", Decision)
        provider_server.faults[:] = ["schema"]
        with pytest.raises(InvalidOutput, match="does not match the schema"):
            await provider.generate_structured("s", "Decide.", Decision)
    finally:
        provider_server.faults.clear()
        await provider.aclose()


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("fault", ["html", "garbled"])
async def test_a_body_that_is_not_the_answer_means_the_provider_is_unavailable(provider_server, name, fault):
    """An HTML error page with status 200, or a body cut off mid-way: the SDK cannot read it."""
    provider = build_provider(name, provider_settings(provider_server)[name])
    try:
        provider_server.faults[:] = [fault]
        with pytest.raises(ProviderUnavailable, match="unreadable answer"):
            await provider.generate_structured("s", "Decide.", Decision)
        provider_server.faults[:] = [fault]
        with pytest.raises(ProviderUnavailable, match="unreadable answer"):
            await provider.generate("s", "hi")
        if name not in ("claude", "deepseek"):
            provider_server.faults[:] = [fault]
            with pytest.raises(ProviderUnavailable, match="unreadable answer"):
                await provider.embed(["a"])
        assert not provider_server.faults, "every fault was served by the SDK's own HTTP call"
    finally:
        provider_server.faults.clear()
        await provider.aclose()
