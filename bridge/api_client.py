"""The bridge's client of the API: a short-lived JWT, renewed before it expires and on a 401."""

from __future__ import annotations

import time
from typing import Any

import httpx

from aiworld.config import ObservabilitySettings
from aiworld.models import GameEvent, TalkReply, TalkTurn
from aiworld.ops.tracing import instrument_http_client


class ApiUnavailable(Exception):
    """The API did not answer usefully (down, 5xx, 503): try again later, nothing is lost."""


class ApiRefused(Exception):
    """The API refused the request for good (4xx): retrying the same request cannot help."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class ApiKeyRefused(ApiUnavailable):
    """The API refuses the bridge's key (rotated away, mistyped): it refuses the bridge, not the
    data, so nothing is skipped; every call is tried again later, until the key is fixed."""


class ReplyLate(Exception):
    """504: the NPC's reply will come through the action queue."""


class ApiClient:
    def __init__(
        self, base_url: str, api_key: str, timeout: float = 15.0, observability: ObservabilitySettings | None = None
    ) -> None:
        self._api_key = api_key
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)
        # With tracing on, the trace of a game event or a player's line starts at this call.
        instrument_http_client(self._http, observability or ObservabilitySettings())
        self._token: str | None = None
        self._token_expires = 0.0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _authorization(self) -> dict[str, str]:
        if self._token is None or time.monotonic() > self._token_expires - 30:
            answer = await self._send("POST", "/ai/auth/token", json={"api_key": self._api_key}, authorized=False)
            self._token = answer["access_token"]
            self._token_expires = time.monotonic() + answer["expires_in"]
        return {"Authorization": f"Bearer {self._token}"}

    async def _send(self, method: str, path: str, *, authorized: bool = True, **kwargs: Any) -> Any:
        for attempt in range(2):
            headers = await self._authorization() if authorized else {}
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as error:
                raise ApiUnavailable(f"{method} {path}: {error.__class__.__name__} {error}") from error
            if response.status_code == 401 and authorized and attempt == 0:
                self._token = None  # expired or the API restarted with a new secret: renew once
                continue
            if response.status_code == 401:
                break
            if response.status_code == 504:
                raise ReplyLate(path)
            if response.status_code >= 500:
                raise ApiUnavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
            if response.status_code >= 400:
                try:
                    detail = response.json().get("detail")
                except ValueError:
                    detail = response.text[:200]
                raise ApiRefused(response.status_code, detail)
            return response.json()
        raise ApiKeyRefused(f"{method} {path}: HTTP 401, the API refuses our key: check AIWORLD_API_KEYS")

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send("POST", "/ai/npc/register", json=body)

    async def send_event(self, npc_id: str, event: GameEvent) -> None:
        await self._send(
            "POST", "/ai/npc/event", json={"npc_id": npc_id, "event": event.model_dump(mode="json", exclude_none=True)}
        )

    async def world_event(self, scope: dict[str, Any] | None, event: GameEvent) -> int:
        """An event for every NPC of a scope, or (no scope) only for the world systems that take
        it; returns how many NPCs it reaches."""
        body: dict[str, Any] = {"event": event.model_dump(mode="json", exclude_none=True)}
        if scope is not None:
            body["scope"] = scope
        answer = await self._send("POST", "/ai/world/event", json=body)
        return answer["recipients"]

    async def talk(self, npc_id: str, turn: TalkTurn) -> TalkReply:
        answer = await self._send(
            "POST",
            "/ai/player/interaction",
            json={"npc_id": npc_id, "turn": turn.model_dump(mode="json", exclude_none=True)},
        )
        return TalkReply.model_validate(answer)

    async def claim_actions(self, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        answer = await self._send("GET", "/ai/actions", params={"limit": limit, "lease_seconds": lease_seconds})
        return answer["actions"]

    async def report_result(self, action_id: str, outcome: str, detail: str) -> bool:
        answer = await self._send(
            "POST", f"/ai/actions/{action_id}/result", json={"outcome": outcome, "detail": detail[:200]}
        )
        return answer["recorded"]

    async def update_world(self, system: str, values: dict[str, Any]) -> None:
        await self._send("POST", "/ai/world/state", json={"system": system, "values": values})
