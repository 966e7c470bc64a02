"""Registration merges the script's facts with the world file's profile; whatever a script sends,
the answer is the NPC's start or a 422 naming the field, never a 500."""

from __future__ import annotations

import logging

from aiworld.temporal import npc_workflow_id
from workflows.npc_state import NpcLifeInput

# Lina's world-file profile: spawn (146,182), area (138,174)-(156,190), routine of three points.
LINA = {"npc_id": "lina_baker", "name": "Lina the Baker", "sprite": 90, "map": "prontera", "x": 146, "y": 182}
LINA_ROUTINE = [(146, 182), (150, 186), (142, 178)]
NEWCOMER = {"npc_id": "new_face", "name": "New Face", "sprite": 50, "map": "payon", "x": 100, "y": 100}


async def registered_profile(api, dev_env, body: dict):
    """Register `body` as a fresh life and return the profile the NPC was started with."""
    handle = dev_env.client.get_workflow_handle(npc_workflow_id(body["npc_id"]))
    answer = await api.post("/ai/npc/register", json=body)
    assert answer.status_code == 201, answer.text
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [life] = await dev_env.client.data_converter.decode(started.input.payloads, [NpcLifeInput])
    await handle.terminate("the next variant registers afresh")
    return life.profile


async def test_a_demo_npc_keeps_its_routine_where_the_script_left_it(api, dev_env):
    profile = await registered_profile(api, dev_env, LINA)
    assert profile.routine == LINA_ROUTINE and (profile.area.x1, profile.area.y2) == (138, 190)
    # Moved a little, still inside her area: same area, same routine.
    nudged = await registered_profile(api, dev_env, {**LINA, "x": 148, "y": 184})
    assert (nudged.x, nudged.y) == (148, 184) and nudged.routine == LINA_ROUTINE and nudged.area == profile.area


async def test_a_demo_npc_moved_away_walks_around_its_new_spot(api, dev_env):
    moved = await registered_profile(api, dev_env, {**LINA, "x": 150, "y": 170})
    assert moved.area.contains(150, 170) and not moved.area.contains(146, 182)
    assert moved.routine == [(142, 178)]  # the one routine point still within reach
    # Moved with an area of its own that holds none of the world file's routine: no routine left.
    elsewhere = await registered_profile(
        api, dev_env, {**LINA, "x": 100, "y": 100, "area": {"x1": 90, "y1": 90, "x2": 110, "y2": 110}}
    )
    assert elsewhere.routine == [] and elsewhere.area.x1 == 90


async def test_points_outside_the_area_are_422_naming_the_field(api):
    outside_routine = await api.post("/ai/npc/register", json={**NEWCOMER, "routine": [[100, 101], [300, 300]]})
    assert outside_routine.status_code == 422
    [problem] = outside_routine.json()["detail"]
    assert problem["field"] == "routine.1" and "(300,300)" in problem["message"]

    area = {"x1": 10, "y1": 10, "x2": 20, "y2": 20}
    outside_spawn = await api.post("/ai/npc/register", json={**NEWCOMER, "area": area})
    assert outside_spawn.status_code == 422 and outside_spawn.json()["detail"][0]["field"] == "area"

    # A demo NPC moved away, sent with routine points around her old spot.
    stale = await api.post("/ai/npc/register", json={**LINA, "x": 150, "y": 170, "routine": [[150, 172], [146, 182]]})
    assert stale.status_code == 422 and stale.json()["detail"][0]["field"] == "routine.1"
    assert (await api.get("/ai/world/state")).status_code == 200  # and the API goes on serving


async def test_unwalkable_points_leave_the_routine(api, dev_env, caplog):
    profile = await registered_profile(api, dev_env, {**LINA, "unwalkable": [[150, 186], [1, 1]]})
    assert profile.routine == [(146, 182), (142, 178)]
    given = {**NEWCOMER, "routine": [[100, 100], [104, 104]], "unwalkable": [[100, 100]]}
    with caplog.at_level(logging.WARNING, logger="api.app"):
        newcomer = await registered_profile(api, dev_env, given)
    # The spawn point stays (the script puts the NPC there anyway), and the operator hears of it.
    assert (newcomer.x, newcomer.y) == (100, 100) and newcomer.routine == [(104, 104)]
    assert any("new_face" in record.message and "(100,100)" in record.message for record in caplog.records)
