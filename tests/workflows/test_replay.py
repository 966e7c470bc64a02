"""Replay recorded histories: a code change that would break running NPCs (or fan-outs) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.npc_life import NpcLifeWorkflow
from workflows.world_broadcast import WorldBroadcastWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
# Which workflow each recorded file belongs to, by the start of its name.
WORKFLOW_OF = {"npc_life_": NpcLifeWorkflow, "world_broadcast_": WorldBroadcastWorkflow}


def test_histories_are_recorded():
    assert HISTORIES, "record one with: python -m tests.workflows.record_history"
    recorded = {prefix for prefix in WORKFLOW_OF for path in HISTORIES if path.name.startswith(prefix)}
    assert recorded == set(WORKFLOW_OF), "python -m tests.workflows.record_broadcast_history records the other"


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_recorded_history_replays(path: Path):
    history = WorkflowHistory.from_json("replayed", path.read_text())
    workflow = next(kind for prefix, kind in WORKFLOW_OF.items() if path.name.startswith(prefix))
    replayer = Replayer(workflows=[workflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
