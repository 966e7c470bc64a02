"""The quest slots shipped for rAthena's quest database are the ones the quest cycle hands out."""

from __future__ import annotations

from pathlib import Path

import yaml

from aiworld.config import WorldSettings
from aiworld.world.quests import QUEST_SLOTS
from aiworld.world.schedules import cycle_params

IMPORT_FILE = Path(__file__).parents[2] / "rathena" / "db" / "import" / "quest_db.yml"


def test_the_import_file_declares_every_slot_once_in_rathenas_format():
    document = yaml.safe_load(IMPORT_FILE.read_text(encoding="utf-8"))
    assert document["Header"] == {"Type": "QUEST_DB", "Version": 3}
    ids = [entry["Id"] for entry in document["Body"]]
    assert ids == list(QUEST_SLOTS)
    assert all(entry["Title"] and set(entry) == {"Id", "Title"} for entry in document["Body"])


def test_no_more_quests_open_than_there_are_slots():
    assert WorldSettings().max_open_quests <= len(QUEST_SLOTS)
    assert cycle_params(WorldSettings()).max_open_quests <= len(QUEST_SLOTS)
