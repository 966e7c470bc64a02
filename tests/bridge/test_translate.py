"""Rows from the game become validated messages; actions become rows rAthena can take."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from aiworld.models import DialogueReplyAction, QueuedAction
from bridge import translate

NOW = datetime(2026, 11, 25, tzinfo=UTC)
ROW = {
    "id": 42,
    "npc_id": "lina_baker",
    "kind": "touch",
    "char_id": 150001,
    "account_id": 2000001,
    "char_name": "Aria",
    "base_level": 34,
    "class": 4,
    "map": "prontera",
    "x": 146,
    "y": 180,
    "text": None,
    "item_id": None,
    "amount": None,
    "detail": None,
}


def queued(action: dict) -> QueuedAction:
    return QueuedAction(
        action_id="lina_baker-3-0",
        npc_id="lina_baker",
        sequence=3,
        action=action,
        map="prontera",
        npc_name="Lina the Baker",
        created_at=NOW,
    )


def test_game_text_is_cleaned_and_cut_on_a_character_boundary():
    assert translate.game_text("^FF0000Hi\\n\x00there", 255) == "FF0000Hi n there"
    cut = translate.game_text("é" * 200, 255)
    assert len(cut.encode()) <= 255 and cut == "é" * 127
    assert translate.game_text("Gruß ☃", 50, charset="cp1252") == "Gruß ?"


def test_rows_become_events_with_stable_ids():
    event = translate.game_event_of(ROW)
    assert (event.event_id, event.kind.value, event.player.name) == ("ev-42", "player_nearby", "Aria")
    kill = translate.game_event_of({**ROW, "kind": "kill", "npc_id": None, "detail": "1002"})
    assert kill.event_id == "ev-42" and kill.detail == "monster 1002"
    assert translate.scope_near({**ROW, "kind": "kill"}, 14) == {
        "kind": "near",
        "map": "prontera",
        "x": 146,
        "y": 180,
        "radius": 14,
    }
    with pytest.raises(translate.RejectedRow, match="needs map, x and y"):
        translate.scope_near({**ROW, "kind": "kill", "map": None}, 14)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kind": "dance"}, "unknown event kind"),
        ({"char_name": ""}, "name"),
        ({"x": 9999}, "x"),
        ({"char_id": None}, "char_id"),
    ],
)
def test_malformed_rows_are_rejected_with_the_reason(change, reason):
    with pytest.raises(translate.RejectedRow, match=reason):
        translate.game_event_of({**ROW, **change})


def test_talk_rows_and_registrations():
    turn = translate.talk_turn_of({**ROW, "kind": "talk", "text": "  Hello  there "})
    assert (turn.turn_id, turn.text) == ("ev-42", "Hello there")
    with pytest.raises(translate.RejectedRow, match="text"):
        translate.talk_turn_of({**ROW, "kind": "talk", "text": "   "})
    registration = translate.registration_of({**ROW, "kind": "register", "detail": "Lina the Baker#lina_baker|90"})
    assert (registration.unique_name, registration.name, registration.sprite) == (
        "Lina the Baker#lina_baker",
        "Lina the Baker",
        90,
    )
    with pytest.raises(translate.RejectedRow):
        translate.registration_of({**ROW, "kind": "register", "detail": "garbage"})
    with pytest.raises(translate.RejectedRow, match="unwalkable cell '160;200'"):
        translate.registration_of(
            {**ROW, "kind": "register", "detail": "Lina the Baker#lina_baker|90", "text": "160;200"}
        )


def test_actions_become_rows():
    say = translate.action_row_of(queued({"kind": "say", "text": "Fresh ^bread^!"}), "Lina the Baker#lina_baker")
    assert (say["kind"], say["text"], say["npc_name"]) == ("say", "Fresh bread !", "Lina the Baker#lina_baker")
    emote = translate.action_row_of(queued({"kind": "emote", "emotion": "smile"}), "u")
    assert emote["value"] == 18
    trade = translate.action_row_of(queued({"kind": "trade", "item_id": 519, "price": 44}), "u")
    assert (trade["item_id"], trade["value"]) == (519, 44)
    spawn = translate.action_row_of(
        queued({"kind": "spawn_monster", "mob_id": 1002, "amount": 2, "x": 150, "y": 180}), "u"
    )
    assert (spawn["value"], spawn["amount"], spawn["x"]) == (1002, 2, 150)
    announce = translate.action_row_of(queued({"kind": "announce", "text": "Hear!", "scope": "server"}), "u")
    assert announce["value"] == 1
    weather = translate.action_row_of(queued({"kind": "weather", "weather": "sakura"}), "u")
    assert (weather["kind"], weather["text"], weather["map"]) == ("weather", "sakura", "prontera")


def test_replies_become_dialogue_rows_for_game_turns_only():
    reply = DialogueReplyAction(
        turn_id="ev-42", char_id=150001, text="Hello: Aria", emotion="smile", options=["Buy: now", "Bye"]
    )
    row = translate.dialogue_row_of(reply, "lina_baker")
    assert (row["event_id"], row["emotion"], row["options"]) == (42, 18, "Buy now:Bye")
    assert translate.dialogue_row_of(reply.model_copy(update={"turn_id": "demo-1"}), "lina_baker") is None


def test_map_names_become_world_state_keys_the_api_takes():
    assert translate.population_key("prontera") == "population_prontera"
    assert translate.population_key("new_1-1") == "population_new_1_1"  # a new pre-renewal character's map
    assert translate.population_key("1@tower") == translate.population_key("23@tower") == "population_instance_tower"
    assert translate.population_key("") is None and translate.population_key("  ") is None
    counts = translate.populations(["1@tower", "2@tower", "new_1-1", "", "PRONTERA"])
    assert counts == {"population_instance_tower": 2, "population_new_1_1": 1, "population_prontera": 1}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]{0,39}", key) for key in counts)
