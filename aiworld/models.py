"""Domain models shared by the workflows, activities, API, bridge and LLM layer.

Everything that crosses a process boundary is one of these pydantic models, so that untrusted input
(API bodies, game rows, LLM output) is validated once, at the edge, with field-precise messages.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NPC_ID_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,80}$"
MAP_NAME_PATTERN = r"^[a-z0-9_@-]{1,15}$"  # rAthena map names: at most 15 characters (MAP_NAME_LENGTH-1)
# RO map cells are addressed with 9 bits on the client side: no map is larger than 512x512.
MAX_MAP_COORDINATE = 511

MAX_PLAYER_TEXT_CHARS = 200  # the game client cuts `input` at 70 bytes; other clients get more room
MAX_NPC_SPEECH_CHARS = 120  # one npctalk/unittalk line that stays readable above the NPC's head
MAX_ANNOUNCE_CHARS = 120
MAX_REPLY_CHARS = 480  # shown as several short `mes` lines

# Emotion names an NPC may use, mapped to rAthena's ET_* constants (db/const.yml).
EMOTIONS: dict[str, int] = {
    "surprise": 0,
    "question": 1,
    "delight": 2,
    "love": 3,
    "sweat": 4,
    "aha": 5,
    "fret": 6,
    "anger": 7,
    "money": 8,
    "think": 9,
    "thanks": 15,
    "sorry": 17,
    "smile": 18,
    "best": 21,
    "no": 22,
    "help": 26,
    "go": 27,
    "cry": 28,
    "ok": 33,
}
Emotion = Literal[
    "surprise",
    "question",
    "delight",
    "love",
    "sweat",
    "aha",
    "fret",
    "anger",
    "money",
    "think",
    "thanks",
    "sorry",
    "smile",
    "best",
    "no",
    "help",
    "go",
    "cry",
    "ok",
]

_CONTROL_OR_MARKUP = re.compile(r"[\x00-\x1f\x7f-\x9f^\\]")
# The client renders tags such as <URL>…<INFO>…</INFO></URL>, <NAVI>…</NAVI>, <ITEM>, <ITEMLINK>
# and <BODY> in mes, npctalk, announces and chat as links. Listing tags would miss the next client
# version's: no angle bracket reaches the game at all.
_CLIENT_TAG_BRACKETS = str.maketrans({"<": "(", ">": ")"})


def clean_game_text(text: str) -> str:
    """Text as rAthena may show it: NFC, single-spaced, no control characters, no `^` colour codes,
    no backslashes (both have meaning inside script strings and `mes`) and no client tags (`<` and
    `>` become parentheses)."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL_OR_MARKUP.sub(" ", text).translate(_CLIENT_TAG_BRACKETS)
    return " ".join(text.split())


def describe_invalid(error: ValidationError) -> str:
    """A pydantic error as one line per field, e.g. `text: String should have at most 200 characters`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}" for problem in error.errors()
    )


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- NPCs -----------------------------------------------------------------------------------------


class Personality(StrictModel):
    description: str = Field(min_length=1, max_length=400)
    traits: list[str] = Field(default_factory=list, max_length=8)
    speech_style: str = Field(default="plain", max_length=40)
    catchphrases: list[Annotated[str, Field(max_length=80)]] = Field(default_factory=list, max_length=6)
    # 0..1 dispositions the offline policy turns into behaviour.
    sociability: float = Field(default=0.5, ge=0, le=1)
    curiosity: float = Field(default=0.5, ge=0, le=1)
    greed: float = Field(default=0.5, ge=0, le=1)
    bravery: float = Field(default=0.5, ge=0, le=1)
    temper: float = Field(default=0.3, ge=0, le=1)


class Area(StrictModel):
    """The rectangle of its map an NPC may walk in; every coordinate it is given must lie inside."""

    x1: int = Field(ge=0, le=MAX_MAP_COORDINATE)
    y1: int = Field(ge=0, le=MAX_MAP_COORDINATE)
    x2: int = Field(ge=0, le=MAX_MAP_COORDINATE)
    y2: int = Field(ge=0, le=MAX_MAP_COORDINATE)

    @model_validator(mode="after")
    def _ordered(self) -> Area:
        if self.x1 > self.x2 or self.y1 > self.y2:
            raise ValueError("area needs x1 <= x2 and y1 <= y2")
        return self

    def contains(self, x: int, y: int) -> bool:
        return self.x1 <= x <= self.x2 and self.y1 <= y <= self.y2


class ShopItem(StrictModel):
    item_id: int = Field(ge=501, le=2_000_000)
    base_price: int = Field(ge=1, le=10_000_000)


class NpcProfile(StrictModel):
    """Who an NPC is. Registered once; `configure` may change importance and personality later."""

    npc_id: str = Field(pattern=NPC_ID_PATTERN)
    name: str = Field(min_length=1, max_length=23)  # NPC_NAME_LENGTH 24 with the terminator
    sprite: int = Field(ge=1, le=32_767)
    map: str = Field(pattern=MAP_NAME_PATTERN)
    x: int = Field(ge=0, le=MAX_MAP_COORDINATE)
    y: int = Field(ge=0, le=MAX_MAP_COORDINATE)
    area: Area | None = None
    role: str = Field(default="townsfolk", max_length=40)
    faction: str = Field(default="none", pattern=r"^[a-z0-9_]{1,32}$")
    # 0..100: how much what happens to the faction colours the NPC's memories and moods.
    faction_loyalty: int = Field(default=50, ge=0, le=100)
    personality: Personality
    wealth: int = Field(default=1000, ge=0, le=2_000_000_000)
    goals: list[Annotated[str, Field(max_length=120)]] = Field(default_factory=list, max_length=5)
    importance: int = Field(default=5, ge=1, le=10)
    shop: list[ShopItem] = Field(default_factory=list, max_length=30)
    # Waypoints of a daily routine, walked in order when nothing significant happens.
    routine: list[tuple[int, int]] = Field(default_factory=list, max_length=12)

    @model_validator(mode="after")
    def _default_area(self) -> NpcProfile:
        if self.area is None:
            r = 8
            self.area = Area(
                x1=max(0, self.x - r),
                y1=max(0, self.y - r),
                x2=min(MAX_MAP_COORDINATE, self.x + r),
                y2=min(MAX_MAP_COORDINATE, self.y + r),
            )
        if not self.area.contains(self.x, self.y):
            raise ValueError(f"spawn point ({self.x},{self.y}) lies outside the NPC's area")
        for wx, wy in self.routine:
            if not self.area.contains(wx, wy):
                raise ValueError(f"routine waypoint ({wx},{wy}) lies outside the NPC's area")
        return self


class NpcConfiguration(StrictModel):
    """Body of the `configure` signal: what an operator may change on a living NPC."""

    importance: int | None = Field(default=None, ge=1, le=10)
    personality: Personality | None = None
    goals: list[Annotated[str, Field(max_length=120)]] | None = Field(default=None, max_length=5)


# --- Game events ----------------------------------------------------------------------------------


class PlayerRef(StrictModel):
    char_id: int = Field(ge=1, le=2_147_483_647)
    name: str = Field(min_length=1, max_length=23)
    level: int = Field(default=1, ge=1, le=999)
    job_class: int = Field(default=0, ge=0, le=5_000)
    map: str | None = Field(default=None, pattern=MAP_NAME_PATTERN)
    x: int | None = Field(default=None, ge=0, le=MAX_MAP_COORDINATE)
    y: int | None = Field(default=None, ge=0, le=MAX_MAP_COORDINATE)


class GameEventKind(StrEnum):
    PLAYER_NEARBY = "player_nearby"
    PLAYER_LEFT = "player_left"
    PLAYER_ATTACKED = "player_attacked"
    PLAYER_KILLED_MONSTER = "player_killed_monster"
    ITEM_RECEIVED = "item_received"
    NPC_SPOKE = "npc_spoke"
    WORLD_EVENT = "world_event"
    ACTION_RESULT = "action_result"


_NEEDS_PLAYER = {
    GameEventKind.PLAYER_NEARBY,
    GameEventKind.PLAYER_LEFT,
    GameEventKind.PLAYER_ATTACKED,
    GameEventKind.PLAYER_KILLED_MONSTER,
    GameEventKind.ITEM_RECEIVED,
}


class GameEvent(StrictModel):
    """Something that happened in the game or the world, delivered to one NPC as a signal.

    `event_id` is chosen by the sender and makes delivery idempotent: the NPC ignores an id it has
    already processed, so a retried POST or a replayed bridge row never counts twice.
    """

    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    kind: GameEventKind
    occurred_at: datetime | None = None
    player: PlayerRef | None = None
    other_npc_id: str | None = Field(default=None, pattern=NPC_ID_PATTERN)
    text: str | None = Field(default=None, max_length=MAX_PLAYER_TEXT_CHARS)
    item_id: int | None = Field(default=None, ge=1, le=2_000_000)
    amount: int | None = Field(default=None, ge=1, le=30_000)
    action_id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)
    outcome: Literal["done", "failed"] | None = None
    detail: str | None = Field(default=None, max_length=200)
    # World events carry how much they matter (1..10); game events derive it from their kind.
    importance: int = Field(default=5, ge=1, le=10)
    # World events' structured facts (aiworld.world.news.WorldNews.facts), for the offline policy.
    facts: dict[str, str | int | float] | None = Field(default=None, max_length=16)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> GameEvent:
        if self.kind in _NEEDS_PLAYER and self.player is None:
            raise ValueError(f"a {self.kind.value} event needs `player`")
        if self.kind is GameEventKind.ITEM_RECEIVED and (self.item_id is None or self.amount is None):
            raise ValueError("an item_received event needs `item_id` and `amount`")
        if self.kind is GameEventKind.NPC_SPOKE and (self.other_npc_id is None or not self.text):
            raise ValueError("an npc_spoke event needs `other_npc_id` and `text`")
        if self.kind is GameEventKind.WORLD_EVENT and not self.text:
            raise ValueError("a world_event needs `text`")
        if self.kind is GameEventKind.ACTION_RESULT and (self.action_id is None or self.outcome is None):
            raise ValueError("an action_result event needs `action_id` and `outcome`")
        return self


# --- Actions and decisions (DESIGN.md §6) ---------------------------------------------------------


class SayAction(StrictModel):
    kind: Literal["say"] = "say"
    text: str = Field(min_length=1, max_length=MAX_NPC_SPEECH_CHARS * 4)
    # Say to one player only (unittalk to their char) instead of everyone around.
    to_char_id: int | None = Field(default=None, ge=1)


class EmoteAction(StrictModel):
    kind: Literal["emote"] = "emote"
    emotion: Emotion


class WalkToAction(StrictModel):
    kind: Literal["walk_to"] = "walk_to"
    x: int
    y: int


class MoveAction(StrictModel):
    """Instant relocation on the NPC's own map (movenpc), e.g. after a reset of its post."""

    kind: Literal["move"] = "move"
    x: int
    y: int


class TradeAction(StrictModel):
    """A price change in the NPC's shop (npcshopupdate); there is no NPC-player trade window."""

    kind: Literal["trade"] = "trade"
    item_id: int
    price: int


class GiveItemAction(StrictModel):
    kind: Literal["give_item"] = "give_item"
    char_id: int = Field(ge=1)
    item_id: int
    amount: int = 1


class GiveZenyAction(StrictModel):
    kind: Literal["give_zeny"] = "give_zeny"
    char_id: int = Field(ge=1)
    amount: int


class StartQuestAction(StrictModel):
    kind: Literal["start_quest"] = "start_quest"
    char_id: int = Field(ge=1)
    quest_id: int = Field(ge=1)


class AnnounceAction(StrictModel):
    kind: Literal["announce"] = "announce"
    text: str = Field(min_length=1, max_length=MAX_ANNOUNCE_CHARS * 4)
    scope: Literal["map", "server"] = "map"


class SpawnMonsterAction(StrictModel):
    kind: Literal["spawn_monster"] = "spawn_monster"
    mob_id: int
    amount: int = 1
    x: int
    y: int


# rAthena's weather map flags (mf_snow …, src/map/script_constants.hpp); rain has none any more
# (mf_rain was removed from the source). "clear" removes them all.
MAP_WEATHERS = ("clear", "snow", "fog", "sakura", "leaves", "clouds", "clouds2", "fireworks")


class WeatherAction(StrictModel):
    """Weather over the NPC's map, with `setmapflag`/`removemapflag`: one weather at a time.
    Free text, checked by the game rules, so that a model's "rain" is a refusal with a reason
    rather than a decision that cannot be read at all."""

    kind: Literal["weather"] = "weather"
    weather: str = Field(min_length=1, max_length=20)


class IdleAction(StrictModel):
    kind: Literal["idle"] = "idle"


Action = Annotated[
    SayAction
    | EmoteAction
    | WalkToAction
    | MoveAction
    | TradeAction
    | GiveItemAction
    | GiveZenyAction
    | StartQuestAction
    | AnnounceAction
    | SpawnMonsterAction
    | WeatherAction
    | IdleAction,
    Field(discriminator="kind"),
]
ACTION_KINDS = frozenset(
    model.model_fields["kind"].default
    for model in (
        SayAction,
        EmoteAction,
        WalkToAction,
        MoveAction,
        TradeAction,
        GiveItemAction,
        GiveZenyAction,
        StartQuestAction,
        AnnounceAction,
        SpawnMonsterAction,
        WeatherAction,
        IdleAction,
    )
)


class Decision(StrictModel):
    """What an NPC decided in one cycle: up to three actions and why. Produced by the LLM layer or
    the offline policy; validated in workflow code against the game rules before anything runs."""

    actions: list[Action] = Field(default_factory=list, max_length=3)
    mood: str = Field(default="calm", pattern=r"^[a-z_]{1,20}$")
    activity: str = Field(default="idling", max_length=40)
    reason: str = Field(default="", max_length=300)


class DecisionUsage(BaseModel):
    """Accounting attached to each decision so an operator can see what it cost and who made it."""

    provider: str = "offline"
    model: str | None = None
    tier: str = "routine"
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cached: bool = False
    fallbacks: list[str] = Field(default_factory=list)
    # How many NPCs shared the call that made this decision (batching).
    batch_size: int = 1
    # What the call cost at the provider's configured prices (this NPC's share of a batched call).
    cost: float = 0.0
    # The budget governor's rung that decided it ("normal" … "hard_cap", aiworld.llm.governor),
    # and how much longer the NPC should wait between routine steps while that rung holds.
    budget_rung: str = "normal"
    cadence_stretch: float = Field(default=1.0, ge=1, le=100)


class DecisionResult(BaseModel):
    decision: Decision
    usage: DecisionUsage = Field(default_factory=DecisionUsage)


class DialogueReplyAction(StrictModel):
    """A player's answer, queued by the `talk` update as well as returned by it: when the API's wait
    ran out (504), the reply still reaches the game through the queue. Keyed by the turn, so the
    bridge writes one dialogue row whichever path arrives first. Never produced by a Decision."""

    kind: Literal["reply"] = "reply"
    turn_id: str = Field(pattern=EVENT_ID_PATTERN)
    char_id: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=MAX_REPLY_CHARS)
    emotion: Emotion = "smile"
    options: list[str] = Field(default_factory=list, max_length=4)


QueueableAction = Annotated[Action | DialogueReplyAction, Field(discriminator="kind")]


class QueuedAction(BaseModel):
    """An action waiting for the game. `action_id` is `{npc_id}-{decision sequence}-{index}`, so a
    re-run activity (retry, reset) produces the same id and the queue keeps one copy."""

    action_id: str = Field(pattern=EVENT_ID_PATTERN)
    npc_id: str = Field(pattern=NPC_ID_PATTERN)
    sequence: int = Field(ge=0)
    action: QueueableAction
    map: str
    npc_name: str
    reason: str = ""
    created_at: datetime


# --- Dialogue -------------------------------------------------------------------------------------


class TalkTurn(StrictModel):
    """One line a player says to an NPC (the `talk` update)."""

    turn_id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)
    player: PlayerRef
    text: str = Field(max_length=MAX_PLAYER_TEXT_CHARS)

    @field_validator("text")
    @classmethod
    def _has_words(cls, value: str) -> str:
        cleaned = clean_game_text(value)
        if not cleaned:
            raise ValueError("text must contain at least one visible character")
        return cleaned


class TalkReply(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_REPLY_CHARS)
    emotion: Emotion = "smile"
    options: list[Annotated[str, Field(min_length=1, max_length=30)]] = Field(default_factory=list, max_length=4)
    relationship_change: int = Field(default=0, ge=-10, le=10)
    relationship: int = Field(default=0, ge=-100, le=100)
    decided_by: str = "offline"


class DialogueDraft(StrictModel):
    """What the LLM layer or the offline policy proposes as a reply, before clamping."""

    text: str = Field(min_length=1, max_length=MAX_REPLY_CHARS * 2)
    emotion: Emotion = "smile"
    options: list[str] = Field(default_factory=list, max_length=6)
    relationship_change: int = Field(default=0, ge=-100, le=100)


# --- What a decision is made from -----------------------------------------------------------------


# How memories stored before `Memory.words` existed carry what was said: inside the narration.
_WORDS_IN_NARRATION = re.compile(r"^(.{1,40}? said:|I told .{1,23}?:|I chose to [a-z_, ]{1,80}? because) (.+)$", re.S)


# Episodes (observation, conversation, action, rejected, gossip) are what the NPC lived or heard;
# `semantic` a standing fact, `reflection` an insight drawn from episodes, `summary` a day of
# older episodes consolidated into one memory (aiworld.memory.consolidation).
MemoryKind = Literal["observation", "conversation", "action", "reflection", "rejected", "semantic", "summary", "gossip"]


class Memory(BaseModel):
    memory_id: str
    kind: MemoryKind = "observation"
    # The NPC's own narration ("Aria said:"): names at most, never the words someone said.
    text: str = Field(max_length=600)
    # What was said, verbatim and apart from the narration: prompts show it JSON-quoted as data,
    # because a player's line may be an instruction aimed at the model, and so may an echo of it.
    words: str | None = Field(default=None, max_length=MAX_REPLY_CHARS)
    importance: int = Field(default=3, ge=1, le=10)
    emotion: str = "neutral"
    # Who the memory is about: "player:{char_id}" or "npc:{npc_id}"; None for the world.
    about: str | None = None
    created_at: datetime
    # Emotional valence, -1 (painful) .. 1 (joyful): with importance, what makes a memory salient.
    valence: float = Field(default=0.0, ge=-1, le=1)
    # Everyone the memory involves ("player:1", "npc:x", "faction:y") and where it happened.
    participants: list[str] = Field(default_factory=list, max_length=12)
    place: str | None = Field(default=None, max_length=40)
    # The memory ids a reflection or a summary was drawn from.
    evidence: list[str] = Field(default_factory=list, max_length=60)
    # News passed on by word of mouth: which piece of news, and how many retellings from its source.
    news_id: str | None = Field(default=None, max_length=80)
    retellings: int = Field(default=0, ge=0, le=100)
    # The structured facts of the world news this memory was made from (GameEvent.facts): what
    # the NPC believes of the world, checked against world state by the coherence monitor.
    facts: dict[str, str | int | float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _words_apart(cls, data: Any) -> Any:
        """A memory of an older version, read back from the store, gets its words taken out of the
        narration: they would otherwise reach every later prompt as the NPC's own thoughts."""
        if isinstance(data, dict) and data.get("words") is None and isinstance(data.get("text"), str):
            if found := _WORDS_IN_NARRATION.match(data["text"]):
                narration = found[1] if found[1].endswith(":") else f"{found[1]}:"
                return {**data, "text": narration, "words": found[2][:MAX_REPLY_CHARS]}
        return data


class NpcContext(BaseModel):
    """Everything a decision or a reply is made from; loaded by an activity, never by the workflow."""

    profile: NpcProfile
    now: datetime
    mood: str = "calm"
    activity: str = "idling"
    events: list[GameEvent] = Field(default_factory=list)
    players_near: list[PlayerRef] = Field(default_factory=list)
    memories: list[Memory] = Field(default_factory=list)
    # Score -100..100 per party key ("player:150001", "npc:kafra_prontera").
    relationships: dict[str, int] = Field(default_factory=dict)
    world: dict[str, str] = Field(default_factory=dict)
    recent_actions: list[str] = Field(default_factory=list)
    sequence: int = 0
    # Why memories, relationships and world are missing (the state store failed), or None.
    degraded: str | None = None

    @property
    def part_of_day(self) -> str:
        """The time as decisions need it: finer would only make every prompt unique."""
        hour = self.now.hour
        if 5 <= hour < 12:
            return "morning"
        if 12 <= hour < 18:
            return "afternoon"
        if 18 <= hour < 22:
            return "evening"
        return "night"


class DialogueContext(NpcContext):
    turn: TalkTurn


# --- What the NPC workflow shows (queries) --------------------------------------------------------


class DecisionRecord(BaseModel):
    """One decision as the operator sees it: what was decided, from what, and what became of it."""

    sequence: int
    decided_at: datetime
    trigger: str  # "timer", "events", "routine", "talk"
    event_ids: list[str] = Field(default_factory=list)
    decision: Decision
    usage: DecisionUsage = Field(default_factory=DecisionUsage)
    queued_action_ids: list[str] = Field(default_factory=list)
    rejections: list[str] = Field(default_factory=list)
    # The memories the decision was made from (ids, best first).
    memory_ids: list[str] = Field(default_factory=list)


class NpcStateView(BaseModel):
    """The `state` query: an NPC's situation now."""

    npc_id: str
    name: str
    map: str
    x: int
    y: int
    faction: str
    importance: int
    mood: str
    activity: str
    activity_reason: str
    players_near: list[PlayerRef]
    decision_sequence: int
    events_processed: int
    pending_events: int
    rejected_decisions: int
    # Decisions on events made by an LLM, and by the offline policy; routine steps (no decision
    # maker); decisions and replies made without an activity that failed for good.
    llm_decisions: int
    policy_decisions: int = 0
    routine_decisions: int
    # How much longer than usual the NPC waits between routine steps because its routine wakes
    # came late (the worker or the server runs behind); 1 when they come on time.
    load_stretch: float = 1.0
    fallbacks: int = 0
    # Writes waiting for the state store to answer again (0 when it is healthy).
    unsaved_writes: int = 0
    retired: bool
    sleeping: bool
    # Which run of the NPC's life this is: continue-as-new starts the next one.
    runs: int
    # Reflections the NPC wrote in this life (aiworld.memory.reflection), and the importance of
    # what it lived since the last one (it reflects again at the threshold).
    reflections: int = 0
    importance_since_reflection: int = 0
