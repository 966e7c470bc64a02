"""The demo's stand-ins for players and the game: whatever LLMs and players write is printed as
text, never as Rich markup, and no failure stops the stand-in for good."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import redis.asyncio as redis
from rich.console import Console

from aiworld.memory.store import MemoryStore
from aiworld.models import AnnounceAction, PlayerRef, QueuedAction, SayAction
from aiworld.ops.demo import DemoGame, DemoPace
from aiworld.store.action_queue import ActionQueue
from aiworld.world.definition import WorldDefinition
from tests.conftest import REDIS_URL, demo_profile

BRISK = DemoPace(
    visit_interval=(0.05, 0.1),
    greeting_pause=(0.05, 0.1),
    visit_length=(0.05, 0.1),
    news_interval=(3600, 3600),
    talk_chance=1.0,
    game_tick=0.05,
    restart_delay=0.1,
)
IDLE_VISITORS = DemoPace(visit_interval=(3600, 3600), news_interval=(3600, 3600), game_tick=0.05, restart_delay=0.1)
MARKUP = "[/] [bold red]free zeny[/bold red] [link=http://phish.example]here[/link] [/"


def world_of(*visitors: PlayerRef) -> WorldDefinition:
    return WorldDefinition(npcs=[demo_profile("lina_baker")], visitors=list(visitors))


def say(action_id: str, text: str, npc_name: str = "Lina the Baker", kind: str = "say") -> QueuedAction:
    action = SayAction(text=text) if kind == "say" else AnnounceAction(text=text)
    return QueuedAction(
        action_id=action_id,
        npc_id="lina_baker",
        sequence=1,
        action=action,
        map="prontera",
        npc_name=npc_name,
        created_at=datetime.now(UTC),
    )


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


class Running:
    def __init__(self, game: DemoGame) -> None:
        self.game, self.stop = game, asyncio.Event()

    async def __aenter__(self) -> DemoGame:
        self.task = asyncio.create_task(self.game.run(self.stop))
        return self.game

    async def __aexit__(self, *_) -> None:
        self.stop.set()
        await self.task


async def test_llm_and_player_markup_is_printed_as_text(life, redis_client, keys):
    await life.start(demo_profile("lina_baker"))
    queue = ActionQueue(redis_client, keys)
    await queue.enqueue(say("lina_baker-1-0", MARKUP))
    await queue.enqueue(say("lina_baker-1-1", MARKUP, npc_name="Lina [/]", kind="announce"))
    printed = io.StringIO()
    console = Console(file=printed, width=400, color_system=None)
    visitor = PlayerRef(char_id=150009, name="[/]Probe[bold]", level=3)
    async with Running(
        DemoGame(life.client, queue, MemoryStore(redis_client, keys), world_of(visitor), console, BRISK)
    ) as game:
        await until(lambda: game.actions_executed >= 2 and "[/]Probe[bold] → Lina the Baker" in printed.getvalue())
    output = printed.getvalue()
    assert f"says: {MARKUP}" in output and f"Lina [/] announces: {MARKUP}" in output
    assert "Lina the Baker (" in output.split("[/]Probe[bold] → Lina the Baker", 1)[1], "and the reply after it"
    assert not game.failures, game.failures


async def test_a_store_outage_restarts_the_game_loop_and_no_action_is_lost(life, redis_client, keys, caplog):
    """The stand-in reads the queue through a TCP relay to the real Redis; the relay goes down."""
    await life.start(demo_profile("lina_baker"))
    relay = await Relay.start()
    relayed = redis.Redis.from_url(f"redis://127.0.0.1:{relay.port}/0", decode_responses=True)
    console = Console(file=io.StringIO(), width=200)
    try:
        async with Running(
            DemoGame(
                life.client, ActionQueue(relayed, keys), MemoryStore(relayed, keys), world_of(), console, IDLE_VISITORS
            )
        ) as game:
            await relay.stop()
            await until(lambda: game.failures["game"] >= 2)  # failed, restarted, failed again
            await relay.resume()
            await ActionQueue(redis_client, keys).enqueue(say("lina_baker-2-0", "Fresh bread!"))
            await until(lambda: game.actions_executed == 1)
    finally:
        await relayed.aclose()
        await relay.stop()
    assert "demo game loop failed" in caplog.text and "restarting it" in caplog.text
    assert await ActionQueue(redis_client, keys).status("lina_baker-2-0") is not None
    assert not [
        a for a in await ActionQueue(redis_client, keys).pending("lina_baker") if a.action_id == "lina_baker-2-0"
    ]


async def test_on_a_console_that_cannot_print_visits_fail_logged_and_go_on_and_actions_still_run(
    life, redis_client, keys, caplog
):
    """A Windows console in cp1252 has no "→": every conversation line fails to print."""
    await life.start(demo_profile("lina_baker"))
    cp1252 = Console(file=io.TextIOWrapper(io.BytesIO(), encoding="cp1252"), width=200)
    queue = ActionQueue(redis_client, keys)
    await queue.enqueue(say("lina_baker-3-0", "Bread → 10z today"))
    visitor = PlayerRef(char_id=150010, name="Aria", level=30)
    with caplog.at_level(logging.INFO, logger="aiworld.ops.demo"):
        async with Running(
            DemoGame(life.client, queue, MemoryStore(redis_client, keys), world_of(visitor), cp1252, BRISK)
        ) as game:
            await until(
                lambda: game.failures["visit"] >= 2 and game.failures["show"] >= 1 and game.actions_executed >= 1
            )
    assert "demo visit failed" in caplog.text and "UnicodeEncodeError" in caplog.text
    assert "demo could not print action lina_baker-3-0" in caplog.text
    assert not [a for a in await queue.pending("lina_baker") if a.action_id == "lina_baker-3-0"], (
        "the action ran all the same"
    )


class Relay:
    """A TCP relay to the real Redis that can be taken down (connections cut) and brought back."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls) -> Relay:
        relay = cls()
        await relay.resume()
        return relay

    async def resume(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.close()
        self._pipes.clear()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
        self._pipes.update({client_writer, server_writer})

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))


class Stubborn(DemoGame):
    """A visit whose talk takes a second to end once cancelled, as a call slow to honour it."""

    async def _talk(self, *_) -> None:
        self.talks["stubborn"] += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.failures["ignored a cancel"] += 1
            await asyncio.sleep(1)


async def test_a_stop_does_not_hang_on_a_part_that_ignores_its_cancellation(life, redis_client, keys, caplog):
    await life.start(demo_profile("lina_baker"))
    visitor = PlayerRef(char_id=150011, name="Aria", level=30)
    pace = DemoPace(**{**vars(BRISK), "stop_wait": 0.2})
    console = Console(file=io.StringIO())
    queue, memories = ActionQueue(redis_client, keys), MemoryStore(redis_client, keys)
    game = Stubborn(life.client, queue, memories, world_of(visitor), console, pace)
    with caplog.at_level(logging.WARNING, logger="aiworld.ops.demo"):
        async with Running(game):
            await until(lambda: game.talks["stubborn"] >= 1)
    assert game.failures["ignored a cancel"] == 1, "the stop cancelled the talk, which went on"
    assert "demo stopped with 1 part(s) still ending after 0.2 s" in caplog.text
