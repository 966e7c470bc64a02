"""The offline policy makes a world feel alive without any network: by name, in character, with memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiworld.models import DialogueContext, GameEvent, Memory, NpcContext, PlayerRef, TalkTurn
from aiworld.npc import offline_policy
from aiworld.npc.rules import validate_decision
from tests.conftest import demo_profile

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ARIA = PlayerRef(char_id=150001, name="Aria", level=34)


def test_decisions_are_deterministic_and_pass_the_rules():
    for npc in ("lina_baker", "gareth_guard", "pip_urchin", "hunter_kai"):
        profile = demo_profile(npc)
        for sequence in range(30):
            context = NpcContext(profile=profile, now=NOON + timedelta(hours=sequence), sequence=sequence)
            first, second = offline_policy.decide(context), offline_policy.decide(context)
            assert first == second
            verdict = validate_decision(first, profile)
            assert verdict.rejections == [], (npc, sequence, verdict.rejections)


def test_a_known_player_is_greeted_by_name():
    profile = demo_profile("lina_baker")  # sociable: greets everyone
    event = GameEvent(event_id="e1", kind="player_nearby", player=ARIA)
    memory = Memory(
        memory_id="m1", kind="conversation", text="Aria said: hello", about="player:150001", created_at=NOON
    )
    decision = offline_policy.decide(
        NpcContext(profile=profile, now=NOON, events=[event], memories=[memory], sequence=4)
    )
    said = [action.text for action in decision.actions if action.kind == "say"]
    assert said and "Welcome back, Aria" in said[0]


def test_brave_and_timid_npcs_react_differently_to_an_attack():
    event = GameEvent(event_id="e2", kind="player_attacked", player=ARIA)
    guard = offline_policy.decide(NpcContext(profile=demo_profile("gareth_guard"), now=NOON, events=[event]))
    urchin = offline_policy.decide(NpcContext(profile=demo_profile("pip_urchin"), now=NOON, events=[event]))
    assert guard.mood == "angry" and urchin.mood == "afraid"
    assert any(action.kind == "walk_to" for action in urchin.actions)


def test_world_news_is_commented_in_character():
    event = GameEvent(event_id="e3", kind="world_event", text="Orcs were seen near Geffen", importance=8)
    decision = offline_policy.decide(NpcContext(profile=demo_profile("captain_hale"), now=NOON, events=[event]))
    texts = " ".join(getattr(action, "text", "") for action in decision.actions)
    assert "Orcs were seen near Geffen" in texts
    announcements = [action.text for action in decision.actions if action.kind == "announce"]
    assert announcements  # important enough to warn the map
    # The game puts "Captain Hale: " in front (rathena/…/ai_world.txt); a second one would read twice.
    assert not any(text.startswith("Captain Hale") for text in announcements), announcements


def test_replies_use_names_personality_relationship_and_memories():
    profile = demo_profile("bram_blacksmith")
    turn = TalkTurn(player=ARIA, text="What do you sell?")
    reply = offline_policy.reply(DialogueContext(profile=profile, now=NOON, turn=turn))
    assert "zeny" in reply.text and "Aria" in reply.text

    past = Memory(
        memory_id="m",
        kind="conversation",
        text="Aria said:",
        words="I seek iron ore",
        about="player:150001",
        created_at=NOON,
    )
    hello = offline_policy.reply(
        DialogueContext(profile=profile, now=NOON, turn=TalkTurn(player=ARIA, text="hello"), memories=[past])
    )
    assert "I seek iron ore" in hello.text
    # A memory stored before words were kept apart still gives them back.
    legacy = past.model_copy(update={"text": "Aria said: I seek silver", "words": None})
    hello = offline_policy.reply(
        DialogueContext(profile=profile, now=NOON, turn=TalkTurn(player=ARIA, text="hello"), memories=[legacy])
    )
    assert "I seek silver" in hello.text

    hostile = offline_policy.reply(
        DialogueContext(
            profile=profile, now=NOON, turn=TalkTurn(player=ARIA, text="hello"), relationships={"player:150001": -60}
        )
    )
    assert "nothing to say" in hostile.text

    insult = offline_policy.reply(
        DialogueContext(profile=profile, now=NOON, turn=TalkTurn(player=ARIA, text="you are stupid"))
    )
    assert insult.relationship_change < 0 and insult.emotion == "anger"


def test_npcs_rest_at_night_unless_very_sociable():
    night = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    decision = offline_policy.decide(NpcContext(profile=demo_profile("gareth_guard"), now=night))
    assert decision.activity == "resting" and decision.actions == []


def news_event(**facts) -> GameEvent:
    return GameEvent(event_id="n1:x", kind="world_event", text="Market news", importance=6, facts=facts)


def test_a_merchant_tells_of_a_price_rise_and_why_and_reprices_it():
    lina = demo_profile("lina_baker")  # sells 519 (Milk) at 40
    shortage = news_event(item_id=519, item_name="Milk", price_change_pct=25, cause="wolves scattered the herds")
    decision = offline_policy.decide(NpcContext(profile=lina, now=NOON, events=[shortage], sequence=3))
    said = next(action.text for action in decision.actions if action.kind == "say")
    assert "Milk is up 25%, because wolves scattered the herds" in said
    trade = next(action for action in decision.actions if action.kind == "trade")
    assert (trade.item_id, trade.price) == (519, 50)
    assert decision.reason == "Milk went up 25% because wolves scattered the herds"
    assert validate_decision(decision, lina).rejections == []
    # Someone with nothing to sell just remarks on the news.
    tomas = offline_policy.decide(NpcContext(profile=demo_profile("old_tomas"), now=NOON, events=[shortage]))
    assert tomas.activity == "discussing news"


def test_a_guard_of_a_faction_at_war_is_wary_of_the_enemy():
    gareth = demo_profile("gareth_guard")  # prontera_guard
    war = news_event(faction="orc_clans", other_faction="prontera_guard", stance="war", cause="burned the mill")
    decision = offline_policy.decide(NpcContext(profile=gareth, now=NOON, events=[war], sequence=1))
    said = next(action.text for action in decision.actions if action.kind == "say")
    assert "at war with the orc clans" in said and "burned the mill" in said
    assert (decision.mood, decision.activity) == ("wary", "standing watch")
    peace = news_event(faction="prontera_guard", other_faction="orc_clans", stance="peace")
    assert offline_policy.decide(NpcContext(profile=gareth, now=NOON, events=[peace])).mood == "relieved"
    # A war between others is only news.
    lina = offline_policy.decide(NpcContext(profile=demo_profile("lina_baker"), now=NOON, events=[war]))
    assert lina.mood != "wary"
