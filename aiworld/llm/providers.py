"""LLM providers through their official SDKs, behind one interface.

Each provider answers plain text (`generate`), JSON that must validate against a pydantic model
(`generate_structured`, using the provider's native JSON or tool mode) and embeddings where the
service has them. SDK retries are off (`max_retries=0`): the router decides what happens next,
so every SDK error is translated into one of the typed errors below. An HTTP answer the SDK
cannot read (an HTML error page of a proxy with status 200, a body cut off mid-way) counts as the
service being unavailable, like a 5xx.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
import httpx
import httpx2
import ollama
import openai
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from pydantic import BaseModel, ValidationError

from aiworld.config import ProviderSettings
from aiworld.models import describe_invalid

Model = TypeVar("Model", bound=BaseModel)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a dead or stalled connection raises. google-genai speaks through httpx2, or through
    aiohttp when that is installed (the memori extra and the benchmark bring it, and so may an
    operator's environment): its stalls are then a TimeoutError and its dead connections an
    aiohttp.ClientError. The other SDKs speak through httpx."""
    errors: tuple[type[BaseException], ...] = (
        httpx.TransportError,
        httpx2.TransportError,
        ConnectionError,
        TimeoutError,
    )
    try:
        import aiohttp
    except ImportError:
        return errors
    return (*errors, aiohttp.ClientError)


TRANSPORT_ERRORS = _transport_errors()
MAX_OUTPUT_TOKENS = 700


class ProviderError(Exception):
    """A provider could not answer; `retryable` says whether the same call may work later."""

    retryable = True

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderRateLimited(ProviderError):
    def __init__(self, provider: str, message: str, retry_after: float | None) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after


class ProviderAuthError(ProviderError):
    retryable = False


class ProviderBadRequest(ProviderError):
    retryable = False


class ProviderUnavailable(ProviderError):
    """5xx, connection refused, timeout, an HTTP body that is not the service's answer."""


class InvalidOutput(ProviderError):
    """The answer was not JSON, or not of the schema. Worth one repair attempt."""

    def __init__(self, provider: str, reason: str, raw: str) -> None:
        super().__init__(provider, reason)
        self.reason = reason
        self.raw = raw
        self.completion: Completion | None = None


class EmbeddingsUnsupported(ProviderError):
    retryable = False


@dataclass
class Completion:
    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _by_status(provider: str, status: int, message: str, headers: Any = None) -> ProviderError:
    if status in (429, 529) or (status == 503 and _retry_after(headers) is not None):
        return ProviderRateLimited(provider, f"HTTP {status}: {message}", _retry_after(headers))
    if status in (401, 403):
        return ProviderAuthError(provider, f"HTTP {status}: {message}")
    if 400 <= status < 500:
        return ProviderBadRequest(provider, f"HTTP {status}: {message}")
    return ProviderUnavailable(provider, f"HTTP {status}: {message}")


# What an SDK raises when the HTTP body is not the answer it expects: json.JSONDecodeError (a
# ValueError) for a body that is not JSON, pydantic's ValidationError (a ValueError) or a plain
# string instead of the answer object (then AttributeError, TypeError … on reading it).
_UNREADABLE = (ValueError, TypeError, AttributeError, KeyError, IndexError)


@contextmanager
def readable_answer(provider: str) -> Iterator[None]:
    """Around an SDK call and the reading of its answer: an unreadable body becomes ProviderUnavailable."""
    try:
        yield
    except _UNREADABLE as error:
        raise ProviderUnavailable(
            provider, f"unreadable answer ({error.__class__.__name__}: {str(error)[:200]})"
        ) from None


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.S)


def parse_structured(provider: str, raw: str | dict, schema: type[Model]) -> Model:
    """Untrusted model output to a validated object, or InvalidOutput saying what is wrong."""
    if isinstance(raw, dict):
        data, text = raw, json.dumps(raw)
    else:
        text = _FENCE.sub("", raw.strip())
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidOutput(provider, f"not JSON: {error.msg} at character {error.pos}", raw) from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise InvalidOutput(provider, f"does not match the schema: {describe_invalid(error)}", text) from None


class Provider(ABC):
    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings
        self.model = settings.deployment or settings.model or "default"

    @abstractmethod
    async def generate(self, system: str, prompt: str) -> Completion: ...

    @abstractmethod
    async def _generate_json(
        self, system: str, prompt: str, schema: type[BaseModel]
    ) -> tuple[str | dict, Completion]: ...

    async def generate_structured(self, system: str, prompt: str, schema: type[Model]) -> tuple[Model, Completion]:
        raw, completion = await self._generate_json(system, prompt, schema)
        try:
            return parse_structured(self.name, raw, schema), completion
        except InvalidOutput as invalid:
            invalid.completion = completion  # answered, and billed, though unusable
            raise

    async def embed(self, texts: list[str]) -> list[list[float]]:
        raise EmbeddingsUnsupported(self.name, "this provider has no embeddings endpoint")

    async def aclose(self) -> None:
        """Release the SDK's HTTP connections."""


def _schema_instruction(schema: type[BaseModel]) -> str:
    return "Answer with one JSON object, nothing else, matching this JSON schema:\n" + json.dumps(
        schema.model_json_schema()
    )


class OpenAICompatible(Provider):
    """OpenAI, Azure OpenAI (deployments path) and DeepSeek (OpenAI-compatible) through `openai`."""

    def __init__(self, name: str, settings: ProviderSettings, kind: str) -> None:
        super().__init__(name, settings)
        self.kind = kind
        key = settings.api_key.get_secret_value() if settings.api_key else "unset"
        self._client: openai.AsyncOpenAI
        if kind == "azure_openai":
            self._client = openai.AsyncAzureOpenAI(
                azure_endpoint=settings.endpoint or "",
                api_version=settings.api_version or "2024-10-21",
                api_key=key,
                timeout=settings.timeout_seconds,
                max_retries=0,
            )
        else:
            default = "https://api.deepseek.com" if kind == "deepseek" else None
            self._client = openai.AsyncOpenAI(
                base_url=settings.endpoint or default, api_key=key, timeout=settings.timeout_seconds, max_retries=0
            )

    async def _chat(self, messages: list[Any], **extra: Any) -> Completion:
        with readable_answer(self.name):
            try:
                answer = await self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=MAX_OUTPUT_TOKENS, **extra
                )
            except openai.APITimeoutError as error:
                raise ProviderUnavailable(self.name, f"timed out: {error}") from None
            except openai.APIConnectionError as error:
                raise ProviderUnavailable(self.name, f"unreachable: {error}") from None
            except openai.APIStatusError as error:
                raise _by_status(self.name, error.status_code, error.message, error.response.headers) from None
            usage = answer.usage
            return Completion(
                text=answer.choices[0].message.content or "",
                model=answer.model or self.model,
                tokens_in=usage.prompt_tokens if usage else 0,
                tokens_out=usage.completion_tokens if usage else 0,
            )

    async def generate(self, system: str, prompt: str) -> Completion:
        return await self._chat([{"role": "system", "content": system}, {"role": "user", "content": prompt}])

    async def _generate_json(self, system: str, prompt: str, schema: type[BaseModel]) -> tuple[str, Completion]:
        extra: dict[str, Any]
        if self.kind == "deepseek":  # JSON mode without schema enforcement: the schema goes in the prompt
            extra = {"response_format": {"type": "json_object"}}
            system = f"{system}\n\n{_schema_instruction(schema)}"
        else:
            extra = {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
                }
            }
        completion = await self._chat(
            [{"role": "system", "content": system}, {"role": "user", "content": prompt}], **extra
        )
        return completion.text, completion

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self.kind == "deepseek":
            raise EmbeddingsUnsupported(self.name, "DeepSeek offers no embeddings endpoint")
        model = self.settings.embedding_deployment or self.settings.embedding_model or "text-embedding-3-small"
        with readable_answer(self.name):
            try:
                answer = await self._client.embeddings.create(model=model, input=texts)
            except openai.APIStatusError as error:
                raise _by_status(self.name, error.status_code, error.message, error.response.headers) from None
            except openai.APIError as error:
                raise ProviderUnavailable(self.name, str(error)) from None
            return [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]

    async def aclose(self) -> None:
        await self._client.close()


class Claude(Provider):
    """Anthropic messages; structured answers through a forced tool call."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.api_key.get_secret_value() if settings.api_key else "unset",
            base_url=settings.endpoint,
            timeout=settings.timeout_seconds,
            max_retries=0,
        )

    async def _messages(self, system: str, prompt: str, **extra: Any) -> tuple[list[Any], Completion]:
        """The answer's content blocks, and its accounting with the text blocks joined."""
        with readable_answer(self.name):
            try:
                answer = await self._client.messages.create(
                    model=self.model,
                    max_tokens=MAX_OUTPUT_TOKENS,
                    system=system,
                    messages=[{"role": "user", "content": prompt}],
                    **extra,
                )
            except anthropic.APITimeoutError as error:
                raise ProviderUnavailable(self.name, f"timed out: {error}") from None
            except anthropic.APIConnectionError as error:
                raise ProviderUnavailable(self.name, f"unreachable: {error}") from None
            except anthropic.APIStatusError as error:
                raise _by_status(self.name, error.status_code, error.message, error.response.headers) from None
            blocks = list(answer.content)
            text = "".join(block.text for block in blocks if block.type == "text")
            completion = Completion(
                text=text,
                model=answer.model,
                tokens_in=answer.usage.input_tokens,
                tokens_out=answer.usage.output_tokens,
            )
            return blocks, completion

    async def generate(self, system: str, prompt: str) -> Completion:
        _, completion = await self._messages(system, prompt)
        return completion

    async def _generate_json(self, system: str, prompt: str, schema: type[BaseModel]) -> tuple[str | dict, Completion]:
        tool = {
            "name": "answer",
            "description": f"Give the {schema.__name__}.",
            "input_schema": schema.model_json_schema(),
        }
        blocks, completion = await self._messages(
            system, prompt, tools=[tool], tool_choice={"type": "tool", "name": "answer"}
        )
        for block in blocks:
            if block.type == "tool_use":
                completion.text = json.dumps(block.input)
                return block.input, completion
        return completion.text, completion

    async def aclose(self) -> None:
        await self._client.close()


class Gemini(Provider):
    """Google's generateContent through `google-genai`, with JSON output."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        options = genai_types.HttpOptions(base_url=settings.endpoint, timeout=int(settings.timeout_seconds * 1000))
        self._client = genai.Client(
            api_key=settings.api_key.get_secret_value() if settings.api_key else "unset", http_options=options
        )

    async def _generate(self, system: str, prompt: str, **config: Any) -> Completion:
        with readable_answer(self.name):
            try:
                answer = await self._client.aio.models.generate_content(
                    model=self.model,
                    contents=prompt,
                    config=genai_types.GenerateContentConfig(
                        system_instruction=system, max_output_tokens=MAX_OUTPUT_TOKENS, **config
                    ),
                )
            except genai_errors.APIError as error:
                raise _by_status(
                    self.name, error.code or 500, error.message or str(error), getattr(error.response, "headers", None)
                ) from None
            except TRANSPORT_ERRORS as error:
                raise ProviderUnavailable(self.name, f"{error.__class__.__name__}: {error}") from None
            usage = answer.usage_metadata
            return Completion(
                text=answer.text or "",
                model=self.model,
                tokens_in=(usage.prompt_token_count or 0) if usage else 0,
                tokens_out=(usage.candidates_token_count or 0) if usage else 0,
            )

    async def generate(self, system: str, prompt: str) -> Completion:
        return await self._generate(system, prompt)

    async def _generate_json(self, system: str, prompt: str, schema: type[BaseModel]) -> tuple[str, Completion]:
        completion = await self._generate(
            system, prompt, response_mime_type="application/json", response_json_schema=schema.model_json_schema()
        )
        return completion.text, completion

    async def embed(self, texts: list[str]) -> list[list[float]]:
        model = self.settings.embedding_model or "text-embedding-004"
        with readable_answer(self.name):
            try:
                answer = await self._client.aio.models.embed_content(model=model, contents=texts)
            except genai_errors.APIError as error:
                raise _by_status(self.name, error.code or 500, error.message or str(error)) from None
            except TRANSPORT_ERRORS as error:
                raise ProviderUnavailable(self.name, str(error)) from None
            return [list(item.values or []) for item in answer.embeddings or []]

    async def aclose(self) -> None:
        await self._client.aio.aclose()


class Ollama(Provider):
    """A local model through `ollama`: the real-time tier, structured output via `format`."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self._client = ollama.AsyncClient(
            host=settings.endpoint or "http://127.0.0.1:11434", timeout=settings.timeout_seconds
        )

    async def _chat(self, system: str, prompt: str, **extra: Any) -> Completion:
        with readable_answer(self.name):
            try:
                answer = await self._client.chat(
                    model=self.model,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                    **extra,
                )
            except ollama.ResponseError as error:
                raise _by_status(self.name, error.status_code, error.error) from None
            except TRANSPORT_ERRORS as error:
                raise ProviderUnavailable(self.name, f"{error.__class__.__name__}: {error}") from None
            return Completion(
                text=answer.message.content or "",
                model=answer.model or self.model,
                tokens_in=answer.prompt_eval_count or 0,
                tokens_out=answer.eval_count or 0,
            )

    async def generate(self, system: str, prompt: str) -> Completion:
        return await self._chat(system, prompt)

    async def _generate_json(self, system: str, prompt: str, schema: type[BaseModel]) -> tuple[str, Completion]:
        completion = await self._chat(system, prompt, format=schema.model_json_schema())
        return completion.text, completion

    async def embed(self, texts: list[str]) -> list[list[float]]:
        with readable_answer(self.name):
            try:
                answer = await self._client.embed(model=self.settings.embedding_model or self.model, input=texts)
            except ollama.ResponseError as error:
                raise _by_status(self.name, error.status_code, error.error) from None
            except TRANSPORT_ERRORS as error:
                raise ProviderUnavailable(self.name, str(error)) from None
            return [list(vector) for vector in answer.embeddings]


def build_provider(name: str, settings: ProviderSettings) -> Provider:
    kind = settings.kind or name
    if kind in ("openai", "azure_openai", "deepseek"):
        return OpenAICompatible(name, settings, kind)
    if kind == "claude":
        return Claude(name, settings)
    if kind == "gemini":
        return Gemini(name, settings)
    if kind == "ollama":
        return Ollama(name, settings)
    raise ValueError(f"llm.providers.{name}.kind: unknown provider kind {kind!r}")
