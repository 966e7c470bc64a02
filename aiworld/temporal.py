"""Connecting to Temporal the same way from every process."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, ClientConnectConfig
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from aiworld.config import Settings
from aiworld.npc import search_attributes
from aiworld.ops.tracing import temporal_interceptors

NPC_WORKFLOW_TYPE = "NpcLifeWorkflow"


def npc_workflow_id(npc_id: str) -> str:
    """(contract) One workflow per NPC: `npc-{npc_id}`."""
    return f"npc-{npc_id}"


def connect_config(settings: Settings) -> ClientConnectConfig:
    """`Client.connect` arguments from our settings, through Temporal's own client profile (the
    shape the `temporal` CLI's TOML profiles and TEMPORAL_* variables have), so an API key means
    TLS exactly as it does for the CLI."""
    given_tls = (
        settings.temporal_tls_server_ca_cert,
        settings.temporal_tls_client_cert,
        settings.temporal_tls_client_key,
        settings.temporal_tls_server_name,
    )
    tls = None
    if settings.temporal_tls is not None or any(value is not None for value in given_tls):
        tls = ClientConfigTLS(
            disabled=settings.temporal_tls is False,
            server_name=settings.temporal_tls_server_name,
            server_root_ca_cert=settings.temporal_tls_server_ca_cert,
            client_cert=settings.temporal_tls_client_cert,
            client_private_key=settings.temporal_tls_client_key,
        )
    profile = ClientConfigProfile(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        tls=tls,
    )
    return profile.to_client_connect_config()


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client with tracing (workers built on it trace workflows and activities too); `runtime`
    carries the worker's Temporal SDK metrics exporter."""
    return await Client.connect(
        **connect_config(settings),
        data_converter=pydantic_data_converter,
        interceptors=temporal_interceptors(settings.observability),
        runtime=runtime,
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register the NPC search attributes on a server that lacks them (the test server, a new
    namespace). The dev server of `aiworld dev` gets them with `--search-attribute` at start."""
    wanted = {key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in search_attributes.ALL}
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        wanted = {name: kind for name, kind in wanted.items() if name not in listed.custom_attributes}
    except RPCError as error:
        # The time-skipping test server cannot list, but it can add.
        if error.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
    if not wanted:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=wanted)
        )
    except RPCError as error:
        if error.status is not RPCStatusCode.ALREADY_EXISTS:
            raise
