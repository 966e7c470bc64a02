"""What each system's cycle decides from what it read: the next state, the history, the game actions
and the news, as one CycleOutcome. Pure and deterministic: it runs in workflow code.

Game actions go through the same game rules as every NPC decision (aiworld.npc.rules); one the
rules refuse is left out and its reason kept in the outcome (and so in the history's record).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from aiworld.models import (
    Action,
    AnnounceAction,
    Decision,
    GameEvent,
    GameEventKind,
    GiveItemAction,
    GiveZenyAction,
    NpcProfile,
    QueuedAction,
    SayAction,
    SpawnMonsterAction,
    StartQuestAction,
    TradeAction,
    WeatherAction,
)
from aiworld.npc.rules import DEFAULT_LIMITS, GameLimits, validate_decision
from aiworld.world import economy, environment, politics, quests
from aiworld.world.cycle import (
    CycleOutcome,
    CycleParams,
    CycleRead,
    CycleWrite,
    RelationshipMove,
    WorldChange,
    stable_id,
)
from aiworld.world.news import NewsSource, Scope, WorldNews

QUEST_LIMITS = dataclasses.replace(DEFAULT_LIMITS, allowed_quest_ids=frozenset(quests.QUEST_SLOTS))
QUEST_THANKS_RELATIONSHIP = 10
FETCH_SUPPLY_PER_UNIT = 10
MAX_FACTS = 16


def _outcome(system: str, read: CycleRead, now: datetime) -> CycleOutcome:
    outcome = CycleOutcome(
        cycle_id=read.cycle_id,
        system=system,
        at=now,
        cursor=read.next_cursor,
        events_read=len(read.inbox) + read.refused_entries,
    )
    if read.refused_entries:
        outcome.changes.append(
            WorldChange(
                what="inbox:refused",
                after=str(read.refused_entries),
                why=f"{read.refused_entries} inbox entries were not valid game events and were skipped",
                importance=1,
            )
        )
    return outcome


def _queue(
    outcome: CycleOutcome,
    profile: NpcProfile,
    action: Action,
    reason: str,
    *,
    limits: GameLimits = DEFAULT_LIMITS,
    involved: frozenset[int] = frozenset(),
) -> None:
    """Queue one action of `profile` if the game rules take it; its id is fixed by the cycle."""
    verdict = validate_decision(Decision(actions=[action]), profile, limits, involved=involved)
    if not verdict.accepted:
        outcome.refused.extend(f"{profile.npc_id} {rejection}" for rejection in verdict.rejections)
        return
    index = len(outcome.actions)
    outcome.actions.append(
        QueuedAction(
            action_id=f"world-{outcome.system[:4]}-{stable_id(outcome.cycle_id, profile.npc_id, index, length=20)}",
            npc_id=profile.npc_id,
            sequence=0,
            action=verdict.accepted[0],
            map=profile.map,
            npc_name=profile.name,
            reason=reason[:200],
            created_at=outcome.at,
        )
    )


def _world_event(event_id: str, text: str, facts: dict[str, str | int | float], now: datetime) -> GameEvent:
    return GameEvent(event_id=event_id, kind=GameEventKind.WORLD_EVENT, occurred_at=now, text=text[:200], facts=facts)


def plan_economy(read: CycleRead, now: datetime, params: CycleParams) -> CycleOutcome:
    outcome = _outcome("economy", read, now)
    merchants = [npc for npc in read.npcs if npc.shop]
    step = economy.economy_step(read.state, read.inbox, merchants)
    outcome.changes += step.changes
    outcome.write = CycleWrite(state=step.fields)
    by_id = {npc.npc_id: npc for npc in merchants}
    for npc_id, item_id, price in step.reprices:
        _queue(outcome, by_id[npc_id], TradeAction(item_id=item_id, price=price), f"market price of {item_id}")
    return outcome


def plan_politics(read: CycleRead, now: datetime, params: CycleParams) -> CycleOutcome:
    outcome = _outcome("politics", read, now)
    step = politics.politics_step(read.state, read.inbox, read.other_state)
    outcome.changes += step.changes
    outcome.write = CycleWrite(state=step.fields, state_deleted=step.deleted, factions=step.factions)
    return outcome


def _most_important(npcs: list[NpcProfile], map_name: str) -> list[NpcProfile]:
    return sorted((npc for npc in npcs if npc.map == map_name), key=lambda npc: (-npc.importance, npc.npc_id))


def plan_environment(read: CycleRead, now: datetime, params: CycleParams) -> CycleOutcome:
    outcome = _outcome("environment", read, now)
    step = environment.environment_step(
        read.state, read.maps, now, read.cycle_id, params.game_day_seconds, params.days_per_season
    )
    outcome.changes += step.changes
    outcome.write = CycleWrite(state=step.fields)
    for change in step.changes:
        if not change.what.startswith("weather:"):
            continue
        map_name = change.what.removeprefix("weather:")
        # Only an NPC the rules let change a whole map's weather may show it; elsewhere the weather
        # lives in world state and in the NPCs' news alone.
        shown_by = [
            npc
            for npc in _most_important(read.npcs, map_name)
            if npc.importance >= DEFAULT_LIMITS.min_importance_for_weather
        ]
        if shown_by and change.after is not None:
            flag = environment.MAP_FLAG_OF[change.after]
            _queue(outcome, shown_by[0], WeatherAction(weather=flag), change.why)
    for natural in step.events:
        if natural.kind == "bloom":
            outcome.write.forwarded.setdefault("economy", []).append(
                _world_event(
                    f"env-bloom-{stable_id(read.cycle_id, 'bloom')}",
                    natural.text,
                    {
                        "supply_item": environment.BLOOM_ITEM,
                        "supply_change": environment.BLOOM_SUPPLY,
                        "cause": "the fields bloom",
                    },
                    now,
                )
            )
            continue
        assert natural.map is not None
        locals_ = _most_important(read.npcs, natural.map)
        if not locals_:
            continue
        if natural.kind == "storm":
            _queue(outcome, locals_[0], AnnounceAction(text=natural.text, scope="map"), "a storm")
        else:  # a migration: harmless monsters where the most important local stands
            npc = locals_[0]
            _queue(
                outcome,
                npc,
                SpawnMonsterAction(mob_id=environment.MIGRATING_MOB, amount=2, x=npc.x, y=npc.y),
                natural.text,
            )
    return outcome


def plan_quests(read: CycleRead, now: datetime, params: CycleParams) -> CycleOutcome:
    outcome = _outcome("quests", read, now)
    step = quests.quest_step(
        quests.load_quests(read.quests),
        read.inbox,
        read.other_state.get("economy", {}),
        read.other_state.get("politics", {}),
        read.npcs,
        now,
        read.cycle_id,
        params.quest_ttl_seconds,
        params.max_open_quests,
    )
    outcome.changes += step.changes
    were_open = {quest_id for quest_id, quest in quests.load_quests(read.quests).items() if quest.is_open}
    outcome.write = CycleWrite(
        state={"open_quests": str(len((were_open - set(step.closed)) | set(step.opened)))},
        quests={quest_id: quest.to_hash() for quest_id, quest in step.quests.items()},
        open_quests=step.opened,
        closed_quests=step.closed,
    )
    by_id = {npc.npc_id: npc for npc in read.npcs}
    for quest in step.taken:
        giver = by_id.get(quest.giver)
        if giver and quest.taker:
            _queue(
                outcome,
                giver,
                StartQuestAction(char_id=quest.taker, quest_id=quest.slot),
                f"quest {quest.quest_id} taken",
                limits=QUEST_LIMITS,
                involved=frozenset({quest.taker}),
            )
    for payout in step.payouts:
        quest, char_id = payout.quest, payout.char_id
        involved = frozenset({char_id})
        outcome.relationships.append(
            RelationshipMove(
                npc_id=quest.giver,
                party=f"player:{char_id}",
                delta=QUEST_THANKS_RELATIONSHIP,
                change_id=f"quest-{quest.quest_id}",
                reason=f"finished my quest: {quest.title}"[:200],
            )
        )
        done = f"quest-done-{quest.quest_id}"
        outcome.write.forwarded.setdefault("politics", []).append(
            _world_event(
                done,
                f"A quest for {quest.faction} was done",
                {"event": "quest_done", "faction": quest.faction, "char_id": char_id},
                now,
            )
        )
        if quest.kind == "fetch":
            outcome.write.forwarded.setdefault("economy", []).append(
                _world_event(
                    f"{done}-supply",
                    f"{quest.needed} of item {quest.target} delivered",
                    {
                        "supply_item": quest.target,
                        "supply_change": quest.needed * FETCH_SUPPLY_PER_UNIT,
                        "cause": "a quest delivery",
                    },
                    now,
                )
            )
        giver = by_id.get(quest.giver)
        if giver is None:
            outcome.refused.append(f"{quest.giver}: giver of {quest.quest_id} is gone; reward not paid in game")
            continue
        reason = f"reward of quest {quest.quest_id}"
        if quest.reward_zeny:
            _queue(
                outcome,
                giver,
                GiveZenyAction(char_id=char_id, amount=quest.reward_zeny),
                reason,
                limits=QUEST_LIMITS,
                involved=involved,
            )
        _queue(
            outcome,
            giver,
            GiveItemAction(char_id=char_id, item_id=quest.reward_item, amount=quest.reward_amount),
            reason,
            limits=QUEST_LIMITS,
            involved=involved,
        )
        _queue(outcome, giver, SayAction(text="Thank you, that helps a lot!", to_char_id=char_id), reason)
    return outcome


PLANS: dict[str, Callable[[CycleRead, datetime, CycleParams], CycleOutcome]] = {
    "economy": plan_economy,
    "politics": plan_politics,
    "environment": plan_environment,
    "quests": plan_quests,
}


def news_of(outcome: CycleOutcome, params: CycleParams) -> list[WorldNews]:
    """The changes NPCs should hear of: important enough and with a scope that names valid places."""
    told = []
    for change in outcome.changes:
        if change.scope is None or change.importance < params.broadcast_min_importance or not change.text:
            continue
        try:
            told.append(
                WorldNews(
                    news_id=f"{outcome.system[:4]}-{stable_id(outcome.cycle_id, change.what, length=24)}",
                    source=NewsSource(outcome.system),
                    scope=Scope.model_validate(change.scope),
                    text=change.text,
                    importance=change.importance,
                    facts=dict(sorted(change.facts.items())[:MAX_FACTS]),
                    occurred_at=outcome.at,
                )
            )
        except ValidationError as invalid:
            outcome.refused.append(f"news of {change.what} not told: {invalid.errors()[0]['msg']}")
    return told
