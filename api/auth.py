"""API keys exchanged for short-lived JWTs.

Keys are compared in constant time against every configured key, so several can be valid at once
while an operator rotates them. A JWT names which key (by position) it was issued for, never the
key itself. Without AIWORLD_JWT_SECRET each process signs with a random secret of its own: fine for
one API process, but several replicas behind a balancer need the same configured secret.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time

import jwt
from fastapi import HTTPException, Request, status

from aiworld.config import ConfigError, Settings

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._keys = [key.get_secret_value().encode() for key in settings.api_keys]
        if not self._keys:
            raise ConfigError("AIWORLD_API_KEYS: set at least one API key (comma-separated for rotation)")
        if settings.jwt_secret is not None:
            self._secret = settings.jwt_secret.get_secret_value()
        else:
            log.warning("AIWORLD_JWT_SECRET is not set: tokens are signed with a per-process secret")
            self._secret = secrets.token_urlsafe(32)
        self.ttl_seconds = settings.jwt_ttl_seconds

    def key_index(self, candidate: str) -> int | None:
        """Which configured key this is; every key is compared, so timing tells nothing."""
        given = candidate.encode()
        found = None
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(given, key):
                found = index
        return found

    def issue(self, api_key: str) -> str:
        index = self.key_index(api_key)
        if index is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key", headers=_UNAUTHORIZED_HEADERS)
        now = int(time.time())
        return jwt.encode({"sub": f"key-{index}", "iat": now, "exp": now + self.ttl_seconds}, self._secret, ALGORITHM)

    def verify(self, request: Request) -> str:
        """The caller's identity, from `Authorization: Bearer <jwt>` or `X-API-Key`."""
        api_key = request.headers.get("x-api-key")
        if api_key is not None:
            index = self.key_index(api_key)
            if index is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key", headers=_UNAUTHORIZED_HEADERS)
            return f"key-{index}"
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing credentials: send `Authorization: Bearer <token>` from POST /ai/auth/token, or `X-API-Key`",
                headers=_UNAUTHORIZED_HEADERS,
            )
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "token expired: get a new one from POST /ai/auth/token", headers=_UNAUTHORIZED_HEADERS) from None
        except jwt.InvalidTokenError:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid token", headers=_UNAUTHORIZED_HEADERS) from None
        return str(claims["sub"])
