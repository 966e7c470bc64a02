"""Error bodies: every client mistake is a 4xx that says exactly what is wrong; an unreachable
Temporal, state store or NPC worker is a 503 that says which part is down, never why in its own
words: the error texts of those parts stay in the log, under the request id that the client sees
in the answer and in the `X-Request-ID` header of every response. Nothing leaks out as a bare 500."""

from __future__ import annotations

import asyncio
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError

from aiworld.memory.memori import MemoriUnavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
REQUEST_ID_HEADER = "X-Request-ID"
RETRY_AFTER_SECONDS = 5

T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


class Unavailable(Exception):
    """A part the request needs is down or too slow: 503 naming the part. `reason` is ours and
    shown to the client; `cause` (the part's own error) is only logged."""

    def __init__(self, part: str, reason: str = "", cause: object = None) -> None:
        super().__init__(f"{part}: {reason or cause}")
        self.part = part
        self.reason = reason
        self.cause = cause


def invalid_field(field: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 for a rule that spans several fields, naming the field at fault like pydantic does."""
    return RequestValidationError([{"loc": ("body", *field), "msg": message, "type": "value_error"}])


async def within(seconds: float, awaitable: Awaitable[T], part: str, reason: str = "no answer") -> T:
    """The awaited value, or Unavailable(part) when it does not come within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise Unavailable(part, f"{reason} within {seconds:g} s") from None


def unavailable_response(request: Request, part: str, reason: str = "", cause: object = None) -> JSONResponse:
    rid = request.state.request_id
    log.warning("request %s: %s is unavailable: %s", rid, part, cause if cause is not None else reason)
    because = f": {reason}" if reason else ""
    return JSONResponse(
        {"detail": f"{part} is unavailable{because}; try again later (request id {rid})"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class HttpMiddleware(ABC):
    """A pure ASGI middleware (it sees the body as it streams in) of HTTP requests only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The middleware's work on one HTTP request."""


class RequestId(HttpMiddleware):
    """Gives every request an id, kept in `request.state.request_id` for the log and sent back in
    the `X-Request-ID` header of every response, so an operator can find what a client saw."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"body is larger than {MAX_BODY_BYTES} bytes")


class BodyLimit(HttpMiddleware):
    """Refuses a body over MAX_BODY_BYTES while it arrives: a declared Content-Length is judged
    before the first byte is read, a chunked body as soon as its running total passes the limit.
    The refusal is raised from `receive`, so the route's body reader turns it into the 413."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge()
            return message

        await self.app(scope, counted_receive, send)


def _field(problem: dict[str, Any]) -> str:
    # ("body", "turn", "text") -> "turn.text"; ("query", "limit") -> "limit"; unparseable JSON
    # carries the offending position, but the field at fault is the body itself.
    if problem.get("type") == "json_invalid":
        return "body"
    parts = [str(part) for part in problem["loc"]]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _message(problem: dict[str, Any]) -> str:
    reason = problem.get("ctx", {}).get("error") if problem.get("type") == "json_invalid" else None
    return f"{problem['msg']}: {reason}" if reason else problem["msg"]


def install_error_handlers(app: FastAPI) -> None:
    # Innermost: the body limit raises from `receive`, which must reach the route's body reader
    # as it is, not through the task group of a BaseHTTPMiddleware.
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [{"field": _field(problem), "message": _message(problem)} for problem in error.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=getattr(error, "headers", None)
        )

    @app.exception_handler(Unavailable)
    async def part_down(request: Request, error: Unavailable) -> JSONResponse:
        return unavailable_response(request, error.part, error.reason, error.cause)

    @app.exception_handler(RPCError)
    async def temporal_down(request: Request, error: RPCError) -> JSONResponse:
        return unavailable_response(request, "Temporal", cause=error)

    @app.exception_handler(MemoriUnavailable)
    async def memori_down(request: Request, error: MemoriUnavailable) -> JSONResponse:
        return unavailable_response(request, "Memori", cause=error)

    @app.exception_handler(redis.exceptions.RedisError)
    async def store_down(request: Request, error: redis.exceptions.RedisError) -> JSONResponse:
        return unavailable_response(request, "the state store", cause=error)


def install_request_ids(app: FastAPI) -> None:
    """Install after every other middleware: the request id then wraps them all, so every
    response, their own included, carries it."""
    app.add_middleware(RequestId)
