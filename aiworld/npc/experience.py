"""What an NPC remembers of a game event, and how the event moves its regard for whoever caused it.

Pure functions of the event and the NPC's profile, so that the NPC's own workflow and a neighbour's
meeting (which writes a greeting straight into the listener's memory, DESIGN.md §8) word the same
event the same way, and a memory written twice under the same id is the same memory.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from aiworld.memory import gossip
from aiworld.memory.retrieval import valence_of
from aiworld.models import GameEvent, GameEventKind, Memory, NpcProfile
from aiworld.npc.outcomes import action_result_narration


class RelationshipChange(BaseModel):
    party: str
    delta: int = Field(ge=-100, le=100)
    change_id: str
    reason: str


def concerns_faction(event: GameEvent, profile: NpcProfile) -> bool:
    faction = profile.faction
    if faction == "none":
        return False
    named = (event.facts or {}).get("faction")
    return named == faction or faction.replace("_", " ") in (event.text or "").lower()


def memory_of_event(event: GameEvent, profile: NpcProfile, memory_id: str, at: datetime) -> Memory:
    who = event.player.name if event.player else (event.other_npc_id or "someone")
    about = (
        f"player:{event.player.char_id}"
        if event.player
        else (f"npc:{event.other_npc_id}" if event.other_npc_id else None)
    )
    text, importance, emotion = {
        GameEventKind.PLAYER_NEARBY: (f"{who} came near me", 2, "neutral"),
        GameEventKind.PLAYER_LEFT: (f"{who} went away", 1, "neutral"),
        GameEventKind.PLAYER_ATTACKED: (f"{who} attacked me", 8, "angry"),
        GameEventKind.PLAYER_KILLED_MONSTER: (f"{who} slew a monster nearby", 3, "impressed"),
        GameEventKind.ITEM_RECEIVED: (f"{who} gave me {event.amount} of item {event.item_id}", 6, "grateful"),
        GameEventKind.NPC_SPOKE: (f"{who} said:", 3, "neutral"),  # the words go apart, quoted
        GameEventKind.WORLD_EVENT: (f"News: {event.text}", event.importance, "curious"),
        GameEventKind.ACTION_RESULT: action_result_narration(event.action_id, event.outcome, event.detail),
    }[event.kind]
    news_id, retellings = gossip.news_memory_facts(event)
    valence = valence_of(emotion)
    if event.kind is GameEventKind.WORLD_EVENT and concerns_faction(event, profile):
        # What happens to its faction weighs on a member as much as it is loyal.
        loyalty = profile.faction_loyalty / 100
        importance = min(10, importance + round(3 * loyalty))
        valence = max(-1.0, min(1.0, gossip.tone(event.text or "") * loyalty))
        emotion = "proud" if valence > 0 else "worried" if valence < 0 else emotion
    return Memory(
        memory_id=memory_id,
        kind="gossip" if event.kind is GameEventKind.NPC_SPOKE and news_id else "observation",
        text=text[:600],
        importance=importance,
        emotion=emotion,
        about=about,
        created_at=at,
        words=event.text if event.kind is GameEventKind.NPC_SPOKE else None,
        valence=valence,
        participants=[about] if about else [],
        place=profile.map,
        news_id=news_id,
        retellings=retellings,
        facts=event.facts if event.kind is GameEventKind.WORLD_EVENT else None,
    )


def relationship_change_of(event: GameEvent, profile: NpcProfile) -> RelationshipChange | None:
    """Keyed by the event, so the same event moves a score once, whoever writes it."""
    if event.kind is GameEventKind.NPC_SPOKE and event.other_npc_id:
        # Liking moves with what a neighbour says (kind words, ill words of one's faction).
        return RelationshipChange(
            party=f"npc:{event.other_npc_id}",
            delta=gossip.liking_change(event.text or "", profile),
            change_id=event.event_id,
            reason="said: " + (event.text or "")[:60],
        )
    if event.player is None:
        return None
    delta = {GameEventKind.PLAYER_ATTACKED: -15, GameEventKind.ITEM_RECEIVED: 5}.get(event.kind)
    if delta is None:
        return None
    return RelationshipChange(
        party=f"player:{event.player.char_id}", delta=delta, change_id=event.event_id, reason=event.kind.value
    )
