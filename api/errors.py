"""Error bodies: every client mistake is a 4xx that says exactly what is wrong; an unreachable
Temporal or state store is a 503 that says which; nothing leaks out as a bare 500."""

from __future__ import annotations

import logging

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from temporalio.service import RPCError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


def _field(location: tuple) -> str:
    # ("body", "turn", "text") -> "turn.text"; ("query", "limit") -> "limit"
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


class BodyLimit(BaseHTTPMiddleware):
    """Refuse oversized bodies before they are read whole (413)."""

    async def dispatch(self, request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"body is larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        if length is None and request.method in {"POST", "PUT", "PATCH"}:
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                return JSONResponse({"detail": f"body is larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [{"field": _field(problem["loc"]), "message": problem["msg"]} for problem in error.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(RPCError)
    async def temporal_down(_: Request, error: RPCError) -> JSONResponse:
        log.warning("Temporal call failed: %s", error)
        return JSONResponse({"detail": f"Temporal is unavailable: {error.message}"}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(redis.exceptions.RedisError)
    async def store_down(_: Request, error: redis.exceptions.RedisError) -> JSONResponse:
        log.warning("state store call failed: %s", error)
        return JSONResponse({"detail": f"the state store is unavailable: {error}"}, status_code=503, headers={"Retry-After": "5"})
