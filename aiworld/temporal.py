"""Connecting to Temporal the same way from every process."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from aiworld.config import Settings

NPC_WORKFLOW_TYPE = "NpcLifeWorkflow"


def npc_workflow_id(npc_id: str) -> str:
    """(contract) One workflow per NPC: `npc-{npc_id}`."""
    return f"npc-{npc_id}"


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
