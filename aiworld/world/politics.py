"""Faction relations and territory, pure and deterministic.

Relations run from -100 to 100 per pair of factions (`relation:{a}:{b}` with a < b). Attacks of one
faction on another's NPCs pull them down, gifts and peace pull them up, and outside a conflict old
grudges fade a point per cycle. A pair falls into conflict at CONFLICT_AT and stays in it (wars do
not end by themselves) until the relation climbs back over PEACE_ABOVE, which takes a peace event or
many gifts. Each conflict keeps its cause and the faction that suffers it (quests help that one).
Players earn standing with a faction by quests done for it and lose it by attacking its NPCs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiworld.models import GameEventKind
from aiworld.world.cycle import InboxEntry, WorldChange

ATTACK = -12
GIFT = 4
PEACE = 60
QUEST_STANDING = 5
ATTACK_STANDING = -5
GIFT_STANDING = 2
CONFLICT_AT = -50
PEACE_ABOVE = -20
ALLIANCE_AT = 60
FADE = 1
UNHELD = "none"  # the owner of a castle no faction holds (as the bridge reports a free castle)


def pair(a: str, b: str) -> tuple[str, str]:
    first, second = sorted((a, b))
    return first, second


def relation_key(a: str, b: str) -> str:
    first, second = pair(a, b)
    return f"relation:{first}:{second}"


@dataclass
class PoliticsStep:
    fields: dict[str, str]
    deleted: list[str]
    factions: dict[str, dict[str, str]]
    changes: list[WorldChange] = field(default_factory=list)


@dataclass
class _Pressure:
    delta: int = 0
    causes: list[str] = field(default_factory=list)
    harmed: dict[str, int] = field(default_factory=dict)
    peace: bool = False


def _clamp(value: int) -> int:
    return max(-100, min(100, value))


def politics_step(state: dict[str, str], inbox: list[InboxEntry], factions: dict[str, dict[str, str]]) -> PoliticsStep:
    pressures: dict[tuple[str, str], _Pressure] = {}
    standing: dict[tuple[str, int], int] = {}
    territory: dict[str, str] = {}
    for entry in inbox:
        event, facts = entry.event, entry.event.facts or {}
        kind = str(facts.get("event", ""))
        victim = str(facts.get("faction_b") or facts.get("faction") or entry.faction or "")
        attacker = str(facts.get("faction_a") or facts.get("attacker_faction") or "")
        if event.kind is GameEventKind.PLAYER_ATTACKED and victim and event.player:
            if attacker and attacker != victim:
                kind = "attack"
            else:
                who = (victim, event.player.char_id)
                standing[who] = standing.get(who, 0) + ATTACK_STANDING
                continue
        if event.kind is GameEventKind.ITEM_RECEIVED and victim and event.player and not attacker:
            who = (victim, event.player.char_id)
            standing[who] = standing.get(who, 0) + GIFT_STANDING
            continue
        if kind == "castle" and isinstance(facts.get("map"), str) and isinstance(facts.get("owner"), str):
            territory[str(facts["map"])] = str(facts["owner"])
            continue
        if kind == "quest_done" and isinstance(facts.get("char_id"), int) and victim:
            who = (victim, int(facts["char_id"]))
            standing[who] = standing.get(who, 0) + QUEST_STANDING
            continue
        if kind not in ("attack", "gift", "peace") or not attacker or not victim or attacker == victim:
            continue
        pressure = pressures.setdefault(pair(attacker, victim), _Pressure())
        cause = str(facts.get("cause") or event.text or kind)[:80]
        if kind == "attack":
            pressure.delta += ATTACK
            pressure.harmed[victim] = pressure.harmed.get(victim, 0) + 1
            pressure.causes.append(f"{attacker} attacked {victim}: {cause}")
        elif kind == "gift":
            pressure.delta += GIFT
            pressure.causes.append(f"{attacker} sent gifts to {victim}")
        else:
            pressure.delta += PEACE
            pressure.peace = True
            pressure.causes.append(f"peace between {attacker} and {victim}: {cause}")

    fields: dict[str, str] = {}
    deleted: list[str] = []
    faction_writes: dict[str, dict[str, str]] = {}
    changes: list[WorldChange] = []
    known_pairs = {tuple(key.split(":")[1:3]) for key in state if key.startswith("relation:") and key.count(":") == 2}
    for a, b in sorted(known_pairs | set(pressures)):
        key = f"relation:{a}:{b}"
        before = int(float(state.get(key, "0") or 0))
        in_conflict = f"conflict:{a}:{b}" in state
        pressure = pressures.get((a, b), _Pressure())
        after = before + pressure.delta
        if not pressure.delta and not in_conflict and after != 0:
            after -= FADE if after > 0 else -FADE  # grudges and friendships fade when nothing happens
        after = _clamp(after)
        fields[key] = str(after)
        faction_writes.setdefault(a, {})[f"relation:{b}"] = str(after)
        faction_writes.setdefault(b, {})[f"relation:{a}"] = str(after)
        cause = "; ".join(dict.fromkeys(pressure.causes))[:200] or "time passed"
        if after != before and pressure.delta:
            changes.append(
                WorldChange(
                    what=key,
                    before=str(before),
                    after=str(after),
                    why=cause,
                    importance=3,
                    facts={"faction_a": a, "faction_b": b, "relation": after},
                )
            )
        if not in_conflict and after <= CONFLICT_AT:
            victim = max(sorted(pressure.harmed), key=lambda name: pressure.harmed[name]) if pressure.harmed else a
            enemy = b if victim == a else a
            fields[f"conflict:{a}:{b}"] = cause
            fields[f"victim:{a}:{b}"] = victim
            faction_writes[a][f"conflict:{b}"] = cause
            faction_writes[b][f"conflict:{a}"] = cause
            changes.append(
                WorldChange(
                    what=f"conflict:{a}:{b}",
                    before="peace",
                    after="conflict",
                    why=f"relation fell to {after}: {cause}"[:300],
                    importance=8,
                    scope={"kind": "world"},
                    facts={
                        "faction_a": a,
                        "faction_b": b,
                        "relation": after,
                        "victim": victim,
                        "enemy": enemy,
                        # what NPCs act on (aiworld.world.news.Fact): the victim's people turn wary
                        "faction": victim,
                        "other_faction": enemy,
                        "stance": "war",
                    },
                )
            )
        elif in_conflict and after > PEACE_ABOVE:
            deleted += [f"conflict:{a}:{b}", f"victim:{a}:{b}"]
            faction_writes[a][f"conflict:{b}"] = ""
            faction_writes[b][f"conflict:{a}"] = ""
            changes.append(
                WorldChange(
                    what=f"conflict:{a}:{b}",
                    before="conflict",
                    after="peace",
                    why=f"relation rose to {after}: {cause}"[:300],
                    importance=7,
                    scope={"kind": "world"},
                    facts={
                        "faction_a": a,
                        "faction_b": b,
                        "relation": after,
                        "peace": 1,
                        "faction": a,
                        "other_faction": b,
                        "stance": "peace",
                    },
                )
            )
        alliance = f"alliance:{a}:{b}"
        if after >= ALLIANCE_AT and alliance not in state:
            fields[alliance] = cause
            changes.append(
                WorldChange(
                    what=alliance,
                    before="none",
                    after="alliance",
                    why=cause,
                    importance=6,
                    scope={"kind": "world"},
                    facts={
                        "faction_a": a,
                        "faction_b": b,
                        "relation": after,
                        "faction": a,
                        "other_faction": b,
                        "stance": "alliance",
                    },
                )
            )
        elif after < ALLIANCE_AT - 20 and alliance in state:
            deleted.append(alliance)
    for castle, owner in sorted(territory.items()):
        key = f"territory:{castle}"
        previous = state.get(key)
        if previous == owner or (owner == UNHELD and previous is None):
            continue
        if owner == UNHELD:  # the guild that held it broke up: nobody's territory
            deleted.append(key)
        else:
            fields[key] = owner
            faction_writes.setdefault(owner, {})[key] = "held"
        if previous:
            faction_writes.setdefault(previous, {})[key] = ""
        from_whom = f" from {previous}" if previous else ""
        changes.append(
            WorldChange(
                what=key,
                before=previous,
                after=owner,
                why=f"{previous} lost {castle}" if owner == UNHELD else f"{owner} took {castle}" + from_whom,
                importance=6,
                scope={"kind": "world"},
                facts={"castle": castle, "owner": owner},
            )
        )
    for (faction, char_id), delta in sorted(standing.items()):
        before = int(float(factions.get(faction, {}).get(f"standing:{char_id}", "0") or 0))
        after = _clamp(before + delta)
        faction_writes.setdefault(faction, {})[f"standing:{char_id}"] = str(after)
        changes.append(
            WorldChange(
                what=f"standing:{faction}:{char_id}",
                before=str(before),
                after=str(after),
                why=("quests done" if delta > 0 else "attacks on its people") + f" ({delta:+d})",
                importance=2,
                facts={"faction": faction, "char_id": char_id, "standing": after},
            )
        )
    return PoliticsStep(fields=fields, deleted=deleted, factions=faction_writes, changes=changes)


def conflicts(state: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(faction a, faction b, the faction that suffers, cause) of every conflict now."""
    found = []
    for key, cause in sorted(state.items()):
        if key.startswith("conflict:") and key.count(":") == 2:
            _, a, b = key.split(":")
            found.append((a, b, state.get(f"victim:{a}:{b}", a), cause))
    return found
