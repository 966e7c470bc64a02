"""The demo world's stand-ins for players and for the game, used by `aiworld dev`.

Visitors wander up to NPCs, greet them and talk; the game stand-in executes queued actions the way
the dispatcher NPC script does (claim, run, report the result), printing what a player would see.
Everything goes through the same paths as production: signals and the `talk` update on the NPC
workflows, the leased action queue, and result reports that the NPCs remember.

What it prints comes from LLMs and players: it is escaped, never read as Rich markup. Its loops
outlive any failure (logged, counted, restarted); a failed visit is logged and the visitor walks
on; an action whose printing fails is still executed and reported.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, GameEventKind, NpcProfile, PlayerRef, QueuedAction, TalkReply, TalkTurn
from aiworld.npc.control import report_action_result
from aiworld.store.action_queue import ActionQueue
from aiworld.temporal import npc_workflow_id
from aiworld.world.definition import WorldDefinition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPace:
    """Seconds, as (shortest, longest) where the demo draws at random."""

    visit_interval: tuple[float, float] = (3.0, 8.0)  # between two visitors arriving somewhere
    greeting_pause: tuple[float, float] = (2.0, 5.0)
    visit_length: tuple[float, float] = (20.0, 60.0)
    news_interval: tuple[float, float] = (90.0, 180.0)
    talk_chance: float = 0.6
    game_tick: float = 1.0  # the dispatcher NPC's timer on a real server
    restart_delay: float = 1.0  # before a failed loop starts again
    stop_wait: float = 5.0  # the longest a stop waits for the demo's parts to end


LINES = [
    "Hello there!",
    "Any rumours today?",
    "What do you sell?",
    "Who are you?",
    "Thanks for the help!",
    "Do you need help with anything?",
    "Good morning!",
    "What's the latest news?",
    "Bye for now.",
]
NEWS = [
    ("A merchant caravan arrived from Alberta", 5),
    ("Orcs were seen near the Geffen road", 8),
    ("The King raised the bread tax", 7),
    ("A festival will be held at the fountain tonight", 4),
    ("Wolves attacked travellers south of the city", 7),
    ("A golden poring was spotted in the fields", 6),
]


class DemoGame:
    def __init__(
        self,
        client: Client,
        queue: ActionQueue,
        memories: MemoryStore,
        world: WorldDefinition,
        console: Console,
        pace: DemoPace = DemoPace(),
    ) -> None:
        self._client = client
        self._queue = queue
        self._memories = memories
        self._world = world
        self._console = console
        self._pace = pace
        self._npcs = {npc.npc_id: npc for npc in world.npcs}
        self._visiting: set[int] = set()
        self._visits: set[asyncio.Task] = set()  # held here: a task nobody holds may vanish unfinished
        self._rng = random.Random()
        # What failed and was carried on past, by part ("game", "visit", "show", …), for operators and tests.
        self.failures: Counter[str] = Counter()
        self.actions_executed = 0
        # Players' lines by what became of them: "answered", or "unanswered" (refused or timed out).
        self.talks: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        loops = {"visitors": self._visitors, "game": self._game, "news": self._news}
        tasks = [asyncio.create_task(self._supervised(name, loop)) for name, loop in loops.items()]
        try:
            await stop.wait()
        finally:
            running = [*tasks, *self._visits]
            for task in running:
                task.cancel()
            # A stop never hangs on a part that does not end when cancelled (seen once in the
            # suite: the demo's stop waited for minutes after its last visit): it is left behind.
            _, stuck = await asyncio.wait(running, timeout=self._pace.stop_wait) if running else (set(), set())
            if stuck:
                log.warning("demo stopped with %d part(s) still ending after %g s", len(stuck), self._pace.stop_wait)

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the stand-in's loops for as long as the demo runs: a failure is logged and
        counted, and the loop starts again (after a pause, so a lasting fault does not spin)."""
        while True:
            try:
                await loop()
            except Exception:
                self.failures[name] += 1
                log.exception("demo %s loop failed (%d so far); restarting it", name, self.failures[name])
                await asyncio.sleep(self._pace.restart_delay)

    def _visit_ended(self, task: asyncio.Task) -> None:
        self._visits.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures["visit"] += 1
            log.error("demo visit failed (%d so far)", self.failures["visit"], exc_info=task.exception())

    async def _signal(self, npc: NpcProfile, event: GameEvent) -> None:
        try:
            await self._client.get_workflow_handle(npc_workflow_id(npc.npc_id)).signal("game_event", event)
        except RPCError as error:  # a paused or retired NPC: the demo goes on with the others
            self._console.print(f"[dim]{escape(npc.name)} did not take {event.kind.value}: {escape(str(error))}[/]")

    async def _visitors(self) -> None:
        while True:
            await asyncio.sleep(self._rng.uniform(*self._pace.visit_interval))
            free = [visitor for visitor in self._world.visitors if visitor.char_id not in self._visiting]
            if free:
                visit = asyncio.create_task(self._visit(self._rng.choice(free), self._rng.choice(self._world.npcs)))
                self._visits.add(visit)
                visit.add_done_callback(self._visit_ended)

    async def _visit(self, visitor: PlayerRef, npc: NpcProfile) -> None:
        self._visiting.add(visitor.char_id)
        player = visitor.model_copy(update={"map": npc.map, "x": npc.x, "y": max(0, npc.y - 2)})
        try:
            await self._signal(
                npc, GameEvent(event_id=f"demo-{uuid.uuid4().hex}", kind=GameEventKind.PLAYER_NEARBY, player=player)
            )
            await asyncio.sleep(self._rng.uniform(*self._pace.greeting_pause))
            if self._rng.random() < self._pace.talk_chance:
                await self._talk(player, npc, self._rng.choice(LINES))
            await asyncio.sleep(self._rng.uniform(*self._pace.visit_length))
            await self._signal(
                npc, GameEvent(event_id=f"demo-{uuid.uuid4().hex}", kind=GameEventKind.PLAYER_LEFT, player=player)
            )
        finally:
            self._visiting.discard(visitor.char_id)

    async def _talk(self, player: PlayerRef, npc: NpcProfile, line: str) -> None:
        turn = TalkTurn(turn_id=f"demo-{uuid.uuid4().hex[:16]}", player=player, text=line)
        handle = self._client.get_workflow_handle(npc_workflow_id(npc.npc_id))
        try:
            reply = await asyncio.wait_for(handle.execute_update("talk", turn, result_type=TalkReply), 30)
        except (TimeoutError, WorkflowUpdateFailedError, RPCError) as error:
            self.talks["unanswered"] += 1
            self._console.print(f"[dim]{escape(player.name)} → {escape(npc.name)}: no answer ({escape(str(error))})[/]")
            return
        self.talks["answered"] += 1
        self._console.print(
            f"[cyan]{npc.map:>10}[/] [bold]{escape(player.name)}[/] → {escape(npc.name)}: “{escape(line)}”\n"
            f"{'':>10} [bold]{escape(npc.name)}[/] ({reply.emotion}, {escape(reply.decided_by)}): “{escape(reply.text)}”"
        )

    async def _news(self) -> None:
        while True:
            await asyncio.sleep(self._rng.uniform(*self._pace.news_interval))
            text, importance = self._rng.choice(NEWS)
            town = self._rng.choice(sorted({npc.map for npc in self._world.npcs}))
            self._console.print(f"[magenta]{town:>10} news[/]: {escape(text)}")
            event_id = f"news-{uuid.uuid4().hex}"
            for npc in self._world.npcs:
                if npc.map == town:
                    await self._signal(
                        npc,
                        GameEvent(event_id=event_id, kind=GameEventKind.WORLD_EVENT, text=text, importance=importance),
                    )

    async def _game(self) -> None:
        while True:
            await asyncio.sleep(self._pace.game_tick)
            for claimed in await self._queue.claim(limit=50, lease_seconds=30):
                try:
                    self._show(claimed.action)
                except Exception:  # the printout is not the action: a broken console stops no NPC
                    self.failures["show"] += 1
                    log.exception(
                        "demo could not print action %s (%d so far)", claimed.action.action_id, self.failures["show"]
                    )
                await report_action_result(
                    self._client, self._queue, self._memories, claimed.action.action_id, "done", "shown in the demo"
                )
                self.actions_executed += 1

    def _show(self, queued: QueuedAction) -> None:
        action = queued.action
        where = f"[cyan]{queued.map:>10}[/]"
        npc = escape(queued.npc_name)
        match action.kind:
            case "say":
                self._console.print(f"{where} [bold]{npc}[/] says: {escape(action.text)}")
            case "announce":
                self._console.print(f"{where} [bold yellow]{npc} announces: {escape(action.text)}[/]")
            case "emote":
                self._console.print(f"{where} [dim]{npc} /{action.emotion}[/]")
            case "walk_to" | "move":
                self._console.print(f"{where} [dim]{npc} walks to ({action.x},{action.y})[/]")
            case "trade":
                self._console.print(f"{where} [green]{npc} prices item {action.item_id} at {action.price}z[/]")
            case "reply":
                pass  # printed with the conversation
            case _:
                self._console.print(f"{where} {npc}: {action.kind} {escape(str(action.model_dump(exclude={'kind'})))}")
