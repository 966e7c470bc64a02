"""Game rules every decision passes before anything reaches the game (DESIGN.md §6).

Runs inside workflow code, so it is pure and deterministic. LLM output is untrusted: an action is
accepted as is, clamped into range (text length, shop prices) or rejected with a reason that the
NPC remembers and the operator sees; rejected actions are never executed.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

from aiworld.models import (
    MAP_WEATHERS,
    MAX_ANNOUNCE_CHARS,
    MAX_NPC_SPEECH_CHARS,
    Action,
    AnnounceAction,
    Decision,
    EmoteAction,
    GiveItemAction,
    GiveZenyAction,
    IdleAction,
    MoveAction,
    NpcProfile,
    SayAction,
    SpawnMonsterAction,
    StartQuestAction,
    TradeAction,
    WalkToAction,
    WeatherAction,
    clean_game_text,
)


@dataclass(frozen=True)
class GameLimits:
    allowed_kinds: frozenset[str] = frozenset(
        {
            "say",
            "emote",
            "walk_to",
            "move",
            "trade",
            "give_item",
            "give_zeny",
            "start_quest",
            "announce",
            "spawn_monster",
            "weather",
            "idle",
        }
    )
    # Small gifts an NPC may hand out besides what its own shop sells.
    giftable_items: frozenset[int] = frozenset({501, 502, 512, 513, 519, 520, 531, 535})
    max_gift_amount: int = 5
    max_zeny_gift: int = 500
    # Shop prices may move within these factors of the item's base price. The floor stays high:
    # below about 0.75 of a base price that is twice the NPC sell price, players could buy from
    # the shop and sell back to any NPC at a profit (rAthena warns of it at load time).
    price_floor_factor: float = 0.9
    price_ceiling_factor: float = 2.0
    allowed_quest_ids: frozenset[int] = frozenset()
    # Harmless monsters a story may bring in: Poring, Fabre, Lunatic, Drops, Chonchon.
    spawnable_mobs: frozenset[int] = frozenset({1002, 1007, 1063, 1113, 1011})
    max_spawn_amount: int = 3
    min_importance_to_spawn: int = 7
    min_importance_to_announce_map: int = 6
    min_importance_to_announce_server: int = 9
    # Weather changes a whole map for every player on it: only the world's most important NPCs
    # (and the environment cycle speaking through them) may make it.
    weathers: frozenset[str] = frozenset(MAP_WEATHERS)
    min_importance_for_weather: int = 8


DEFAULT_LIMITS = GameLimits()


@dataclass
class Verdict:
    accepted: list[Action] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    clamped: list[str] = field(default_factory=list)


def _clamp_text(text: str, limit: int) -> str:
    cleaned = clean_game_text(text)
    if len(cleaned) <= limit:
        return cleaned
    cut = cleaned[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"


def validate_decision(
    decision: Decision, profile: NpcProfile, limits: GameLimits = DEFAULT_LIMITS, *, involved: Set[int] = frozenset()
) -> Verdict:
    """`involved`: char ids of the players in the triggering events or near the NPC, the only ones
    a gift, zeny or a quest may go to (an LLM may name anyone, or a cached decision someone else)."""
    verdict = Verdict()
    for action in decision.actions:
        outcome = _check(action, profile, limits, involved)
        if isinstance(outcome, str):
            verdict.rejections.append(f"{action.kind}: {outcome}")
            continue
        checked, note = outcome
        if note:
            verdict.clamped.append(f"{action.kind}: {note}")
        if not isinstance(checked, IdleAction):
            verdict.accepted.append(checked)
    return verdict


def _check(action: Action, profile: NpcProfile, limits: GameLimits, involved: Set[int]) -> tuple[Action, str] | str:
    """The action as it may run (and a note if it was clamped), or why it may not."""
    if action.kind not in limits.allowed_kinds:
        return f"kind {action.kind!r} is not allowed in this world"
    if isinstance(action, GiveItemAction | GiveZenyAction | StartQuestAction) and action.char_id not in involved:
        return f"char {action.char_id} is not involved (in none of the events and not near {profile.name})"
    area = profile.area
    assert area is not None
    match action:
        case SayAction(text=text) | AnnounceAction(text=text):
            limit = MAX_NPC_SPEECH_CHARS if isinstance(action, SayAction) else MAX_ANNOUNCE_CHARS
            safe = _clamp_text(text, limit)
            if not safe:
                return "text has no visible characters"
            if isinstance(action, AnnounceAction):
                needed = (
                    limits.min_importance_to_announce_server
                    if action.scope == "server"
                    else limits.min_importance_to_announce_map
                )
                if profile.importance < needed:
                    return f"a {action.scope} announcement needs importance {needed}, {profile.name} has {profile.importance}"
            note = "text shortened or cleaned" if safe != text else ""
            return action.model_copy(update={"text": safe}), note
        case WalkToAction(x=x, y=y) | MoveAction(x=x, y=y):
            if not area.contains(x, y):
                return f"({x},{y}) is outside {profile.name}'s area on {profile.map} ({area.x1},{area.y1})-({area.x2},{area.y2})"
            return action, ""
        case TradeAction(item_id=item_id, price=price):
            item = next((entry for entry in profile.shop if entry.item_id == item_id), None)
            if item is None:
                return f"item {item_id} is not sold in {profile.name}'s shop"
            floor = max(1, round(item.base_price * limits.price_floor_factor))
            ceiling = round(item.base_price * limits.price_ceiling_factor)
            bounded = min(max(price, floor), ceiling)
            note = f"price {price} clamped to {bounded}" if bounded != price else ""
            return action.model_copy(update={"price": bounded}), note
        case GiveItemAction(item_id=item_id, amount=amount):
            sold = {entry.item_id for entry in profile.shop}
            if item_id not in limits.giftable_items and item_id not in sold:
                return f"item {item_id} may not be given away"
            if not 1 <= amount <= limits.max_gift_amount:
                return f"amount {amount} is outside 1..{limits.max_gift_amount}"
            return action, ""
        case GiveZenyAction(amount=amount):
            ceiling = min(limits.max_zeny_gift, profile.wealth)
            if not 1 <= amount <= ceiling:
                return f"{amount} zeny is outside 1..{ceiling} (gift limit and {profile.name}'s wealth)"
            return action, ""
        case StartQuestAction(quest_id=quest_id):
            if quest_id not in limits.allowed_quest_ids:
                return f"quest {quest_id} is not offered in this world"
            return action, ""
        case SpawnMonsterAction(mob_id=mob_id, amount=amount, x=x, y=y):
            if profile.importance < limits.min_importance_to_spawn:
                return f"spawning needs importance {limits.min_importance_to_spawn}"
            if mob_id not in limits.spawnable_mobs:
                return f"monster {mob_id} may not be spawned"
            if not 1 <= amount <= limits.max_spawn_amount:
                return f"amount {amount} is outside 1..{limits.max_spawn_amount}"
            if not area.contains(x, y):
                return f"({x},{y}) is outside {profile.name}'s area"
            return action, ""
        case WeatherAction(weather=weather):
            if weather not in limits.weathers:
                return f"weather {weather!r} is not one the game shows ({', '.join(sorted(limits.weathers))})"
            if profile.importance < limits.min_importance_for_weather:
                return f"changing the weather needs importance {limits.min_importance_for_weather}, {profile.name} has {profile.importance}"
            return action, ""
        case EmoteAction() | IdleAction():
            return action, ""
    return f"kind {action.kind!r} has no rule"
