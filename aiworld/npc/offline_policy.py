"""The offline policy: decisions and dialogue with no network and no API key.

It is the last link of every LLM chain and the whole brain of the demo world, so it must feel
alive: NPCs greet players they know by name, remember what was said, react to world news in their
own voice and wander their routines. It is deterministic — the same context gives the same answer —
because its randomness is seeded from the NPC, the decision sequence and the player's words.
"""

from __future__ import annotations

import hashlib
import random
import re

from aiworld.memory import reflection
from aiworld.memory.reflection import Insight
from aiworld.models import (
    AnnounceAction,
    Decision,
    DecisionResult,
    DecisionUsage,
    DialogueContext,
    DialogueDraft,
    EmoteAction,
    GameEvent,
    GameEventKind,
    Memory,
    NpcContext,
    NpcProfile,
    SayAction,
    TradeAction,
    WalkToAction,
)
from aiworld.world.news import Fact

# How each speech style colours a plain sentence: (openers, closers).
_STYLE: dict[str, tuple[list[str], list[str]]] = {
    "warm": (["Oh, ", "Ah, dear, ", ""], [" Take care now.", "", " Come by any time!"]),
    "formal": (["", "Citizen, ", "Hm. "], ["", " Carry on.", " Stay vigilant."]),
    "scholarly": (["Hm, ", "Interesting — ", ""], ["", " Fascinating, really.", " I must note that down."]),
    "rambling": (["Well now, ", "Ahh, ", "You know, "], [" ...where was I?", "", " Those were the days."]),
    "polite": (["", "Certainly! ", "Of course. "], ["", " Have a pleasant day!", ""]),
    "rough": (["", "Hrmph. ", "Listen. "], ["", " Now move along.", ""]),
    "gentle": (["", "Peace, friend. ", ""], ["", " May Odin guide you.", ""]),
    "slangy": (["Oi, ", "Psst, ", ""], ["", " Got a zeny?", " Heh."]),
    "haughty": (["", "Hmph. ", "How quaint. "], ["", " Do not waste my time.", ""]),
    "soft": (["Um... ", "", "Oh... "], ["", " ...if that's all right.", ""]),
    "jovial": (["Ha! ", "Well met! ", ""], ["", " Drinks are on you!", ""]),
    "brisk": (["", "Quickly now: ", ""], ["", " Next!", ""]),
    "wry": (["", "Heh. ", ""], ["", " Or so the footsteps tell me.", ""]),
    "terse": (["", "", ""], ["", "", ""]),
    "sing-song": (["La-la, ", "", "Tra-la! "], ["", " ♪", ""]),
    "loud": (["HA! ", "Listen up! ", ""], ["", " Nothing gets past me!", ""]),
    "salty": (["Arr, ", "Ahoy, ", ""], ["", " Fair winds.", ""]),
    "blunt": (["", "Look. ", ""], ["", " Buy something or move along.", ""]),
    "commanding": (["", "Attention! ", ""], ["", " Again!", ""]),
    "breathless": (["Oh! ", "Phew — ", ""], ["", " Sorry, must run!", ""]),
}

_INTENTS: list[tuple[str, re.Pattern[str]]] = [
    ("insult", re.compile(r"\b(stupid|idiot|ugly|hate|dumb|fool|shut up|loser)\b", re.I)),
    ("thanks", re.compile(r"\b(thanks|thank you|thx|ty|grateful)\b", re.I)),
    ("farewell", re.compile(r"\b(bye|goodbye|farewell|see you|later)\b", re.I)),
    ("trade", re.compile(r"\b(buy|sell|price|shop|cost|zeny|cheap|wares|trade)\b", re.I)),
    ("rumour", re.compile(r"\b(rumou?rs?|news|gossip|heard|happening|latest)\b", re.I)),
    ("quest", re.compile(r"\b(quest|help|work|job|task|errand|need)\b", re.I)),
    ("identity", re.compile(r"\b(who are you|your name|who is|what do you do)\b", re.I)),
    ("greeting", re.compile(r"\b(hi|hello|hey|greetings|good (morning|evening|day)|yo)\b", re.I)),
]


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _voice(profile: NpcProfile, sentence: str, rng: random.Random) -> str:
    openers, closers = _STYLE.get(profile.personality.speech_style, ([""], [""]))
    return f"{rng.choice(openers)}{sentence}{rng.choice(closers)}".strip()


def _memories_about(memories: list[Memory], party: str) -> list[Memory]:
    return [memory for memory in memories if memory.about == party]


def _random_point_in_area(profile: NpcProfile, rng: random.Random) -> tuple[int, int]:
    area = profile.area
    assert area is not None  # NpcProfile always fills it in
    return rng.randint(area.x1, area.x2), rng.randint(area.y1, area.y2)


# --- autonomous decisions -------------------------------------------------------------------------


_REMARKING_ON_NEWS = "reacting to world news: "


def decide(context: NpcContext) -> Decision:
    """The NPC's next move from its personality, mood, time of day and what just happened."""
    rng = _rng(context.profile.npc_id, context.sequence, len(context.events))
    ordered = _by_importance(context.events)
    reactions = [_react(context, event, rng) for event in ordered]
    chosen = next((decision for decision in reactions if decision is not None), None)
    if chosen is not None and chosen.reason.startswith(_REMARKING_ON_NEWS):
        # News heard together (a world cycle tells several things at once): what touches the
        # NPC's own trade or faction matters more than what it would only remark on.
        for event in ordered:
            if event.kind is GameEventKind.WORLD_EVENT and event.facts:
                if (concerning := _act_on_facts(context.profile, event.facts, rng)) is not None:
                    return concerning
    return chosen or routine(context, rng)


def _by_importance(events: list[GameEvent]) -> list[GameEvent]:
    order = {
        GameEventKind.PLAYER_ATTACKED: 0,
        GameEventKind.WORLD_EVENT: 1,
        GameEventKind.ITEM_RECEIVED: 2,
        GameEventKind.PLAYER_NEARBY: 3,
        GameEventKind.NPC_SPOKE: 4,
        GameEventKind.ACTION_RESULT: 5,
        GameEventKind.PLAYER_KILLED_MONSTER: 6,
        GameEventKind.PLAYER_LEFT: 7,
    }
    return sorted(events, key=lambda event: (order[event.kind], -event.importance))


def _react(context: NpcContext, event: GameEvent, rng: random.Random) -> Decision | None:
    profile, personality = context.profile, context.profile.personality
    player = event.player
    if event.kind is GameEventKind.PLAYER_ATTACKED and player:
        if personality.bravery >= 0.5:
            return Decision(
                actions=[
                    EmoteAction(emotion="anger"),
                    SayAction(text=_voice(profile, f"{player.name}! You will regret raising a hand here!", rng)),
                ],
                mood="angry",
                activity="confronting",
                reason=f"{player.name} attacked me and I stand my ground",
            )
        x, y = _random_point_in_area(profile, rng)
        return Decision(
            actions=[
                EmoteAction(emotion="help"),
                SayAction(text=_voice(profile, "Help! Guards!", rng)),
                WalkToAction(x=x, y=y),
            ],
            mood="afraid",
            activity="fleeing",
            reason=f"{player.name} attacked me and I am no fighter",
        )
    if event.kind is GameEventKind.WORLD_EVENT and event.facts:
        acted = _act_on_facts(profile, event.facts, rng)
        if acted is not None:
            return acted
    if event.kind is GameEventKind.WORLD_EVENT and event.text:
        news = event.text.rstrip(".!")
        worried = event.importance >= 7
        line = f"Did you hear? {news}! What will become of us?" if worried else f"They say {news}. Interesting times."
        actions: list = [
            EmoteAction(emotion="surprise" if worried else "think"),
            SayAction(text=_voice(profile, line, rng)),
        ]
        if profile.importance >= 8 and worried:
            actions.append(AnnounceAction(text=f"{news}. Stay alert, citizens!", scope="map"))
        return Decision(
            actions=actions,
            mood="worried" if worried else "curious",
            activity="discussing news",
            reason=f"{_REMARKING_ON_NEWS}{news}",
        )
    if event.kind is GameEventKind.ITEM_RECEIVED and player:
        return Decision(
            actions=[
                EmoteAction(emotion="thanks"),
                SayAction(text=_voice(profile, f"For me? Thank you, {player.name}!", rng)),
            ],
            mood="grateful",
            activity="thanking",
            reason=f"{player.name} gave me a gift",
        )
    if event.kind is GameEventKind.PLAYER_NEARBY and player:
        return _greet(context, event, rng)
    if event.kind is GameEventKind.NPC_SPOKE and event.text and personality.sociability >= 0.4:
        return Decision(
            actions=[
                SayAction(
                    text=_voice(
                        profile, rng.choice(["Is that so?", "Hah, you don't say.", "Mm, I heard the same."]), rng
                    )
                )
            ],
            mood=context.mood,
            activity="chatting",
            reason=f"{event.other_npc_id} spoke to me",
        )
    if event.kind is GameEventKind.ACTION_RESULT and event.outcome == "failed":
        return Decision(
            actions=[EmoteAction(emotion="sweat")],
            mood="fret",
            activity="reconsidering",
            reason=f"my last action failed: {event.detail or 'no reason given'}",
        )
    if event.kind is GameEventKind.PLAYER_KILLED_MONSTER and player and profile.role in {"guard", "hunter", "trainer"}:
        return Decision(
            actions=[EmoteAction(emotion="best"), SayAction(text=_voice(profile, f"Well fought, {player.name}.", rng))],
            mood="proud",
            activity="watching the fields",
            reason=f"{player.name} slew a monster nearby",
        )
    return None


def _act_on_facts(profile: NpcProfile, facts: dict[str, str | int | float], rng: random.Random) -> Decision | None:
    """News that concerns the NPC's trade or its faction: a merchant tells of a price change and
    why, and reprices what it sells of it; a member of a faction at war turns wary of the enemy."""
    change, item_id = facts.get(Fact.PRICE_CHANGE_PCT), facts.get(Fact.ITEM_ID)
    cause = str(facts.get(Fact.CAUSE) or "").rstrip(".!")
    if isinstance(change, int | float) and change and (profile.shop or profile.role == "merchant"):
        name = str(facts.get(Fact.ITEM_NAME) or f"item {item_id}")
        direction = "up" if change > 0 else "down"
        line = f"{name} is {direction} {abs(change):g}%" + (f", because {cause}" if cause else "") + "."
        actions: list = [
            EmoteAction(emotion="money" if change > 0 else "sweat"),
            SayAction(text=_voice(profile, line, rng)),
        ]
        sold = next((item for item in profile.shop if item.item_id == item_id), None)
        if sold is not None:  # the rules keep the new price within the shop's band
            # The economy's own price when it set one (its cycle reprices the shop the same way),
            # otherwise the shop's price moved as the news says.
            market = facts.get(Fact.PRICE)
            price = market if isinstance(market, int) else round(sold.base_price * (1 + change / 100))
            actions.append(TradeAction(item_id=sold.item_id, price=max(1, price)))
        return Decision(
            actions=actions,
            mood="busy" if change > 0 else "worried",
            activity="repricing wares" if sold else "talking prices",
            reason=f"{name} went {direction} {abs(change):g}%" + (f" because {cause}" if cause else ""),
        )
    sides = {facts.get(Fact.FACTION), facts.get(Fact.OTHER_FACTION)}
    stance = facts.get(Fact.STANCE)
    if profile.faction in sides and len(sides - {None}) == 2 and stance in ("war", "peace"):
        enemy = str(next(side for side in sides if side != profile.faction)).replace("_", " ")
        why = f" They {cause}." if cause else ""
        if stance == "war":
            line = f"We are at war with the {enemy}.{why} I trust none of them."
            activity = "standing watch" if profile.role == "guard" else "keeping watch"
            return Decision(
                actions=[EmoteAction(emotion="anger"), SayAction(text=_voice(profile, line, rng))],
                mood="wary",
                activity=activity,
                reason=f"my faction is at war with the {enemy}" + (f": they {cause}" if cause else ""),
            )
        return Decision(
            actions=[
                EmoteAction(emotion="delight"),
                SayAction(text=_voice(profile, f"Peace with the {enemy} at last.", rng)),
            ],
            mood="relieved",
            activity="discussing news",
            reason=f"my faction made peace with the {enemy}",
        )
    return None


def _greet(context: NpcContext, event: GameEvent, rng: random.Random) -> Decision | None:
    profile, player = context.profile, event.player
    assert player is not None
    if rng.random() > 0.35 + 0.65 * profile.personality.sociability:
        return None  # shy NPCs let some passers-by go unremarked
    party = f"player:{player.char_id}"
    score = context.relationships.get(party, 0)
    known = _memories_about(context.memories, party)
    if score <= -30:
        line, emotion, mood = f"You again, {player.name}. Keep your distance.", "anger", "suspicious"
    elif known or score >= 10:
        line, emotion, mood = f"Welcome back, {player.name}! Good to see you again.", "delight", "happy"
    else:
        greeting = {
            "morning": "Good morning",
            "afternoon": "Good day",
            "evening": "Good evening",
            "night": "Late to be out",
        }
        line, emotion, mood = f"{greeting[context.part_of_day]}, traveller.", "smile", context.mood
    if profile.shop and rng.random() < profile.personality.greed:
        line += " Care to see my wares?"
    return Decision(
        actions=[EmoteAction(emotion=emotion), SayAction(text=_voice(profile, line, rng), to_char_id=player.char_id)],
        mood=mood,
        activity="greeting",
        reason=f"{player.name} came near" + (" and I know them" if known else ""),
    )


def routine(context: NpcContext, rng: random.Random) -> Decision:
    """What the NPC does when nothing in particular happened. The NPC workflow calls this directly
    with `workflow.random()`, so a routine step costs no activity and no LLM call."""
    profile, personality = context.profile, context.profile.personality
    part = context.part_of_day
    if part == "night" and personality.sociability < 0.8:
        return Decision(actions=[], mood="tired", activity="resting", reason="it is night and the streets are quiet")
    actions: list = []
    if profile.routine:
        x, y = profile.routine[context.sequence % len(profile.routine)]
    else:
        x, y = _random_point_in_area(profile, rng)
    if rng.random() < 0.3 + 0.6 * personality.curiosity:
        actions.append(WalkToAction(x=x, y=y))
    if profile.shop and rng.random() < 0.25 * personality.greed:
        item = rng.choice(profile.shop)
        swing = 1 + rng.choice([-0.1, -0.05, 0.05, 0.1])
        actions.append(TradeAction(item_id=item.item_id, price=max(1, round(item.base_price * swing))))
    if rng.random() < personality.sociability * (0.3 if context.players_near else 0.1):
        phrases = personality.catchphrases or [f"What a fine {part} in {profile.map.capitalize()}."]
        actions.append(SayAction(text=rng.choice(phrases)))
    activity = "wandering" if actions and isinstance(actions[0], WalkToAction) else "idling"
    goal = profile.goals[0] if profile.goals else "go about the day"
    return Decision(actions=actions[:3], mood=context.mood, activity=activity, reason=f"{part} routine: {goal}")


# --- dialogue -------------------------------------------------------------------------------------


def _intent(text: str) -> str:
    for name, pattern in _INTENTS:
        if pattern.search(text):
            return name
    return "chat"


def reply(context: DialogueContext) -> DialogueDraft:
    """Answer one player line in the NPC's voice, using what it remembers of that player."""
    profile, turn = context.profile, context.turn
    player = turn.player
    rng = _rng(profile.npc_id, player.char_id, turn.text, context.sequence)
    party = f"player:{player.char_id}"
    score = context.relationships.get(party, 0)
    past = [m for m in _memories_about(context.memories, party) if m.kind == "conversation"]
    intent = _intent(turn.text)
    change = 1
    if intent == "insult":
        text, emotion, change = f"How dare you, {player.name}. I will remember that.", "anger", -5
    elif intent == "thanks":
        text, emotion, change = f"You're most welcome, {player.name}.", "thanks", 2
    elif intent == "farewell":
        text, emotion = f"Farewell, {player.name}. Come back soon.", "smile"
    elif intent == "trade":
        if profile.shop:
            cheapest = min(profile.shop, key=lambda item: item.base_price)
            text = f"My goods start at {cheapest.base_price} zeny. Take a look, {player.name}."
        else:
            text = f"I'm no merchant, {player.name}, but the market by the fountain has all you need."
        emotion = "money"
    elif intent == "rumour":
        heard = next((memory for memory in context.memories if memory.news_id and memory.words), None)
        news = next((value for key, value in sorted(context.world.items()) if key.endswith(".latest_news")), None)
        if heard is not None:  # gossip another NPC told this one, as it was told
            text = f"{heard.text} {(heard.words or '')[:160]}"
        else:
            text = f"They say {news}." if news else f"Word is {rng.choice(_RUMOURS)}."
        emotion = "think"
    elif intent == "quest":
        goal = profile.goals[0] if profile.goals else "keep this town in one piece"
        text = f"I am trying to {goal}. If you could help, I'd not forget it."
        emotion = "aha"
    elif intent == "identity":
        text = f"I am {profile.name}. {profile.personality.description}"
        emotion = "smile"
    else:
        text, emotion = _chat_line(context, past, score, rng)
    if past and intent in {"greeting", "chat"}:
        text = f'{text} Last time you told me: "{_quote(past[0])}".'
    if score <= -30 and intent != "insult":
        text, emotion, change = f"I have nothing to say to you, {player.name}.", "no", 0
    options = ["Any rumours?", "What do you do?", "Goodbye"]
    if profile.shop:
        options.insert(0, "What do you sell?")
    return DialogueDraft(
        text=_voice(profile, text, rng), emotion=emotion, options=options[:4], relationship_change=change
    )


def _chat_line(context: DialogueContext, past: list[Memory], score: int, rng: random.Random) -> tuple[str, str]:
    name = context.turn.player.name
    if past or score >= 10:
        return rng.choice([f"Ah, {name}, my friend!", f"{name}! Good to see you again."]), "delight"
    if context.turn.player.level < 10:
        return f"New around here, {name}? Mind the porings outside the gate.", "smile"
    return rng.choice([f"Well met, {name}.", f"Greetings, {name}. What brings you here?"]), "smile"


def _quote(memory: Memory) -> str:
    said = memory.words if memory.words is not None else memory.text
    return said[:60].rstrip() + ("…" if len(said) > 60 else "")


_RUMOURS = [
    "the Orc Lord stirs in the forests west of Geffen",
    "a merchant saw a golden poring near the south gate",
    "the court argues about the price of grain",
    "someone is stealing jellopies from the Kafra storage",
    "ships from Alberta are late this week",
]


class OfflineDecisionMaker:
    """The policy behind the decision-maker interface the NPC activities call."""

    async def decide(self, context: NpcContext) -> DecisionResult:
        return DecisionResult(decision=decide(context), usage=DecisionUsage(provider="offline"))

    async def converse(self, context: DialogueContext) -> tuple[DialogueDraft, DecisionUsage]:
        return reply(context), DecisionUsage(provider="offline", tier="dialogue")

    async def reflect(self, profile: NpcProfile, evidence: list[Memory]) -> tuple[list[Insight], DecisionUsage]:
        return reflection.summarize(profile, evidence), DecisionUsage(provider="offline", tier="reflection")

    def decides_locally(self, tier: str) -> bool:
        return True

    async def aclose(self) -> None:
        """Nothing to release: no connections."""
