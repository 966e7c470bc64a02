"""Game rules: untrusted decisions are accepted, clamped or rejected, never passed through blindly."""

from __future__ import annotations

from aiworld.models import Decision
from aiworld.npc.rules import validate_decision
from tests.conftest import demo_profile

LINA = demo_profile("lina_baker")  # area (138,174)-(156,190), shop 519/520/535, importance 7


ARIA_NEAR = {150001}


def verdict_of(*actions: dict):
    return validate_decision(Decision.model_validate({"actions": list(actions)}), LINA, involved=ARIA_NEAR)


def test_a_million_zeny_gift_is_rejected():
    verdict = verdict_of({"kind": "give_zeny", "char_id": 150001, "amount": 1_000_000})
    assert verdict.accepted == []
    assert "1000000 zeny is outside 1..500" in verdict.rejections[0]


def test_gifts_zeny_and_quests_go_only_to_players_involved():
    gifts = [
        {"kind": "give_item", "char_id": 150999, "item_id": 501, "amount": 1},
        {"kind": "give_zeny", "char_id": 150999, "amount": 10},
        {"kind": "start_quest", "char_id": 150999, "quest_id": 7000},
        {"kind": "give_item", "char_id": 150001, "item_id": 501, "amount": 1},
    ]
    absent = verdict_of(*gifts[:3])
    assert absent.accepted == []
    assert absent.rejections == [
        f"{kind}: char 150999 is not involved (in none of the events and not near {LINA.name})"
        for kind in ("give_item", "give_zeny", "start_quest")
    ]
    assert [(a.kind, a.char_id) for a in verdict_of(gifts[3]).accepted] == [("give_item", 150001)]
    nobody = validate_decision(Decision.model_validate({"actions": gifts[-1:]}), LINA)
    assert nobody.accepted == [] and "char 150001 is not involved" in nobody.rejections[0]


def test_walking_off_the_area_is_rejected_and_inside_is_accepted():
    verdict = verdict_of({"kind": "walk_to", "x": 300, "y": 300}, {"kind": "walk_to", "x": 150, "y": 180})
    assert [(a.x, a.y) for a in verdict.accepted] == [(150, 180)]
    assert "(300,300) is outside" in verdict.rejections[0]


def test_speech_is_cleaned_and_shortened():
    verdict = verdict_of({"kind": "say", "text": "^FF0000Buy\\nbread\x07 " + "very " * 60 + "now"})
    said = verdict.accepted[0].text
    assert "^" not in said and "\\" not in said and "\x07" not in said
    assert len(said) <= 120 and said.endswith("…")
    assert verdict.clamped


def test_shop_prices_are_clamped_to_the_band_and_unknown_items_rejected():
    verdict = verdict_of(
        {"kind": "trade", "item_id": 519, "price": 9_999}, {"kind": "trade", "item_id": 607, "price": 10}
    )
    assert verdict.accepted[0].price == 80  # twice the base price of 40
    assert "item 607 is not sold" in verdict.rejections[0]


def test_announcements_and_spawns_follow_importance():
    orin = demo_profile("orin_beggar")  # importance 2
    decision = Decision.model_validate(
        {
            "actions": [
                {"kind": "announce", "text": "Hear me!", "scope": "server"},
                {"kind": "spawn_monster", "mob_id": 1002, "amount": 1, "x": 160, "y": 100},
            ]
        }
    )
    verdict = validate_decision(decision, orin)
    assert verdict.accepted == []
    assert len(verdict.rejections) == 2


def test_quests_must_be_offered_by_the_world():
    verdict = verdict_of({"kind": "start_quest", "char_id": 150001, "quest_id": 7000})
    assert "quest 7000 is not offered" in verdict.rejections[0]


def test_idle_is_accepted_but_queues_nothing():
    verdict = verdict_of({"kind": "idle"}, {"kind": "emote", "emotion": "smile"})
    assert [a.kind for a in verdict.accepted] == ["emote"]
    assert verdict.rejections == []


# Client tags the Ragnarok client renders as links in mes, npctalk, announces and chat.
HOSTILE_MARKUP = [
    "<URL>Free zeny<INFO>http://phish.example/login</INFO></URL>",
    "<NAVI>[Treasure]<INFO>prontera,150,150,0,000,0</INFO></NAVI>",
    "<ITEM>Jellopy<INFO>909</INFO></ITEM>",
    "<ITEMLINK>Elunium<INFO>985</INFO></ITEMLINK>",
    "<BODY>x</BODY> < URL > <url>lowercase</url>",
]


def test_client_tags_never_reach_the_game_in_speech_or_announcements():
    importance_nine = demo_profile("lina_baker", importance=9)
    for markup in HOSTILE_MARKUP:
        decision = Decision.model_validate(
            {
                "actions": [
                    {"kind": "say", "text": f"Look {markup} here"},
                    {"kind": "announce", "text": markup, "scope": "server"},
                ]
            }
        )
        verdict = validate_decision(decision, importance_nine)
        assert [action.kind for action in verdict.accepted] == ["say", "announce"], verdict.rejections
        for action in verdict.accepted:
            assert "<" not in action.text and ">" not in action.text, action.text
        assert verdict.clamped, "the change is noted for the operator"


def test_weather_is_one_the_game_shows_and_needs_an_important_npc():
    varen = demo_profile("lord_varen")  # importance 9
    decision = Decision.model_validate(
        {"actions": [{"kind": "weather", "weather": "snow"}, {"kind": "weather", "weather": "rain"}]}
    )
    verdict = validate_decision(decision, varen)
    assert [action.model_dump() for action in verdict.accepted] == [{"kind": "weather", "weather": "snow"}]
    assert verdict.rejections == [
        "weather: weather 'rain' is not one the game shows "
        "(clear, clouds, clouds2, fireworks, fog, leaves, sakura, snow)"
    ]
    lina_clears = validate_decision(
        Decision.model_validate({"actions": [{"kind": "weather", "weather": "clear"}]}), LINA
    )
    assert lina_clears.rejections == ["weather: changing the weather needs importance 8, Lina the Baker has 7"]
