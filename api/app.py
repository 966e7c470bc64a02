"""The API shim: the one door through which the bridge (and tools) reach the NPC workflows.

Every body is validated with field-precise messages; client mistakes are 4xx, an unreachable
Temporal or state store is 503 — never an unhandled 500. Talking to an NPC waits a bounded time
for its reply: a late reply is a 504 with Retry-After, and the NPC still queues the reply as an
action, so it reaches the game through the queue.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import redis.asyncio as redis
from fastapi import Depends, FastAPI, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Authenticator
from api.errors import ApiError, install_error_handlers
from api.metrics import ApiMetrics
from api.schemas import (
    ActionBatch,
    ActionResultRecorded,
    ActionResultRequest,
    ClaimedActionOut,
    ErrorBody,
    EventAccepted,
    EventRequest,
    InteractionRequest,
    NpcRegistration,
    RegisterResponse,
    TokenRequest,
    TokenResponse,
    ValidationErrorBody,
    WorldState,
    WorldStateUpdate,
)
from aiworld.action_queue import ActionQueue, ConflictingResult, UnknownAction
from aiworld.config import Settings
from aiworld.keys import Keys
from aiworld.models import NpcProfile, NpcStateView, Personality, TalkReply
from aiworld.npc_control import ensure_npc_started, report_action_result
from aiworld.temporal import connect, npc_workflow_id
from aiworld.world import load_world

# How long a player's line waits for the NPC's reply before the API answers 504.
REPLY_WAIT_SECONDS = 8.0
LATE_REPLY_RETRY_AFTER_SECONDS = 5

_PAUSED = 8  # WORKFLOW_EXECUTION_STATUS_PAUSED: newer than the SDK's enum of statuses

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired credentials"},
    422: {"model": ValidationErrorBody, "description": "a field is invalid; `field` names it"},
    503: {"model": ErrorBody, "description": "Temporal or the state store cannot be reached"},
}
NPC_ERRORS: dict[int | str, dict[str, Any]] = {**COMMON_ERRORS, 404: {"model": ErrorBody, "description": "no such NPC"}}


def create_app(
    settings: Settings,
    *,
    client: Client | None = None,
    store: redis.Redis | None = None,
    reply_wait_seconds: float = REPLY_WAIT_SECONDS,
) -> FastAPI:
    """The app; `client` and `store` may be given (tests), otherwise they come from settings."""
    authenticator = Authenticator(settings)
    keys = Keys(settings.redis_key_prefix)
    known_profiles = {npc.npc_id: npc for npc in load_world(settings.world_file).npcs}
    metrics = ApiMetrics(keys)
    resources: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        resources["client"] = client or await connect(settings)
        resources["store"] = store or redis.Redis.from_url(settings.redis_url, decode_responses=True)
        resources["queue"] = ActionQueue(resources["store"], keys)
        try:
            yield
        finally:
            if store is None:
                await resources["store"].aclose()

    app = FastAPI(
        title="rAthena AI World API",
        version="1",
        description="Signals, dialogue and action delivery between rAthena and the NPC workflows.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    metrics.install(app)

    def authenticated(request: Request) -> str:
        return authenticator.verify(request)

    guarded = [Depends(authenticated)]

    def temporal() -> Client:
        return resources["client"]

    def queue() -> ActionQueue:
        return resources["queue"]

    async def npc_status(npc_id: str) -> int | None:
        """The NPC workflow's status, or None when it never lived (raw describe: the SDK's own
        describe cannot decode the PAUSED status)."""
        try:
            described = await temporal().workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=temporal().namespace, execution=WorkflowExecution(workflow_id=npc_workflow_id(npc_id))
                )
            )
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        return described.workflow_execution_info.status

    async def require_living(npc_id: str) -> None:
        state = await npc_status(npc_id)
        if state is None or state not in (WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING, _PAUSED):
            raise ApiError(status.HTTP_404_NOT_FOUND, f"no living NPC {npc_id!r}: register it with POST /ai/npc/register")
        if state == _PAUSED:
            raise ApiError(
                status.HTTP_409_CONFLICT,
                f"NPC {npc_id!r} is paused by an operator; try again after it is unpaused",
            )

    # --- auth and health ------------------------------------------------------------------------

    @app.post("/ai/auth/token", response_model=TokenResponse, tags=["auth"], responses={401: COMMON_ERRORS[401], 422: COMMON_ERRORS[422]})
    async def issue_token(body: TokenRequest) -> TokenResponse:
        """Exchange an API key for a short-lived bearer token."""
        return TokenResponse(access_token=authenticator.issue(body.api_key), expires_in=authenticator.ttl_seconds)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], responses={503: COMMON_ERRORS[503]})
    async def ready() -> dict[str, str]:
        """Readiness: Temporal and the state store answer."""
        await temporal().service_client.check_health(timeout=timedelta(seconds=2))
        await resources["store"].ping()
        return {"status": "ready"}

    @app.get("/metrics", tags=["health"], dependencies=guarded, response_class=PlainTextResponse, responses={401: COMMON_ERRORS[401]})
    async def prometheus_metrics() -> Response:
        """Prometheus metrics of this process and the LLM layer's shared counters."""
        return await metrics.render(resources["store"])

    # --- NPCs -----------------------------------------------------------------------------------

    @app.post("/ai/npc/register", response_model=RegisterResponse, tags=["npc"], dependencies=guarded, status_code=201,
              responses={200: {"model": RegisterResponse, "description": "already living"}, **COMMON_ERRORS})  # fmt: skip
    async def register_npc(body: NpcRegistration, response: Response) -> RegisterResponse:
        """Start an NPC's life unless it already lives (idempotent)."""
        profile = _profile_for(body, known_profiles.get(body.npc_id))
        started = await ensure_npc_started(temporal(), profile, settings.task_queue)
        if not started:
            response.status_code = status.HTTP_200_OK
        return RegisterResponse(npc_id=profile.npc_id, workflow_id=npc_workflow_id(profile.npc_id), started=started)

    @app.post("/ai/npc/event", response_model=EventAccepted, status_code=202, tags=["npc"], dependencies=guarded, responses=NPC_ERRORS)
    async def npc_event(body: EventRequest) -> EventAccepted:
        """Deliver a game event to an NPC (a signal; held while the NPC is paused)."""
        workflow_id = npc_workflow_id(body.npc_id)
        try:
            await temporal().get_workflow_handle(workflow_id).signal("game_event", body.event)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise ApiError(404, f"no living NPC {body.npc_id!r}: register it with POST /ai/npc/register") from None
            raise
        return EventAccepted(workflow_id=workflow_id)

    @app.get("/ai/npc/{npc_id}", response_model=NpcStateView, tags=["npc"], dependencies=guarded,
             responses={**NPC_ERRORS, 409: {"model": ErrorBody, "description": "paused"}})  # fmt: skip
    async def npc_state(npc_id: str) -> NpcStateView:
        """What an NPC is doing now (the workflow's `state` query)."""
        await require_living(npc_id)
        return await temporal().get_workflow_handle(npc_workflow_id(npc_id)).query("state", result_type=NpcStateView)

    @app.post("/ai/player/interaction", response_model=TalkReply, tags=["npc"], dependencies=guarded,
              responses={**NPC_ERRORS, 409: {"model": ErrorBody, "description": "the NPC is paused or retired"},
                         504: {"model": ErrorBody, "description": "the reply is late; it will arrive as a queued `reply` action"}})  # fmt: skip
    async def player_interaction(body: InteractionRequest) -> TalkReply:
        """One player line to an NPC (the `talk` update); answers with the NPC's reply."""
        await require_living(body.npc_id)
        turn = body.turn if body.turn.turn_id else body.turn.model_copy(update={"turn_id": f"api-{uuid.uuid4().hex}"})
        handle = temporal().get_workflow_handle(npc_workflow_id(body.npc_id))
        try:
            update = await handle.start_update(
                "talk", turn, id=turn.turn_id, wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=TalkReply
            )
            waiting = asyncio.create_task(update.result())
            done, _ = await asyncio.wait({waiting}, timeout=reply_wait_seconds)
            if not done:
                # Only our wait ends: the update goes on in the NPC, which queues the reply.
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
                raise ApiError(
                    status.HTTP_504_GATEWAY_TIMEOUT,
                    f"{body.npc_id} is still thinking; the reply to turn {turn.turn_id} will arrive as a queued action",
                    headers={"Retry-After": str(LATE_REPLY_RETRY_AFTER_SECONDS)},
                )
            return waiting.result()
        except WorkflowUpdateFailedError as error:
            # The NPC's validator refused the turn: retired NPCs no longer talk (409); anything
            # else is a turn the game should not have sent (422).
            retired = getattr(error.cause, "type", None) == "NpcRetired"
            raise ApiError(status.HTTP_409_CONFLICT if retired else 422, str(error.cause)) from None
        except RPCError as error:
            if error.status is RPCStatusCode.FAILED_PRECONDITION and "paused" in str(error).lower():
                raise ApiError(409, f"NPC {body.npc_id!r} is paused by an operator; try again after it is unpaused") from None
            if error.status is RPCStatusCode.NOT_FOUND:
                raise ApiError(404, f"no living NPC {body.npc_id!r}") from None
            raise

    # --- actions --------------------------------------------------------------------------------

    @app.get("/ai/npc/{npc_id}/action", response_model=ActionBatch, tags=["actions"], dependencies=guarded, responses=COMMON_ERRORS)
    async def npc_actions(
        npc_id: str,
        limit: int = Query(10, ge=1, le=100),
        lease_seconds: float = Query(30, ge=1, le=600, description="unacknowledged actions are offered again after this"),
    ) -> ActionBatch:
        """Lease the queued actions of one NPC."""
        claimed = await queue().claim(npc_id=npc_id, limit=limit, lease_seconds=lease_seconds)
        return ActionBatch(actions=[ClaimedActionOut(**c.action.model_dump(), attempts=c.attempts) for c in claimed])

    @app.get("/ai/actions", response_model=ActionBatch, tags=["actions"], dependencies=guarded, responses=COMMON_ERRORS)
    async def all_actions(
        limit: int = Query(50, ge=1, le=500),
        lease_seconds: float = Query(30, ge=1, le=600, description="unacknowledged actions are offered again after this"),
    ) -> ActionBatch:
        """Lease a batch of queued actions across every NPC (what the bridge polls)."""
        claimed = await queue().claim(limit=limit, lease_seconds=lease_seconds)
        return ActionBatch(actions=[ClaimedActionOut(**c.action.model_dump(), attempts=c.attempts) for c in claimed])

    @app.post("/ai/actions/{action_id}/result", response_model=ActionResultRecorded, tags=["actions"], dependencies=guarded,
              responses={**COMMON_ERRORS, 404: {"model": ErrorBody, "description": "unknown action"},
                         409: {"model": ErrorBody, "description": "contradicts the recorded result"}})  # fmt: skip
    async def action_result(action_id: str, body: ActionResultRequest) -> ActionResultRecorded:
        """What the game did with an action; the NPC remembers it. Idempotent."""
        try:
            recorded = await report_action_result(temporal(), queue(), action_id, body.outcome, body.detail)
        except UnknownAction:
            raise ApiError(404, f"no action {action_id!r} was ever queued") from None
        except ConflictingResult as error:
            raise ApiError(409, str(error)) from None
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            recorded = True  # the NPC retired meanwhile; the result itself is recorded
        return ActionResultRecorded(recorded=recorded)

    # --- world ----------------------------------------------------------------------------------

    @app.post("/ai/world/state", response_model=WorldState, tags=["world"], dependencies=guarded, responses=COMMON_ERRORS)
    async def set_world_state(body: WorldStateUpdate) -> WorldState:
        """Merge values into one world system (economy, politics, environment)."""
        await resources["store"].hset(keys.world(body.system), mapping={k: str(v) for k, v in body.values.items()})
        return await _world_state()

    @app.get("/ai/world/state", response_model=WorldState, tags=["world"], dependencies=guarded, responses=COMMON_ERRORS)
    async def get_world_state() -> WorldState:
        return await _world_state()

    async def _world_state() -> WorldState:
        systems = {}
        for system in ("economy", "politics", "environment"):
            systems[system] = await resources["store"].hgetall(keys.world(system))
        return WorldState(**systems)

    return app


def _profile_for(body: NpcRegistration, known: NpcProfile | None) -> NpcProfile:
    """The script's facts over the world file's profile, or sensible defaults for a newcomer."""
    given = body.model_dump(exclude_none=True)
    if known is not None:
        base = known.model_dump()
        if (body.x, body.y) != (known.x, known.y) and "area" not in given:
            # Moved in the script: walk around the new spot, not the world file's.
            base.pop("area")
            base.pop("routine")
        return NpcProfile.model_validate(base | given)
    given.setdefault("personality", Personality(description=f"A resident of {body.map}.").model_dump())
    return NpcProfile.model_validate(given)
