"""Talking to NPC workflows from outside: starting them (one home for the id, the task queue, the
summary and the first search attributes) and reporting what the game did with their actions. Used
by the API and by the embedded demo alike."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, GameEventKind, NpcProfile, QueuedAction, TradeAction
from aiworld.npc import search_attributes
from aiworld.npc.outcomes import action_done_memory
from aiworld.store.action_queue import ActionQueue, Outcome, UnknownAction
from aiworld.temporal import NPC_WORKFLOW_TYPE, npc_workflow_id
from aiworld.world.routing import WorldInbox
from workflows.npc_state import NpcLifeInput


def static_summary(profile: NpcProfile) -> str:
    return f"{profile.name} · {profile.map} ({profile.x},{profile.y}) · {profile.faction}"


async def ensure_npc_started(client: Client, profile: NpcProfile, task_queue: str) -> bool:
    """Start `npc-{id}` unless it already runs. True when this call started it."""
    try:
        await client.start_workflow(
            NPC_WORKFLOW_TYPE,
            NpcLifeInput(profile=profile),
            id=npc_workflow_id(profile.npc_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # A retired NPC may be registered again; a running one is left alone.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=static_summary(profile),
            static_details=f"{profile.role} of the {profile.faction} faction. {profile.personality.description}",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.NPC_MAP, profile.map),
                    SearchAttributePair(search_attributes.NPC_FACTION, profile.faction),
                    SearchAttributePair(search_attributes.NPC_MOOD, "calm"),
                    SearchAttributePair(search_attributes.NPC_ACTIVITY, "idling"),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def report_action_result(
    client: Client,
    queue: ActionQueue,
    memories: MemoryStore,
    action_id: str,
    outcome: Outcome,
    detail: str = "",
    inbox: WorldInbox | None = None,
) -> bool:
    """Record what the game did with an action and let its NPC know, once. True the first time.

    A failed action reaches the NPC as an `action_result` event whose id comes from the action, so
    a result reported twice (a bridge retry) is handled once: the NPC reconsiders. A done one is
    written to the NPC's memory here, keyed by the action, without waking the NPC (see
    aiworld.npc.outcomes): half of the workflow tasks of a busy world were these.
    """
    status = await queue.status(action_id)
    if status is None:
        raise UnknownAction(action_id)
    first_time = await queue.complete(action_id, outcome, detail)
    event = GameEvent(
        event_id=f"result-{action_id}",
        kind=GameEventKind.ACTION_RESULT,
        action_id=action_id,
        outcome=outcome,
        detail=detail[:200] or None,
    )
    queued = QueuedAction.model_validate_json(status["payload"]) if "payload" in status else None
    action = queued.action if queued else None
    if isinstance(action, TradeAction) and outcome == "done":
        await queue.record_shop_price(status["npc_id"], action.item_id, action.price)
    if inbox is not None:
        # A shop's price change is news for the economy, once per result id; routed before the
        # NPC hears of it so that it counts even when the NPC has retired meanwhile.
        await inbox.route_npc_event(status["npc_id"], event, action_kind=action.kind if action else None)
    # Done on every report, not only the first: if a previous attempt recorded the result but
    # crashed before this, this one delivers it; the memory id and the event id are the action's.
    if outcome == "done":
        memory = action_done_memory(action_id, event.detail, datetime.now(UTC), queued.map if queued else None)
        await memories.remember(status["npc_id"], memory)
    else:
        await client.get_workflow_handle(npc_workflow_id(status["npc_id"])).signal("game_event", event)
    return first_time
