"""The API shim: the one door through which the bridge (and tools) reach the NPC workflows.

Credentials are checked before a body is read; every body is validated with field-precise
messages; client mistakes are 4xx, an unreachable Temporal, state store or NPC worker is 503 —
never an unhandled 500. Talking to an NPC is bounded as a whole: a turn no worker accepted in time
is a 503 (nothing was promised), an accepted turn whose reply is late is a 504 with Retry-After,
and the NPC then queues the reply as an action, so it reaches the game through the queue.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from fastapi import APIRouter, FastAPI, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from aiworld.config import Settings
from aiworld.memory.memori import memory_store_for
from aiworld.memory.store import MemoryStore
from aiworld.models import NpcProfile, NpcStateView, Personality, TalkReply
from aiworld.npc.control import ensure_npc_started, report_action_result
from aiworld.ops.tracing import instrument_api
from aiworld.store.action_queue import ActionQueue, ConflictingResult, UnknownAction
from aiworld.store.keys import Keys
from aiworld.temporal import connect, npc_workflow_id
from aiworld.world.definition import load_world
from aiworld.world.routing import WorldInbox
from api.auth import Authenticator
from api.errors import ApiError, Unavailable, install_error_handlers, install_request_ids, invalid_field, within
from api.metrics import ApiMetrics
from api.routes import coherence as coherence_routes
from api.routes import llm as llm_routes
from api.routes.memory import memory_routes
from api.routes.viewer import viewer_router
from api.routes.world import register_world_routes
from api.routes.world_events import world_event_routes
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

log = logging.getLogger(__name__)

# How long a player's line may take in all (the NPC accepting the turn included) before the API
# answers 503 (never accepted) or 504 (accepted, the reply comes later as a queued action).
REPLY_WAIT_SECONDS = 8.0
LATE_REPLY_RETRY_AFTER_SECONDS = 5
# How long `GET /ai/npc/{id}` waits for the NPC's worker to answer the `state` query.
QUERY_WAIT_SECONDS = 3.0
# How long /ready waits for each dependency.
READY_WAIT_SECONDS = 2.0

_PAUSED = 8  # WORKFLOW_EXECUTION_STATUS_PAUSED: newer than the SDK's enum of statuses

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "a part the request needs (Temporal, the state store, the NPC's worker) is down or too slow; "
        "the answer names it and carries a request id, never its error text; `Retry-After`",
    }
}
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired credentials (checked before the body)"},
    **UNAVAILABLE,
}
WITH_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMON_ERRORS,
    413: {"model": ErrorBody, "description": "the body is larger than 64 KiB (refused while it arrives)"},
    422: {"model": ValidationErrorBody, "description": "a field is invalid, or the body is not JSON; `field` names it"},
}
WITH_QUERY_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMON_ERRORS,
    422: {"model": ValidationErrorBody, "description": "a query parameter is invalid; `field` names it"},
}
NO_SUCH_NPC: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "no such NPC"}}


def create_app(
    settings: Settings,
    *,
    client: Client | None = None,
    store: redis.Redis | None = None,
    reply_wait_seconds: float = REPLY_WAIT_SECONDS,
    query_wait_seconds: float = QUERY_WAIT_SECONDS,
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
        resources["inbox"] = WorldInbox(resources["store"], keys, settings.coordinator)
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
    install_request_ids(app)
    guarded = APIRouter(route_class=_authenticated_first(authenticator))

    def temporal() -> Client:
        return resources["client"]

    def queue() -> ActionQueue:
        return resources["queue"]

    opening_memories = asyncio.Lock()

    async def memories() -> MemoryStore:
        # Opened on first use, not at startup: with memory.backend memori it loads torch and a
        # model (MemoriUnavailable then answers 503).
        async with opening_memories:
            if "memories" not in resources:
                resources["memories"] = await memory_store_for(settings, resources["store"], keys)
        return resources["memories"]

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
            raise ApiError(
                status.HTTP_404_NOT_FOUND, f"no living NPC {npc_id!r}: register it with POST /ai/npc/register"
            )
        if state == _PAUSED:
            raise ApiError(
                status.HTTP_409_CONFLICT,
                f"NPC {npc_id!r} is paused by an operator; try again after it is unpaused",
            )

    # --- auth and health ------------------------------------------------------------------------

    @app.post(
        "/ai/auth/token",
        response_model=TokenResponse,
        tags=["auth"],
        responses={
            401: COMMON_ERRORS[401],
            413: WITH_BODY_ERRORS[413],
            422: WITH_BODY_ERRORS[422],
            429: {"model": ErrorBody, "description": "too many token requests from this client; `Retry-After`"},
        },
    )
    async def issue_token(body: TokenRequest, request: Request) -> TokenResponse:
        """Exchange an API key for a short-lived bearer token (rate-limited per client address)."""
        client = request.client.host if request.client else "unknown"
        return TokenResponse(
            access_token=authenticator.issue(body.api_key, client), expires_in=authenticator.ttl_seconds
        )

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], responses=UNAVAILABLE)
    async def ready() -> dict[str, str]:
        """Readiness: Temporal and the state store answer (each within 2 s)."""
        await within(READY_WAIT_SECONDS, temporal().service_client.check_health(), "Temporal")
        await within(READY_WAIT_SECONDS, resources["store"].ping(), "the state store")
        return {"status": "ready"}

    @guarded.get("/metrics", tags=["health"], response_class=PlainTextResponse, responses=COMMON_ERRORS)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics of this process and the LLM layer's shared counters."""
        return await metrics.render(resources["store"])

    # --- NPCs -----------------------------------------------------------------------------------

    @guarded.post(
        "/ai/npc/register",
        response_model=RegisterResponse,
        tags=["npc"],
        status_code=201,
        responses={200: {"model": RegisterResponse, "description": "already living"}, **WITH_BODY_ERRORS},
    )
    async def register_npc(body: NpcRegistration, response: Response) -> RegisterResponse:
        """Start an NPC's life unless it already lives (idempotent)."""
        profile = _profile_for(body, known_profiles.get(body.npc_id))
        started = await ensure_npc_started(temporal(), profile, settings.task_queue)
        # Listed in the directory at once, so that news for its map or faction reaches it.
        await MemoryStore(resources["store"], keys).publish_npc(profile, {})
        if not started:
            response.status_code = status.HTTP_200_OK
        return RegisterResponse(npc_id=profile.npc_id, workflow_id=npc_workflow_id(profile.npc_id), started=started)

    @guarded.post(
        "/ai/npc/event",
        response_model=EventAccepted,
        status_code=202,
        tags=["npc"],
        responses={**WITH_BODY_ERRORS, **NO_SUCH_NPC},
    )
    async def npc_event(body: EventRequest) -> EventAccepted:
        """Deliver a game event to an NPC (a signal; held while the NPC is paused)."""
        workflow_id = npc_workflow_id(body.npc_id)
        try:
            await temporal().get_workflow_handle(workflow_id).signal("game_event", body.event)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise ApiError(404, f"no living NPC {body.npc_id!r}: register it with POST /ai/npc/register") from None
            raise
        # After the signal: an event of no NPC is routed nowhere; a retry after a failure here
        # signals again (the NPC drops the id) and routes what was not routed.
        await resources["inbox"].route_npc_event(body.npc_id, body.event)
        return EventAccepted(workflow_id=workflow_id)

    @guarded.get(
        "/ai/npc/{npc_id}",
        response_model=NpcStateView,
        tags=["npc"],
        responses={**COMMON_ERRORS, **NO_SUCH_NPC, 409: {"model": ErrorBody, "description": "paused"}},
    )
    async def npc_state(npc_id: str) -> NpcStateView:
        """What an NPC is doing now (the workflow's `state` query), within a few seconds or 503."""
        await within(query_wait_seconds, require_living(npc_id), "Temporal")
        handle = temporal().get_workflow_handle(npc_workflow_id(npc_id))
        # Temporal holds a query until a worker takes it; a dead or frozen worker never does.
        return await within(
            query_wait_seconds,
            handle.query("state", result_type=NpcStateView),
            f"the worker of NPC {npc_id!r}",
            reason="no worker answered the query",
        )

    @guarded.post(
        "/ai/player/interaction",
        response_model=TalkReply,
        tags=["npc"],
        responses={
            **WITH_BODY_ERRORS,
            **NO_SUCH_NPC,
            409: {"model": ErrorBody, "description": "the NPC is paused or retired"},
            503: {
                "model": ErrorBody,
                "description": "no worker took the turn in time, or what the NPC "
                "needs to answer (Temporal, its state store) is down: nothing is promised, send the turn again; `Retry-After`",
            },
            504: {
                "model": ErrorBody,
                "description": "the NPC took the turn but its reply is late; "
                "it will arrive as a queued `reply` action; `Retry-After`",
            },
        },
    )
    async def player_interaction(body: InteractionRequest) -> TalkReply:
        """One player line to an NPC (the `talk` update); answers with the NPC's reply, all within the reply wait."""
        turn = body.turn if body.turn.turn_id else body.turn.model_copy(update={"turn_id": f"api-{uuid.uuid4().hex}"})
        handle = temporal().get_workflow_handle(npc_workflow_id(body.npc_id))
        deadline = asyncio.get_running_loop().time() + reply_wait_seconds
        waiting_for = "Temporal"
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await require_living(body.npc_id)
                    waiting_for = f"the worker of NPC {body.npc_id!r}"
                    update = await handle.start_update(
                        "talk",
                        turn,
                        id=turn.turn_id,
                        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                        result_type=TalkReply,
                    )
            except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                # Never accepted: the NPC owes nothing, so nothing is promised.
                raise Unavailable(
                    waiting_for, f"turn {turn.turn_id} was not taken within {reply_wait_seconds:g} s"
                ) from None
            try:
                async with asyncio.timeout_at(deadline):
                    return await update.result()
            except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                # Accepted: only our wait ends; the update goes on in the NPC, which queues the reply.
                raise ApiError(
                    status.HTTP_504_GATEWAY_TIMEOUT,
                    f"{body.npc_id} is still thinking; the reply to turn {turn.turn_id} will arrive as a queued action",
                    headers={"Retry-After": str(LATE_REPLY_RETRY_AFTER_SECONDS)},
                ) from None
        except WorkflowUpdateFailedError as error:
            refusal = getattr(error.cause, "type", None)
            if refusal == "NpcRetired":
                raise ApiError(status.HTTP_409_CONFLICT, str(error.cause)) from None
            if refusal == "InvalidTalkTurn":  # the NPC's validator: a turn the game should not have sent
                raise ApiError(422, str(error.cause)) from None
            # Taken, then failed inside the NPC. Its own faults (store, providers) end in a fallback
            # reply, so this is a failure the NPC did not foresee: say so, and keep its words in the log.
            raise Unavailable(f"NPC {body.npc_id!r}", "the turn failed inside the NPC", cause=error.cause) from None
        except RPCError as error:
            if error.status is RPCStatusCode.FAILED_PRECONDITION and "paused" in str(error).lower():
                raise ApiError(
                    409, f"NPC {body.npc_id!r} is paused by an operator; try again after it is unpaused"
                ) from None
            if error.status is RPCStatusCode.NOT_FOUND:
                raise ApiError(404, f"no living NPC {body.npc_id!r}") from None
            raise

    # --- actions --------------------------------------------------------------------------------

    @guarded.get("/ai/npc/{npc_id}/action", response_model=ActionBatch, tags=["actions"], responses=WITH_QUERY_ERRORS)
    async def npc_actions(
        npc_id: str,
        limit: int = Query(10, ge=1, le=100),
        lease_seconds: float = Query(
            30, ge=1, le=600, description="unacknowledged actions are offered again after this"
        ),
    ) -> ActionBatch:
        """Lease the queued actions of one NPC."""
        claimed = await queue().claim(npc_id=npc_id, limit=limit, lease_seconds=lease_seconds)
        return ActionBatch(actions=[ClaimedActionOut(**c.action.model_dump(), attempts=c.attempts) for c in claimed])

    @guarded.get("/ai/actions", response_model=ActionBatch, tags=["actions"], responses=WITH_QUERY_ERRORS)
    async def all_actions(
        limit: int = Query(50, ge=1, le=500),
        lease_seconds: float = Query(
            30, ge=1, le=600, description="unacknowledged actions are offered again after this"
        ),
    ) -> ActionBatch:
        """Lease a batch of queued actions across every NPC (what the bridge polls)."""
        claimed = await queue().claim(limit=limit, lease_seconds=lease_seconds)
        return ActionBatch(actions=[ClaimedActionOut(**c.action.model_dump(), attempts=c.attempts) for c in claimed])

    @guarded.post(
        "/ai/actions/{action_id}/result",
        response_model=ActionResultRecorded,
        tags=["actions"],
        responses={
            **WITH_BODY_ERRORS,
            404: {"model": ErrorBody, "description": "unknown action"},
            409: {"model": ErrorBody, "description": "contradicts the recorded result"},
        },
    )
    async def action_result(action_id: str, body: ActionResultRequest) -> ActionResultRecorded:
        """What the game did with an action, once: the NPC remembers a done action and reconsiders a
        failed one. Idempotent."""
        try:
            recorded = await report_action_result(
                temporal(), queue(), await memories(), action_id, body.outcome, body.detail, resources["inbox"]
            )
            if recorded:
                metrics.action_results.labels(body.outcome).inc()
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

    @guarded.post("/ai/world/state", response_model=WorldState, tags=["world"], responses=WITH_BODY_ERRORS)
    async def set_world_state(body: WorldStateUpdate) -> WorldState:
        """Merge values into one world system (economy, politics, environment)."""
        await resources["store"].hset(keys.world(body.system), mapping={k: str(v) for k, v in body.values.items()})
        return await _world_state()

    @guarded.get("/ai/world/state", response_model=WorldState, tags=["world"], responses=COMMON_ERRORS)
    async def get_world_state() -> WorldState:
        return await _world_state()

    async def _world_state() -> WorldState:
        systems = {}
        for system in ("economy", "politics", "environment", "quests"):
            systems[system] = await resources["store"].hgetall(keys.world(system))
        return WorldState(**systems)

    register_world_routes(guarded, lambda: resources["store"], keys, WITH_QUERY_ERRORS)
    guarded.include_router(
        world_event_routes(settings, keys, temporal, lambda: resources["store"], guarded.route_class)
    )
    llm_routes.install(guarded, settings, keys, lambda: resources["store"])
    coherence_routes.install(guarded, keys, lambda: resources["store"])
    app.include_router(guarded)
    app.include_router(
        memory_routes(guarded.route_class, lambda: resources["store"], keys, memories, WITH_QUERY_ERRORS)
    )
    app.include_router(viewer_router(settings, _authenticated_first(authenticator), resources))
    instrument_api(app, settings.observability)
    return app


def _authenticated_first(authenticator: Authenticator) -> type[APIRoute]:
    class AuthenticatedFirst(APIRoute):
        """Checks the caller's credentials before the body is read or validated: without them the
        answer is 401 whatever was sent, and nothing about the body's expected shape leaks."""

        def get_route_handler(self):
            handle = super().get_route_handler()

            async def authenticated(request: Request) -> Response:
                request.state.caller = authenticator.verify(request)
                return await handle(request)

            return authenticated

    return AuthenticatedFirst


def _profile_for(body: NpcRegistration, known: NpcProfile | None) -> NpcProfile:
    """The script's facts over the world file's profile, or sensible defaults for a newcomer.

    The NPC walks in the area the script gives, else in the world file's while that still holds
    its spawn point (a script may move an NPC a little), else around its spawn point. Routine
    points the script gives must lie in that area (422 naming the point); the world file's that do
    not (the NPC was moved away) are dropped, and so is every point the script reports unwalkable.
    """
    if body.area is not None and not body.area.contains(body.x, body.y):
        raise invalid_field(("area",), f"the spawn point ({body.x},{body.y}) lies outside the area")
    given = body.model_dump(exclude_none=True, exclude={"unwalkable"})
    if known is None:
        merged = {"personality": Personality(description=f"A resident of {body.map}.").model_dump()} | given
    else:
        merged = known.model_dump() | given
        if body.area is None and known.area is not None and not known.area.contains(body.x, body.y):
            merged.pop("area")  # moved away in the script: walk around the new spot
    routine = [tuple(point) for point in merged.pop("routine", [])]
    profile = NpcProfile.model_validate(merged)
    area = profile.area
    assert area is not None  # every validated profile has one
    for index, (x, y) in enumerate(body.routine or []):
        if not area.contains(x, y):
            raise invalid_field(
                ("routine", index), f"({x},{y}) lies outside the NPC's area ({area.x1},{area.y1})-({area.x2},{area.y2})"
            )
    unwalkable = {tuple(point) for point in body.unwalkable or []}
    if (body.x, body.y) in unwalkable:
        # The script places the NPC there whatever we say; keep it, but let the operator know.
        log.warning("NPC %s: its spawn point (%d,%d) on %s is not walkable", body.npc_id, body.x, body.y, body.map)
    kept = [point for point in routine if area.contains(*point) and point not in unwalkable]
    return profile.model_copy(update={"routine": kept})
