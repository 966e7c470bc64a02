"""API keys exchanged for short-lived JWTs.

Keys are compared in constant time against every configured key, so several can be valid at once
while an operator rotates them. A JWT names the key it was issued for by a fingerprint (an HMAC of
the key under the signing secret, truncated), never by the key itself or its position in the list:
a token whose key is no longer configured is refused at once, however long it had to live.
Without AIWORLD_JWT_SECRET each process signs with a random secret of its own: fine for one API
process, but several replicas behind a balancer need the same configured secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time

import jwt
from fastapi import HTTPException, Request, status

from aiworld.config import ConfigError, Settings

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
FINGERPRINT_HEX_DIGITS = 16
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers=_UNAUTHORIZED_HEADERS)


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        keys = [key.get_secret_value().encode() for key in settings.api_keys]
        if not keys:
            raise ConfigError("AIWORLD_API_KEYS: set at least one API key (comma-separated for rotation)")
        if settings.jwt_secret is not None:
            self._secret = settings.jwt_secret.get_secret_value()
        else:
            log.warning("AIWORLD_JWT_SECRET is not set: tokens are signed with a per-process secret")
            self._secret = secrets.token_urlsafe(32)
        self._identities = {key: self._identity(key) for key in keys}
        self.ttl_seconds = settings.jwt_ttl_seconds
        self.token_limit = PerClientLimit(settings.token_requests_per_minute)

    def _identity(self, key: bytes) -> str:
        fingerprint = hmac.new(self._secret.encode(), key, hashlib.sha256).hexdigest()[:FINGERPRINT_HEX_DIGITS]
        return f"key:{fingerprint}"

    def identity_of_key(self, candidate: str) -> str | None:
        """The identity of a configured key; every key is compared, so timing tells nothing."""
        given = candidate.encode()
        found = None
        for key, identity in self._identities.items():
            if hmac.compare_digest(given, key):
                found = identity
        return found

    def issue(self, api_key: str, client: str) -> str:
        wait = self.token_limit.acquire(client, time.monotonic())
        if wait:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many token requests from this client; a token lasts `expires_in` seconds: reuse it",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        identity = self.identity_of_key(api_key)
        if identity is None:
            raise _unauthorized("unknown API key")
        now = int(time.time())
        return jwt.encode({"sub": identity, "iat": now, "exp": now + self.ttl_seconds}, self._secret, ALGORITHM)

    def verify(self, request: Request) -> str:
        """The caller's identity, from `Authorization: Bearer <jwt>` or `X-API-Key`."""
        api_key = request.headers.get("x-api-key")
        if api_key is not None:
            identity = self.identity_of_key(api_key)
            if identity is None:
                raise _unauthorized("unknown API key")
            return identity
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized(
                "missing credentials: send `Authorization: Bearer <token>` from POST /ai/auth/token, or `X-API-Key`"
            )
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired: get a new one from POST /ai/auth/token") from None
        except jwt.InvalidTokenError:
            raise _unauthorized("invalid token") from None
        if claims["sub"] not in self._identities.values():
            raise _unauthorized("the token's API key is no longer accepted: get a new token with a current key")
        return str(claims["sub"])


class PerClientLimit:
    """At most `per_minute` requests per client, as a token bucket per client that refills
    continuously (a burst of `per_minute`, then one every 60/per_minute seconds)."""

    # A bucket untouched this long is full again, like a new client's: forgetting it changes nothing.
    REFILL_SECONDS = 60.0

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / self.REFILL_SECONDS
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens left, when)

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, client: str, now: float) -> float:
        """0 when the client may go on (and one request is counted), else the seconds to wait."""
        tokens, since = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - since) * self.refill_per_second)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.refill_per_second
        self._buckets[client] = (tokens - 1, now)
        if len(self._buckets) > self.max_clients:
            self._buckets = {
                known: bucket for known, bucket in self._buckets.items() if now - bucket[1] < self.REFILL_SECONDS
            }
        return 0.0
