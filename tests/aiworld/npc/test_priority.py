"""The worker's priority gate: background turns wait in order, a player's line never does."""

from __future__ import annotations

import asyncio

import pytest

from aiworld.models import DecisionRecord, GameEvent, PlayerRef, TalkReply, TalkTurn
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.npc.priority import PriorityGate, Turn
from aiworld.ops.worker import build_worker
from tests.conftest import NpcLife, demo_profile, end_lives

PLAYER = PlayerRef(char_id=150077, name="Aria", level=30)


class Holder:
    """A turn that runs until the test lets it finish."""

    def __init__(self, gate: PriorityGate, turn: Turn, started: list[str], name: str) -> None:
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self._run(gate, turn, started, name))

    async def _run(self, gate: PriorityGate, turn: Turn, started: list[str], name: str) -> None:
        async with gate.turn(turn):
            started.append(name)
            await self.release.wait()


async def until(condition, what: str, every: float = 0) -> None:
    """Lets the loop run until the condition holds: spun for the gate's own steps, polled every
    `every` seconds for one reached through Temporal and a worker."""
    try:
        async with asyncio.timeout(60):
            while not condition():
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(what) from None


async def test_at_most_the_slots_run_and_a_players_line_passes_a_full_gate():
    gate = PriorityGate(slots=2, max_wait=60)
    started: list[str] = []
    first, second, third = (Holder(gate, Turn.EVENT, started, name) for name in ("first", "second", "third"))
    await until(lambda: gate.waiting == 1, "the third waits")
    assert started == ["first", "second"] and gate.running == 2

    async with gate.turn(Turn.TALK):  # the gate is full: a player's line does not wait
        assert gate.running == 2

    first.release.set()
    await until(lambda: "third" in started, "a freed slot goes to the one waiting")
    assert gate.running == 2 and gate.waiting == 0
    second.release.set()
    third.release.set()
    await asyncio.gather(first.task, second.task, third.task)
    assert gate.running == 0 and gate.overruns == 0


async def test_event_decisions_go_before_routine_work_each_in_order_of_arrival():
    gate = PriorityGate(slots=1, max_wait=60)
    started: list[str] = []
    holder = Holder(gate, Turn.ROUTINE, started, "holder")
    await until(lambda: started == ["holder"], "the holder runs")
    waiting = []
    for name, turn in (
        ("routine-1", Turn.ROUTINE),
        ("event-1", Turn.EVENT),
        ("routine-2", Turn.ROUTINE),
        ("event-2", Turn.EVENT),
    ):
        waiting.append(Holder(gate, turn, started, name))
        await until(lambda: gate.waiting == len(waiting), f"{name} waits")

    holder.release.set()
    for expected, waiter in zip(
        ["event-1", "event-2", "routine-1", "routine-2"], [waiting[1], waiting[3], waiting[0], waiting[2]], strict=True
    ):
        await until(lambda expected=expected: started[-1] == expected, f"{expected} runs next")
        assert gate.running == 1
        waiter.release.set()
    await asyncio.gather(holder.task, *(waiter.task for waiter in waiting))
    assert started == ["holder", "event-1", "event-2", "routine-1", "routine-2"]


async def test_a_turn_that_waited_its_longest_runs_anyway_over_the_limit():
    gate = PriorityGate(slots=1, max_wait=0.05)
    started: list[str] = []
    holder = Holder(gate, Turn.EVENT, started, "holder")
    await until(lambda: started == ["holder"], "the holder runs")

    async with gate.turn(Turn.EVENT):  # the holder never lets go: this one runs after max_wait
        assert gate.running == 2 and gate.overruns == 1 and gate.waiting == 0

    holder.release.set()
    await holder.task
    assert gate.running == 0
    async with gate.turn(Turn.EVENT):  # the gate works as before
        assert gate.running == 1


async def test_a_cancelled_waiter_leaves_the_line_and_a_slot_handed_to_one_is_passed_on():
    gate = PriorityGate(slots=1, max_wait=60)
    started: list[str] = []
    holder = Holder(gate, Turn.EVENT, started, "holder")
    await until(lambda: started == ["holder"], "the holder runs")
    gone = Holder(gate, Turn.EVENT, started, "gone")
    await until(lambda: gate.waiting == 1, "one waits")

    gone.task.cancel()  # e.g. its activity timed out while it waited
    with pytest.raises(asyncio.CancelledError):
        await gone.task
    assert gate.waiting == 0 and gate.running == 1

    release = asyncio.Event()

    async def hold_then_cancel_the_next() -> None:
        async with gate.turn(Turn.EVENT):
            await release.wait()
        # Leaving the gate handed the slot to `handed`, which has not run yet: cancel it now.
        handed.task.cancel()

    holder.release.set()
    await holder.task
    last = asyncio.create_task(hold_then_cancel_the_next())
    await until(lambda: gate.running == 1 and gate.waiting == 0, "the last holder runs")
    handed = Holder(gate, Turn.EVENT, started, "handed")
    after = Holder(gate, Turn.EVENT, started, "after")
    await until(lambda: gate.waiting == 2, "two wait")
    release.set()
    await last
    with pytest.raises(asyncio.CancelledError):
        await handed.task
    await until(lambda: started[-1] == "after", "the slot passes on")
    assert "handed" not in started and gate.running == 1
    after.release.set()
    await after.task
    assert gate.running == 0 and gate.waiting == 0


async def test_no_slots_means_no_limit():
    gate = PriorityGate(slots=0, max_wait=0)
    started: list[str] = []
    holders = [Holder(gate, Turn.ROUTINE, started, f"routine-{index}") for index in range(5)]
    await until(lambda: len(started) == 5, "all run at once")
    assert gate.waiting == 0
    for holder in holders:
        holder.release.set()
    await asyncio.gather(*(holder.task for holder in holders))


async def test_through_a_worker_a_player_is_answered_while_decisions_wait_for_the_busy_gate(
    dev_env, task_queue, redis_client, keys
):
    """The worker's background slots are all taken (the test holds them, as long routine work
    would): an NPC's event decision waits, a player's line to another NPC is answered at once, and
    the decision is made as soon as a slot frees."""
    gate = PriorityGate(slots=1, max_wait=60)
    life = NpcLife(dev_env.client, task_queue, keys)
    async with build_worker(dev_env.client, task_queue, redis_client, keys, OfflineDecisionMaker(), gate=gate):
        guard, baker = await life.start(demo_profile("gareth_guard")), await life.start(demo_profile("lina_baker"))
        await life.wait_for(guard, lambda state: state.events_processed == 0)
        await life.wait_for(baker, lambda state: state.events_processed == 0)
        busy = Holder(gate, Turn.ROUTINE, [], "busy")
        await until(lambda: gate.running == 1, "the gate is full")

        await guard.signal("game_event", GameEvent(event_id="gate-hit", kind="player_attacked", player=PLAYER))
        await until(lambda: gate.waiting == 1, "the guard's decision waits for a slot", every=0.05)
        turn = TalkTurn(turn_id="gate-talk", player=PLAYER, text="Fresh bread today?")
        reply = await asyncio.wait_for(baker.execute_update("talk", turn, result_type=TalkReply), 60)

        assert reply.text
        assert gate.waiting == 1 and not await guard.query("recent_decisions", result_type=list[DecisionRecord])
        busy.release.set()
        await life.wait_for_decisions(guard, lambda ds: any("gate-hit" in d.event_ids for d in ds))
        await busy.task
    await end_lives(dev_env.client, task_queue, life.started, visibility=False)
    assert gate.running == 0 and gate.overruns == 0
