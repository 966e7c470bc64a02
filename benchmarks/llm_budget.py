"""LLM calls and money per NPC-hour, with the budget governor off and on at two budget levels.

    python -m benchmarks.llm_budget                 # 1,000 NPCs, 10% near players, one game hour
    python -m benchmarks.llm_budget --npcs 200

What runs for real: the LLM router with its decision cache, batching, token bucket and budget
governor, the official OpenAI SDK, Redis, and the test suite's provider server (which reports
usage as a model would: about four characters a token). What is simulated: the decision stream.
Temporal is not involved; an NPC's life would ask for the same decisions, because it asks the
decision maker only on significant events (a new player near, a gift, an attack, a monster slain
nearby, another NPC speaking, world news of importance 4 or more) and answers each player line
through the dialogue tier; routine steps between them are made in workflow code without a call.
So each NPC gets, as Poisson arrivals over one game hour (rates below, per NPC-hour), exactly
those events, on a simulated clock that the governor's time windows follow. Decisions that fall
within one batch window of game time are asked together, as concurrent NPCs' would be.

The governor's first rung (stretching the cadence of the least important NPCs) saves workflow
wakes, not calls: routine steps never call a model, so it does not show in these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as redis

from aiworld.config import BudgetLimits, BudgetSettings, LlmSettings, ProviderSettings, Settings
from aiworld.llm import build_router
from aiworld.models import DialogueContext, GameEvent, NpcContext, NpcProfile, Personality, PlayerRef, TalkTurn
from aiworld.store.keys import Keys
from tests.aiworld.llm.provider_server import ProviderServer, serve

HOUR = 3600.0
NEAR_SHARE = 0.10
# Significant events per NPC-hour: for NPCs with players near, and for every NPC.
NEAR_RATES = {"player_nearby": 12.0, "talk": 10.0, "item_received": 1.0, "player_attacked": 0.5}
NEAR_RATES |= {"player_killed_monster": 2.0}
EVERYONE_RATES = {"npc_spoke": 1.0}
WORLD_NEWS_PER_HOUR = 2  # each reaches every NPC at once (scope world)
BATCH_WINDOW_SECONDS = 2.0  # the default llm.batch_window_ms
SHORT_BATCH_WINDOW_SECONDS = 0.15  # what it was before: batches of one or two
CONCURRENT_DECISIONS = 100
# Prices per 1k tokens: a rich default model and a cheap one to fall back on.
RICH_PRICES = {"input_price_per_1k": 0.0025, "output_price_per_1k": 0.01}
CHEAP_PRICES = {"input_price_per_1k": 0.00027, "output_price_per_1k": 0.0011}
MAPS = ["prontera", "geffen", "payon", "morocc", "alberta"]
GAME_START = datetime(2026, 11, 30, tzinfo=UTC)  # a day begins: the money/day window is fresh


@dataclass(order=True)
class Happening:
    at: float
    npc: int = field(compare=False)
    kind: str = field(compare=False)
    player: int = field(compare=False, default=0)
    other: int = field(compare=False, default=0)


def population(npcs: int, rng: random.Random) -> list[NpcProfile]:
    profiles = []
    for index in range(npcs):
        x, y = rng.randint(40, 300), rng.randint(40, 300)
        profiles.append(
            NpcProfile(
                npc_id=f"npc_{index:04d}",
                name=f"Resident {index}",
                sprite=4_000 + index % 100,
                map=MAPS[index % len(MAPS)],
                x=x,
                y=y,
                role=rng.choice(["merchant", "guard", "townsfolk", "priest"]),
                personality=Personality(description="A resident going about the day."),
                importance=rng.randint(1, 10),
            )
        )
    return profiles


def decision_stream(npcs: int, rng: random.Random) -> list[Happening]:
    """Every significant event and player line of one game hour, in time order."""
    happenings: list[Happening] = []
    near = set(rng.sample(range(npcs), round(npcs * NEAR_SHARE)))
    for npc in range(npcs):
        rates = EVERYONE_RATES | (NEAR_RATES if npc in near else {})
        for kind, per_hour in rates.items():
            at = rng.expovariate(per_hour / HOUR)
            while at < HOUR:
                happenings.append(Happening(at, npc, kind, player=rng.randint(1, 400), other=rng.randrange(npcs)))
                at += rng.expovariate(per_hour / HOUR)
    for news in range(WORLD_NEWS_PER_HOUR):
        at = (news + 0.5) * HOUR / WORLD_NEWS_PER_HOUR
        happenings.extend(Happening(at, npc, f"world_event:{news}") for npc in range(npcs))
    return sorted(happenings)


class GameClock:
    def __init__(self) -> None:
        self.now = GAME_START.timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Tally:
    decisions: Counter = field(default_factory=Counter)  # by provider
    rungs: Counter = field(default_factory=Counter)
    lines: int = 0
    lines_by_llm: int = 0
    lines_within_budget: int = 0
    lines_within_budget_by_llm: int = 0
    money: float = 0.0
    rung_entered: dict[str, float] = field(default_factory=dict)  # rung -> game minute first seen


def player(number: int) -> PlayerRef:
    return PlayerRef(char_id=150_000 + number, name=f"Player{number}", level=50)


def event_of(happening: Happening, profiles: list[NpcProfile]) -> GameEvent:
    event_id = f"{happening.kind}-{happening.npc}-{happening.at:.3f}".replace(":", "-")
    if happening.kind.startswith("world_event"):
        number = happening.kind.split(":")[1]
        return GameEvent(event_id=event_id, kind="world_event", text=f"Royal decree number {number}", importance=5)
    if happening.kind == "npc_spoke":
        return GameEvent(
            event_id=event_id, kind="npc_spoke", other_npc_id=profiles[happening.other].npc_id, text="Fine weather."
        )
    if happening.kind == "item_received":
        return GameEvent(
            event_id=event_id, kind="item_received", player=player(happening.player), item_id=512, amount=1
        )
    return GameEvent(event_id=event_id, kind=happening.kind, player=player(happening.player))


async def run_once(
    label: str,
    budget: BudgetSettings,
    server: ProviderServer,
    store: redis.Redis,
    profiles: list[NpcProfile],
    stream: list[Happening],
    batch_window: float = BATCH_WINDOW_SECONDS,
) -> dict[str, Any]:
    provider = {"api_key": "bench", "requests_per_minute": 10_000_000, "tokens_per_minute": 10**12}
    settings = Settings(
        llm=LlmSettings(
            default_provider="rich",
            fallback=["cheap"],
            providers={
                "rich": ProviderSettings(
                    kind="openai", endpoint=f"{server.url}/v1", model="rich", **provider, **RICH_PRICES
                ),
                "cheap": ProviderSettings(
                    kind="deepseek", endpoint=f"{server.url}/deepseek", model="cheap", **provider, **CHEAP_PRICES
                ),
            },
            # Game time runs faster than the wall: the batcher's window is kept short on the wall
            # clock while decisions of one window of game time are asked together.
            batch_window_ms=5,
            budget=budget,
        )
    )
    keys = Keys(f"bench:llm:{uuid.uuid4().hex[:8]}:")
    clock = GameClock()
    router = build_router(settings, store, keys, clock=clock)
    tally = Tally()
    # As many decisions at once as a worker runs activities (a world news reaches every NPC).
    concurrent = asyncio.Semaphore(CONCURRENT_DECISIONS)
    calls_before = sum(server.calls.values())

    async def decide(happening: Happening) -> None:
        async with concurrent:
            await decide_now(happening)

    async def decide_now(happening: Happening) -> None:
        profile = profiles[happening.npc]
        now = GAME_START + timedelta(seconds=happening.at)
        if happening.kind == "talk":
            turn = TalkTurn(player=player(happening.player), text="What news today?")
            _, usage = await router.converse(DialogueContext(profile=profile, now=now, turn=turn))
            tally.lines += 1
            by_llm = usage.provider != "offline"
            tally.lines_by_llm += by_llm
            if usage.budget_rung != "hard_cap":
                tally.lines_within_budget += 1
                tally.lines_within_budget_by_llm += by_llm
        else:
            event = event_of(happening, profiles)
            near = [event.player] if event.player else []
            result = await router.decide(NpcContext(profile=profile, now=now, events=[event], players_near=near))
            usage = result.usage
            tally.decisions[usage.provider] += 1
        tally.money += usage.cost
        tally.rungs[usage.budget_rung] += 1
        tally.rung_entered.setdefault(usage.budget_rung, round(happening.at / 60, 1))

    try:
        window: list[Happening] = []
        for happening in stream:
            if window and happening.at - window[0].at >= batch_window:
                clock.now = GAME_START.timestamp() + window[0].at
                await asyncio.gather(*(decide(item) for item in window))
                window = []
            window.append(happening)
        clock.now = GAME_START.timestamp() + window[0].at
        await asyncio.gather(*(decide(item) for item in window))
        spent = await router.governor.spent()
    finally:
        await router.aclose()
        async for key in store.scan_iter(match=f"{keys.prefix}*", count=1000):
            await store.delete(key)
    calls = sum(server.calls.values()) - calls_before
    npc_hours = len(profiles)
    return {
        "label": label,
        "llm_calls": calls,
        "llm_calls_per_npc_hour": round(calls / npc_hours, 3),
        "money": round(spent["money"], 4),
        "money_per_npc_hour": round(spent["money"] / npc_hours, 6),
        "decisions_by": dict(tally.decisions),
        "player_lines": tally.lines,
        "player_lines_llm_share": round(tally.lines_by_llm / max(1, tally.lines), 4),
        "player_lines_within_budget_llm_share": round(
            tally.lines_within_budget_by_llm / max(1, tally.lines_within_budget), 4
        ),
        "rungs": dict(tally.rungs),
        "rung_first_seen_at_game_minute": tally.rung_entered,
        "batch_window_game_seconds": batch_window,
        "budget": budget.model_dump(),
    }


async def measure(npcs: int = 1000, seed: int = 11) -> dict[str, Any]:
    rng = random.Random(seed)
    profiles = population(npcs, rng)
    stream = decision_stream(npcs, rng)
    server = ProviderServer(usage_by_size=True)
    running, serving = await serve(server)
    store = redis.Redis.from_url(Settings().redis_url)
    results: dict[str, Any] = {
        "npcs": npcs,
        "near_players": round(npcs * NEAR_SHARE),
        "game_hours": 1,
        "significant_events": sum(1 for h in stream if h.kind != "talk"),
        "player_lines": sum(1 for h in stream if h.kind == "talk"),
        "rates_per_npc_hour": {"near_players": NEAR_RATES, "everyone": EVERYONE_RATES},
        "world_news_per_hour": WORLD_NEWS_PER_HOUR,
        "prices_per_1k": {"rich": RICH_PRICES, "cheap": CHEAP_PRICES},
        "runs": [],
    }
    try:
        off = await run_once("governor off", BudgetSettings(enabled=False), server, store, profiles, stream)
        results["runs"].append(off)
        show_run(off)
        hour_money = off["money"]
        # Budgets as shares of what the hour costs ungoverned; the game hour opens the day, so a
        # day's money is what this hour may spend.
        for label, share in (("governor on, budget 80% of ungoverned", 0.8), ("governor on, budget 30%", 0.3)):
            budget = BudgetSettings(overall=BudgetLimits(money_per_day=round(hour_money * share, 4)))
            run = await run_once(label, budget, server, store, profiles, stream)
            results["runs"].append(run)
            show_run(run)
        # The batch window is the lever when dialogue alone is a call per NPC-hour: routine
        # decisions can wait for company (`llm.batch_window_ms`), a player cannot. With a short one:
        budget = BudgetSettings(overall=BudgetLimits(money_per_day=round(hour_money * 0.8, 4)))
        label = f"governor on, budget 80%, batch window {SHORT_BATCH_WINDOW_SECONDS:g} s"
        run = await run_once(label, budget, server, store, profiles, stream, SHORT_BATCH_WINDOW_SECONDS)
        results["runs"].append(run)
        show_run(run)
    finally:
        await store.aclose()
        running.should_exit = True
        await serving
    return results


def show_run(run: dict[str, Any]) -> None:
    limit = run["budget"]["overall"]["money_per_day"]
    print(f"  {run['label']}" + (f" (money/day {limit})" if limit else ""), flush=True)
    print(f"    LLM calls per NPC-hour        {run['llm_calls_per_npc_hour']}", flush=True)
    print(f"    money per NPC-hour            {run['money_per_npc_hour']}", flush=True)
    print(
        f"    player lines LLM-answered     {run['player_lines_llm_share']:.1%} "
        f"(within budget: {run['player_lines_within_budget_llm_share']:.1%})",
        flush=True,
    )
    print(f"    decisions by                  {json.dumps(run['decisions_by'])}", flush=True)
    print(f"    rungs (first game minute)     {json.dumps(run['rung_first_seen_at_game_minute'])}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npcs", type=int, default=1000)
    parser.add_argument("--out", help="also write the figures as JSON here")
    arguments = parser.parse_args(argv)
    print(f"command: {shlex.join(['python', '-m', 'benchmarks.llm_budget', *sys.argv[1:]])}", flush=True)
    results = asyncio.run(measure(arguments.npcs))
    if arguments.out:
        with open(arguments.out, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
