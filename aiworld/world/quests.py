"""Quests from the world's state, pure and deterministic.

A shortage (economy supply under the shortage line) becomes a fetch quest from a merchant who sells
the item; a conflict becomes a hunt for the faction that suffers it. Each quest has a giver, one
objective, a reward within the game rules' gift limits, an expiry and one of rAthena's generic
quest slots (rathena/db/import/quest_db.yml), so the game's quest log can show it. Game events move
it on: the giver's `start_quest` taken by a player, items handed to the giver, monsters killed on
the quest's map. Reaching the objective completes it and pays once; a quest nobody finished by its
expiry expires. Every event counts once (its id is remembered on the quest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from aiworld.models import GameEventKind, NpcProfile
from aiworld.npc.rules import DEFAULT_LIMITS
from aiworld.world.cycle import InboxEntry, WorldChange, stable_id
from aiworld.world.economy import shortages
from aiworld.world.politics import conflicts

# Generic slots of rathena/db/import/quest_db.yml: a generated quest borrows one while it is open.
QUEST_SLOTS = tuple(range(64500, 64516))
HUNT_KILLS = 5
REWARD_ITEM = 501  # Red Potion: giftable under the game rules
REWARD_ITEM_AMOUNT = 2
SEEN_EVENTS_KEPT = 30
MIN_GIVER_WEALTH_FOR_ZENY = 50

QuestStatus = Literal["offered", "taken", "completed", "expired"]


class Quest(BaseModel):
    quest_id: str
    kind: Literal["fetch", "hunt"]
    status: QuestStatus = "offered"
    title: str
    giver: str
    giver_name: str
    faction: str
    map: str
    target: int = 0  # item id (fetch) or mob id, 0 for any monster (hunt)
    needed: int = Field(ge=1)
    progress: int = 0
    reward_zeny: int = 0
    reward_item: int = REWARD_ITEM
    reward_amount: int = REWARD_ITEM_AMOUNT
    slot: int
    cause: str
    created_at: float
    expires_at: float
    taker: int | None = None
    paid: bool = False
    seen: list[str] = Field(default_factory=list)

    def to_hash(self) -> dict[str, str]:
        return {
            "status": self.status,
            "kind": self.kind,
            "giver": self.giver,
            "slot": str(self.slot),
            "expires_at": str(self.expires_at),
            "data": self.model_dump_json(),
        }

    @classmethod
    def from_hash(cls, values: dict[str, str]) -> Quest:
        return cls.model_validate_json(values["data"])

    @property
    def is_open(self) -> bool:
        return self.status in ("offered", "taken")


@dataclass
class Payout:
    """What a completed quest pays, to whom, from whom: actions of the giver, validated later."""

    quest: Quest
    char_id: int


@dataclass
class QuestStep:
    quests: dict[str, Quest]  # every quest this cycle changed, by id
    opened: dict[str, float] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    changes: list[WorldChange] = field(default_factory=list)
    payouts: list[Payout] = field(default_factory=list)
    taken: list[Quest] = field(default_factory=list)


def _reward_zeny(giver: NpcProfile, value: int) -> int:
    if giver.wealth < MIN_GIVER_WEALTH_FOR_ZENY:
        return 0
    return max(1, min(DEFAULT_LIMITS.max_zeny_gift, giver.wealth, value))


def _change(quest: Quest, before: str | None, why: str, importance: int, scope: dict | None) -> WorldChange:
    return WorldChange(
        what=f"quest:{quest.quest_id}",
        before=before,
        after=quest.status,
        why=why[:300],
        importance=importance,
        scope=scope,
        facts={
            "quest_id": quest.quest_id,
            "quest_kind": quest.kind,
            "giver": quest.giver,
            "target": quest.target,
            "needed": quest.needed,
            "progress": quest.progress,
            "slot": quest.slot,
            "status": quest.status,
        },
    )


def _progress(quest: Quest, entry: InboxEntry) -> tuple[str, int] | None:
    """(what happened, progress made) if this event moves the quest on."""
    event = entry.event
    facts = event.facts or {}
    char_id = event.player.char_id if event.player else None
    if quest.status == "offered" and facts.get("quest_id") == quest.quest_id and facts.get("quest_step") == "taken":
        return ("taken", 0) if char_id else None
    if quest.status != "taken" or char_id != quest.taker:
        return None
    if quest.kind == "fetch" and event.kind is GameEventKind.ITEM_RECEIVED:
        if event.item_id == quest.target and entry.npc_id in (quest.giver, None) and event.amount:
            return "handed over", event.amount
    if quest.kind == "hunt" and event.kind is GameEventKind.PLAYER_KILLED_MONSTER:
        where = entry.map or (event.player.map if event.player else None)
        mob = facts.get("mob_id")
        if mob is None and event.detail and event.detail.startswith("monster "):
            mob = event.detail.removeprefix("monster ").strip()
        if where == quest.map and (quest.target == 0 or str(mob) == str(quest.target)):
            return "killed", 1
    return None


def quest_step(
    quests: dict[str, Quest],
    inbox: list[InboxEntry],
    economy: dict[str, str],
    politics: dict[str, str],
    npcs: list[NpcProfile],
    now: datetime,
    cycle_id: str,
    ttl_seconds: float,
    max_open: int,
) -> QuestStep:
    changed: dict[str, Quest] = {}
    step = QuestStep(quests=changed)
    open_quests = {quest_id: quest for quest_id, quest in quests.items() if quest.is_open}
    moment = now.timestamp()

    for entry in inbox:
        for quest in sorted(open_quests.values(), key=lambda q: q.quest_id):
            if entry.event.event_id in quest.seen or not quest.is_open:
                continue
            moved = _progress(quest, entry)
            if moved is None:
                continue
            what, amount = moved
            quest = quest.model_copy(deep=True)
            quest.seen = [*quest.seen, entry.event.event_id][-SEEN_EVENTS_KEPT:]
            before = quest.status
            player = entry.event.player
            if what == "taken" and player:
                quest.status, quest.taker = "taken", player.char_id
                step.taken.append(quest)
                step.changes.append(_change(quest, before, f"{player.name} took it from {quest.giver_name}", 4, None))
            else:
                quest.progress = min(quest.needed, quest.progress + amount)
                if quest.progress >= quest.needed and not quest.paid:
                    quest.status, quest.paid = "completed", True
                    assert quest.taker is not None
                    step.payouts.append(Payout(quest, quest.taker))
                    step.closed.append(quest.quest_id)
                    step.changes.append(
                        _change(
                            quest,
                            before,
                            f"{player.name if player else 'a player'} finished it: {quest.title}",
                            5,
                            {"kind": "npc", "npc_id": quest.giver},
                        )
                    )
                else:
                    step.changes.append(_change(quest, before, f"{what}: {quest.progress}/{quest.needed}", 2, None))
            open_quests[quest.quest_id] = changed[quest.quest_id] = quest

    for quest in sorted(open_quests.values(), key=lambda q: q.quest_id):
        if quest.is_open and quest.expires_at <= moment:
            before = quest.status
            quest = quest.model_copy(update={"status": "expired"})
            changed[quest.quest_id] = open_quests[quest.quest_id] = quest
            step.closed.append(quest.quest_id)
            why = "nobody took it in time" if before == "offered" else "not finished in time"
            step.changes.append(_change(quest, before, why, 3, {"kind": "npc", "npc_id": quest.giver}))

    still_open = [quest for quest in open_quests.values() if quest.is_open]
    used_slots = {quest.slot for quest in still_open}
    free_slots = [slot for slot in QUEST_SLOTS if slot not in used_slots]
    wanted = sorted(
        (quest.kind, quest.target, quest.faction) for quest in still_open
    )  # one open quest per need at a time

    def open_quest(quest: Quest, why: str) -> None:
        changed[quest.quest_id] = quest
        step.opened[quest.quest_id] = quest.expires_at
        free_slots.remove(quest.slot)
        still_open.append(quest)
        wanted.append((quest.kind, quest.target, quest.faction))
        step.changes.append(_change(quest, None, why, 5, {"kind": "map", "map": quest.map}))

    for item_id, supply in shortages(economy):
        if len(still_open) >= max_open or not free_slots:
            break
        sellers = sorted(
            (npc for npc in npcs if any(entry.item_id == item_id for entry in npc.shop)),
            key=lambda npc: (-npc.importance, npc.npc_id),
        )
        if not sellers or any(kind == "fetch" and target == item_id for kind, target, _ in wanted):
            continue
        giver = sellers[0]
        price = int(float(economy.get(f"price:{item_id}", "0") or 0)) or next(
            entry.base_price for entry in giver.shop if entry.item_id == item_id
        )
        needed = max(3, min(10, (70 - supply) // 5 + 3))
        quest_id = f"q{stable_id(cycle_id, 'fetch', item_id, length=12)}"
        quest = Quest(
            quest_id=quest_id,
            kind="fetch",
            title=f"Bring {needed} of item {item_id} to {giver.name}",
            giver=giver.npc_id,
            giver_name=giver.name,
            faction=giver.faction,
            map=giver.map,
            target=item_id,
            needed=needed,
            reward_zeny=_reward_zeny(giver, price * needed),
            slot=free_slots[0],
            cause=f"shortage of item {item_id} (supply {supply})",
            created_at=moment,
            expires_at=moment + ttl_seconds,
        )
        open_quest(quest, f"{giver.name} is short of item {item_id} (supply {supply})")

    for a, b, victim, cause in conflicts(politics):
        if len(still_open) >= max_open or not free_slots:
            break
        if any(kind == "hunt" and faction == victim for kind, _, faction in wanted):
            continue
        members = sorted((npc for npc in npcs if npc.faction == victim), key=lambda npc: (-npc.importance, npc.npc_id))
        if not members:
            continue
        giver = members[0]
        enemy = b if victim == a else a
        quest_id = f"q{stable_id(cycle_id, 'hunt', victim, enemy, length=12)}"
        quest = Quest(
            quest_id=quest_id,
            kind="hunt",
            title=f"Drive back {enemy}'s beasts near {giver.map} for {giver.name}",
            giver=giver.npc_id,
            giver_name=giver.name,
            faction=victim,
            map=giver.map,
            target=0,
            needed=HUNT_KILLS,
            reward_zeny=_reward_zeny(giver, 300),
            slot=free_slots[0],
            cause=f"conflict with {enemy}: {cause}"[:200],
            created_at=moment,
            expires_at=moment + ttl_seconds,
        )
        open_quest(quest, f"{victim} suffers in its conflict with {enemy}")
    return step


def load_quests(records: dict[str, dict[str, str]]) -> dict[str, Quest]:
    """The quests the store holds; a damaged record is left out (it expires from the index)."""
    loaded = {}
    for quest_id, values in records.items():
        try:
            loaded[quest_id] = Quest.from_hash(values)
        except (KeyError, ValueError, json.JSONDecodeError):
            continue
    return loaded
