"""The `aiworld` command: every process of the service, and the operator's look at the NPCs."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from aiworld.config import ConfigError, Settings, load_settings

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False)

EXIT_CONFIG = 2


def _settings() -> Settings:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP call drowns the rest
    return settings


def operator_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Configuration mistakes end with one clear line and exit 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            errors.print(f"[bold red]error:[/] {error}")
            sys.exit(EXIT_CONFIG)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def leaves_without_teardown(command: Callable[..., Any]) -> Callable[..., Any]:
    """A one-shot command that used a Temporal client ends without the interpreter's teardown.

    The client's native runtime keeps threads of its own, and one of them can call into Python
    while the interpreter finalizes: the process then aborts with "Fatal Python error:
    PyGILState_Release ... finalizing" after the command has done its work (temporalio/sdk-python
    issue 300). Once the command has said all it has to say, nothing is left to tear down.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> NoReturn:
        try:
            command(*args, **kwargs)
            code = 0
        except SystemExit as done:  # operator_errors' exits and doctor's verdict
            code = 0 if done.code is None else done.code if isinstance(done.code, int) else 1
        _exit_now(code)

    return wrapper


def _exit_now(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """rAthena AI World: NPCs that live on their own as durable Temporal workflows."""


@main.command()
@click.option("--world", "world_file", type=click.Path(path_type=Path), help="World file (default: the demo world).")
@operator_errors
def dev(world_file: Path | None) -> None:
    """Run everything embedded: Temporal, a state store if needed, worker, API and the demo world."""
    from aiworld.ops.dev import run_dev

    _run_service(run_dev(_settings(), world_file))


@main.command()
@operator_errors
def worker() -> None:
    """Run NPC workflows and activities on the `aiworld` task queue."""
    from aiworld.ops.worker import run_worker

    _run_service(_until_signalled(lambda stop: run_worker(_settings(), stop)))


@main.command()
@operator_errors
def api() -> None:
    """Serve the HTTP API the bridge and tools talk to."""
    from api.server import run_api

    run_api(_settings())


@main.command()
@operator_errors
def bridge() -> None:
    """Move events and actions between rAthena's MariaDB and the API."""
    from bridge.service import run_bridge

    _run_service(_until_signalled(lambda stop: run_bridge(_settings(), stop)))


@main.command()
@click.option(
    "--check",
    "checks",
    multiple=True,
    type=click.Choice(["temporal", "redis", "mariadb", "llm"]),
    help="Run only these checks (repeatable); default: all.",
)
@leaves_without_teardown
@operator_errors
def doctor(checks: tuple[str, ...]) -> None:
    """Check Temporal, the state store, MariaDB and the LLM providers; say how to fix what fails."""
    from aiworld.ops.doctor import CHECKS, main_doctor

    sys.exit(main_doctor(_settings(), frozenset(checks or CHECKS)))


@main.group()
def schedules() -> None:
    """The world systems' Temporal Schedules (world-economy, -politics, -environment, -quests)."""


@schedules.command("apply")
@leaves_without_teardown
@operator_errors
def schedules_apply() -> None:
    """Create the world schedules and the coherence check's, or update them to the settings (an
    operator's pause is kept)."""
    asyncio.run(_schedules_apply(_settings()))


async def _schedules_apply(settings: Settings) -> None:
    from aiworld.temporal import connect
    from aiworld.world.coherence import apply_coherence_schedule
    from aiworld.world.schedules import apply_schedules, interval_of

    client = await _connect_or_explain(connect, settings)
    for schedule_id, how in (await apply_schedules(client, settings.world, settings.task_queue)).items():
        system = schedule_id.removeprefix("world-")
        console.print(f"{schedule_id}: {how} (every {interval_of(settings.world, system)})")
    how = await apply_coherence_schedule(client, settings.coherence, settings.task_queue)
    console.print(f"world-coherence: {how} (every {settings.coherence.interval_seconds:g}s)")


@main.group()
def npc() -> None:
    """Look at living NPCs (from Temporal visibility)."""


@npc.command("list")
@click.option("--map", "map_name", help="Only NPCs on this map.")
@click.option("--faction", help="Only NPCs of this faction.")
@leaves_without_teardown
@operator_errors
def npc_list(map_name: str | None, faction: str | None) -> None:
    """List running NPC workflows with where they are and what they do."""
    asyncio.run(_npc_list(_settings(), map_name, faction))


async def _npc_list(settings: Settings, map_name: str | None, faction: str | None) -> None:
    from aiworld.npc import search_attributes
    from aiworld.temporal import NPC_WORKFLOW_TYPE, connect

    clauses = [f"WorkflowType='{NPC_WORKFLOW_TYPE}'", "ExecutionStatus='Running'"]
    for attribute, value in (("NpcMap", map_name), ("NpcFaction", faction)):
        if value is not None:
            # The value goes into a visibility query: only names, never query syntax.
            if not value.replace("_", "").isalnum():
                raise ConfigError(f"--{attribute[3:].lower()}: expected letters, digits and _ only, got {value!r}")
            clauses.append(f"{attribute}='{value}'")
    client = await _connect_or_explain(connect, settings)
    table = Table(title="NPCs", header_style="bold cyan")
    for column in ("workflow id", "map", "faction", "mood", "activity"):
        table.add_column(column)
    count = 0
    async for execution in client.list_workflows(" AND ".join(clauses)):
        attributes = execution.typed_search_attributes
        table.add_row(
            execution.id,
            attributes.get(search_attributes.NPC_MAP) or "",
            attributes.get(search_attributes.NPC_FACTION) or "",
            attributes.get(search_attributes.NPC_MOOD) or "",
            attributes.get(search_attributes.NPC_ACTIVITY) or "",
        )
        count += 1
    console.print(table if count else "[yellow]no running NPC matches[/]")


async def _connect_or_explain(connect: Callable[[Settings], Any], settings: Settings) -> Any:
    try:
        return await connect(settings)
    except RuntimeError as error:
        raise ConfigError(
            f"cannot reach Temporal at {settings.temporal_address} ({error}); start it with `aiworld dev` "
            "or set AIWORLD_TEMPORAL_ADDRESS"
        ) from None


def _run_service(service: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived service on uvloop where it is installed (Linux and macOS): a busy worker
    spends a few percent less CPU per decision on it (README "Benchmarks"). The API gets it from
    uvicorn, which picks uvloop and httptools by itself when they are installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(service)
    else:
        uvloop.run(service)


async def _until_signalled(run: Callable[[asyncio.Event], Any]) -> None:
    """Run a long-lived service until SIGINT/SIGTERM, then let it stop cleanly."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run(stop)


if __name__ == "__main__":
    main()
