"""The demo world's stand-ins for players and for the game, used by `aiworld dev`.

Visitors wander up to NPCs, greet them and talk; the game stand-in executes queued actions the way
the dispatcher NPC script does (claim, run, report the result), printing what a player would see.
Everything goes through the same paths as production: signals and the `talk` update on the NPC
workflows, the leased action queue, and result reports that the NPCs remember.
"""

from __future__ import annotations

import asyncio
import random
import uuid

from rich.console import Console
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from aiworld.action_queue import ActionQueue
from aiworld.models import GameEvent, GameEventKind, NpcProfile, PlayerRef, QueuedAction, TalkReply, TalkTurn
from aiworld.npc_control import report_action_result
from aiworld.temporal import npc_workflow_id
from aiworld.world import WorldDefinition

VISIT_INTERVAL = (3.0, 8.0)  # seconds between two visitors arriving somewhere
VISIT_LENGTH = (20.0, 60.0)
NEWS_INTERVAL = (90.0, 180.0)
GAME_TICK_SECONDS = 1.0  # the dispatcher NPC's timer on a real server

LINES = [
    "Hello there!", "Any rumours today?", "What do you sell?", "Who are you?", "Thanks for the help!",
    "Do you need help with anything?", "Good morning!", "What's the latest news?", "Bye for now.",
]  # fmt: skip
NEWS = [
    ("A merchant caravan arrived from Alberta", 5), ("Orcs were seen near the Geffen road", 8),
    ("The King raised the bread tax", 7), ("A festival will be held at the fountain tonight", 4),
    ("Wolves attacked travellers south of the city", 7), ("A golden poring was spotted in the fields", 6),
]  # fmt: skip


class DemoGame:
    def __init__(self, client: Client, queue: ActionQueue, world: WorldDefinition, console: Console) -> None:
        self._client = client
        self._queue = queue
        self._world = world
        self._console = console
        self._npcs = {npc.npc_id: npc for npc in world.npcs}
        self._visiting: set[int] = set()
        self._rng = random.Random()

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(loop()) for loop in (self._visitors, self._game, self._news)]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _signal(self, npc: NpcProfile, event: GameEvent) -> None:
        try:
            await self._client.get_workflow_handle(npc_workflow_id(npc.npc_id)).signal("game_event", event)
        except RPCError as error:  # a paused or retired NPC: the demo goes on with the others
            self._console.print(f"[dim]{npc.name} did not take {event.kind.value}: {error}[/]")

    async def _visitors(self) -> None:
        while True:
            await asyncio.sleep(self._rng.uniform(*VISIT_INTERVAL))
            free = [visitor for visitor in self._world.visitors if visitor.char_id not in self._visiting]
            if free:
                asyncio.create_task(self._visit(self._rng.choice(free), self._rng.choice(self._world.npcs)))

    async def _visit(self, visitor: PlayerRef, npc: NpcProfile) -> None:
        self._visiting.add(visitor.char_id)
        player = visitor.model_copy(update={"map": npc.map, "x": npc.x, "y": max(0, npc.y - 2)})
        try:
            await self._signal(npc, GameEvent(event_id=f"demo-{uuid.uuid4().hex}", kind=GameEventKind.PLAYER_NEARBY, player=player))
            await asyncio.sleep(self._rng.uniform(2, 5))
            if self._rng.random() < 0.6:
                await self._talk(player, npc, self._rng.choice(LINES))
            await asyncio.sleep(self._rng.uniform(*VISIT_LENGTH))
            await self._signal(npc, GameEvent(event_id=f"demo-{uuid.uuid4().hex}", kind=GameEventKind.PLAYER_LEFT, player=player))
        finally:
            self._visiting.discard(visitor.char_id)

    async def _talk(self, player: PlayerRef, npc: NpcProfile, line: str) -> None:
        turn = TalkTurn(turn_id=f"demo-{uuid.uuid4().hex[:16]}", player=player, text=line)
        handle = self._client.get_workflow_handle(npc_workflow_id(npc.npc_id))
        try:
            reply = await asyncio.wait_for(handle.execute_update("talk", turn, result_type=TalkReply), 30)
        except (WorkflowUpdateFailedError, RPCError, asyncio.TimeoutError) as error:
            self._console.print(f"[dim]{player.name} → {npc.name}: no answer ({error})[/]")
            return
        self._console.print(
            f"[cyan]{npc.map:>10}[/] [bold]{player.name}[/] → {npc.name}: “{line}”\n"
            f"{'':>10} [bold]{npc.name}[/] ({reply.emotion}, {reply.decided_by}): “{reply.text}”"
        )

    async def _news(self) -> None:
        while True:
            await asyncio.sleep(self._rng.uniform(*NEWS_INTERVAL))
            text, importance = self._rng.choice(NEWS)
            town = self._rng.choice(sorted({npc.map for npc in self._world.npcs}))
            self._console.print(f"[magenta]{town:>10} news[/]: {text}")
            event_id = f"news-{uuid.uuid4().hex}"
            for npc in self._world.npcs:
                if npc.map == town:
                    await self._signal(npc, GameEvent(event_id=event_id, kind=GameEventKind.WORLD_EVENT, text=text, importance=importance))

    async def _game(self) -> None:
        while True:
            await asyncio.sleep(GAME_TICK_SECONDS)
            for claimed in await self._queue.claim(limit=50, lease_seconds=30):
                self._show(claimed.action)
                await report_action_result(self._client, self._queue, claimed.action.action_id, "done", "shown in the demo")

    def _show(self, queued: QueuedAction) -> None:
        action = queued.action
        where = f"[cyan]{queued.map:>10}[/]"
        match action.kind:
            case "say":
                self._console.print(f"{where} [bold]{queued.npc_name}[/] says: {action.text}")
            case "announce":
                self._console.print(f"{where} [bold yellow]{queued.npc_name} announces: {action.text}[/]")
            case "emote":
                self._console.print(f"{where} [dim]{queued.npc_name} /{action.emotion}[/]")
            case "walk_to" | "move":
                self._console.print(f"{where} [dim]{queued.npc_name} walks to ({action.x},{action.y})[/]")
            case "trade":
                self._console.print(f"{where} [green]{queued.npc_name} prices item {action.item_id} at {action.price}z[/]")
            case "reply":
                pass  # printed with the conversation
            case _:
                self._console.print(f"{where} {queued.npc_name}: {action.kind} {action.model_dump(exclude={'kind'})}")
