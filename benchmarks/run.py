"""`make bench`: the pipeline with many NPCs on this machine, next to raw Temporal in the same run.

    python -m benchmarks.run                  # CI-sized: 100 NPCs, 15 s steps (a few minutes)
    python -m benchmarks.run --full           # 1,000 NPCs, offered 10, 25, 50, 100 events/s
    python -m benchmarks.run --full --workers 2 --apis 2 --soak 60

1. Raw baseline: as many trivial entity workflows as NPCs on a fresh dev server (SQLite file,
   WAL, as `aiworld dev` runs it) and a worker process; signals/s processed (benchmarks/raw.py).
2. Pipeline: the embedded stack as processes (benchmarks/pipeline.py). NPCs register through
   `POST /ai/npc/register` over five maps; then, for each offered rate in turn, events go through
   `POST /ai/npc/event` for a bounded window while players talk through
   `POST /ai/player/interaction`, and the stand-in bridge leases actions. Stepping up stops once
   a rate is not sustained and the processed rate no longer grows.
3. Fan-out: one world event to every NPC through `POST /ai/world/event` (benchmarks/fanout.py).
4. Cost: history events per decision on a sample of NPCs (the decisions the steps caused, each
   run counted, registration and the first decisions left out), CPU ms per decision and RSS of each
   process from /proc; `--soak MINUTES` keeps the first rate going and samples RSS over time.
5. World cycles: the cost of one cycle of each world system at 1,000 NPCs (benchmarks/world_cycles.py).
6. Memory: recall latency p50/p99 at 100, 1,000 and the cap's number of memories per NPC on both
   search paths, and the bytes of an NPC's memory after a game month (benchmarks/memory.py).
7. LLM budget: calls and money per NPC-hour and the share of player lines an LLM answered, with
   the budget governor off and on at two budget levels (benchmarks/llm_budget.py).

Every figure is printed with the command and the machine load, and written as JSON (the path is
printed at the end). Nothing is asserted: this measures, the README quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import fanout, llm_budget, memory, raw, world_cycles
from benchmarks.measure import describe_latency, describe_load, latency_summary, machine_load
from benchmarks.pipeline import Driver, PipelineStack

SHORT = {"npcs": 100, "rates": "10,25,50,100", "step_seconds": 15, "drain_seconds": 30, "signals_per_workflow": 10}
# NPCs whose histories are read for the history figures (each run of each, back to the first).
HISTORY_SAMPLE = 20
FULL = {"npcs": 1000, "rates": "10,25,50,100", "step_seconds": 60, "drain_seconds": 120, "signals_per_workflow": 10}


def command_line() -> str:
    return shlex.join(["python", "-m", "benchmarks.run", *sys.argv[1:]])


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty.strip() else "")


def show(label: str, value: str) -> None:
    print(f"  {label:<42} {value}", flush=True)


async def run_pipeline(arguments: argparse.Namespace, directory: Path, raw_rate: float | None) -> dict[str, Any]:
    stack = PipelineStack(directory / "pipeline", workers=arguments.workers, apis=arguments.apis)
    driver = Driver(stack, arguments.npcs)
    stop_bridge = asyncio.Event()
    bridge = None
    result: dict[str, Any] = {"workers": arguments.workers, "apis": arguments.apis, "npcs": arguments.npcs}
    try:
        stack.start()
        bridge = asyncio.create_task(driver.play_the_bridge(stop_bridge))
        result["registration"] = await driver.register_all()
        show("registration", f"{result['registration']['npcs']} NPCs in {result['registration']['seconds']} s")
        await driver.wait_until_npcs_answer()
        await driver.read_decisions(driver.npc_ids)
        await driver.note_history_before(HISTORY_SAMPLE)
        result["rss_mib_at_start"] = {name: round(use.rss_mib) for name, use in stack.use().items()}
        show("RSS at start (MiB)", json.dumps(result["rss_mib_at_start"]))

        steps: dict[str, Any] = {}
        previous_rate = 0.0
        for rate in [float(r) for r in arguments.rates.split(",")]:
            name = f"r{rate:g}"
            print(
                f"\n  offered {rate:g} events/s for {arguments.step_seconds} s "
                f"(talk {arguments.talk_rate:g}/s), drain up to {arguments.drain_seconds} s",
                flush=True,
            )
            step = await driver.step(name, rate, arguments.step_seconds, arguments.talk_rate, arguments.drain_seconds)
            steps[name] = step
            print_step(step)
            if not step["sustained"] and step["processed_in_window_per_second"] < 1.1 * previous_rate:
                print("  saturated: the processed rate stopped growing; no higher rate is offered", flush=True)
                break
            previous_rate = step["processed_in_window_per_second"]
        result["steps"] = steps
        sustained = [s["offered_per_second_target"] for s in steps.values() if s["sustained"]]
        result["highest_sustained_offered_per_second"] = max(sustained, default=None)
        result["max_processed_per_second"] = max(s["processed_in_window_per_second"] for s in steps.values())
        # Below saturation the maximum is only what was offered: the ratio is then a lower bound.
        result["saturated"] = not all(s["sustained"] for s in steps.values())
        if raw_rate:
            result["pipeline_over_raw"] = round(result["max_processed_per_second"] / raw_rate, 3)

        result["history"] = await driver.history_per_decision(HISTORY_SAMPLE)
        if arguments.soak:
            result["soak"] = await soak(driver, stack, arguments)
        result["rss_mib_at_end"] = {name: round(use.rss_mib) for name, use in stack.use().items()}
        result["dead_processes"] = stack.dead()
        return result
    finally:
        stop_bridge.set()
        if bridge is not None:
            await asyncio.wait_for(bridge, 60)
        await driver.aclose()
        stack.stop()


async def soak(driver: Driver, stack: PipelineStack, arguments: argparse.Namespace) -> dict[str, Any]:
    """The first rate for MINUTES; RSS of every process sampled between offers."""
    rate = float(arguments.rates.split(",")[0])
    print(
        f"\n  soak: {rate:g} events/s for {arguments.soak:g} min, RSS every {arguments.soak_sample_seconds:g} s",
        flush=True,
    )
    began = time.monotonic()
    samples: list[dict[str, Any]] = []
    index = 0
    while time.monotonic() - began < arguments.soak * 60:
        chunk = f"soak{index}"
        await driver.offer(chunk, rate, arguments.soak_sample_seconds, arguments.talk_rate)
        minutes = (time.monotonic() - began) / 60
        rss = {name: round(use.rss_mib) for name, use in stack.use().items()}
        # Still answering as at the start? The players' lines of this sample, and the API's
        # answers to its events (their decisions are not looked up during a soak).
        talks = [talk for talk in driver.ledger.talks if talk.step == chunk]
        talk = latency_summary([talk.seconds for talk in talks if talk.status == 200])
        answers = dict(Counter(str(event.status) for event in driver.ledger.events.values() if event.step == chunk))
        samples.append(
            {
                "minute": round(minutes, 1),
                "rss_mib": rss,
                "talk_answered": f"{talk['count']} of {len(talks)}",
                "talk_latency": talk,
                "event_answers": answers,
                "load": describe_load(machine_load()),
            }
        )
        show(f"minute {minutes:.1f} RSS (MiB)", json.dumps(rss))
        show("  talk answered, latency", f"{talk['count']} of {len(talks)}, {describe_latency(talk)}")
        show("  event answers", json.dumps(answers))
        index += 1
    # The players' lines of the whole soak: a pause that comes once in ten minutes shows in one
    # sample's p99, not in the hour's.
    soaked = [talk for talk in driver.ledger.talks if talk.step.startswith("soak")]
    whole = latency_summary([talk.seconds for talk in soaked if talk.status == 200])
    show("talk over the whole soak", f"{whole['count']} of {len(soaked)} answered, {describe_latency(whole)}")
    growth = rss_growth(samples)
    show("RSS growth (MiB per hour, linear fit)", json.dumps(growth))
    second_half = rss_growth_over_second_half(samples)
    show("  over the second half only", json.dumps(second_half))
    return {
        "offered_per_second": rate,
        "minutes": arguments.soak,
        "samples": samples,
        "talk_answered": f"{whole['count']} of {len(soaked)}",
        "talk_latency": whole,
        "rss_growth_mib_per_hour": growth,
        "rss_growth_mib_per_hour_second_half": second_half,
    }


def rss_growth(samples: list[dict[str, Any]]) -> dict[str, int]:
    """MiB per hour of each process, the slope of a linear fit (nothing with fewer than 2 samples)."""
    if len(samples) < 2:
        return {}
    minutes_taken = [float(sample["minute"]) for sample in samples]
    return {
        name: round(
            statistics.linear_regression(minutes_taken, [sample["rss_mib"][name] for sample in samples]).slope * 60
        )
        for name in samples[0]["rss_mib"]
    }


def rss_growth_over_second_half(samples: list[dict[str, Any]]) -> dict[str, int]:
    """The fit over the later half of the samples: a process that levels off shows ≈0 here
    while the whole soak's fit still shows its warm-up."""
    return rss_growth(samples[len(samples) // 2 :])


TALK_WAITS = {
    "until_scheduled": "  talk: sent -> its workflow task scheduled",
    "scheduled_to_started": "  talk: scheduled -> a worker took it",
    "in_the_worker": "  talk: taken -> answered by the worker",
}


def print_step(step: dict[str, Any]) -> None:
    show(
        "offered (actual)",
        f"{step['offered_per_second']} events/s over {step['window_seconds']} s, answers {step['event_answers']}",
    )
    show(
        "processed in the window",
        f"{step['processed_in_window_per_second']} events/s ({'sustained' if step['sustained'] else 'NOT sustained'})",
    )
    show(
        "processed / unprocessed after drain",
        f"{step['processed_total']} / {step['unprocessed_after_drain']} (drain {step['drain_seconds']} s)",
    )
    show("event -> decision", describe_latency(step["event_to_decision"]))
    show("event -> action leasable", describe_latency(step["event_to_action_leasable"]))
    show("events whose decision queued no action", str(step["events_whose_decision_queued_no_action"]))
    show("POST /ai/npc/event answered", describe_latency(step["event_accept"]))
    talk = step["talk"]
    show("talk answered", f"{talk['answered']} of {talk['sent']}, answers {talk['answers']}")
    show("talk latency (answered)", describe_latency(talk["answered_latency"]))
    for part, label in TALK_WAITS.items():
        show(label, describe_latency(talk["waits"][part]))
    show("decisions (all / on these events)", f"{step['decisions']} / {step['decisions_on_these_events']}")
    show("CPU ms per decision", json.dumps(step["cpu_ms_per_decision"]))
    show("CPU % of one core", json.dumps(step["cpu_percent_of_one_core"]))
    show("RSS (MiB)", json.dumps(step["rss_mib"]))
    show("machine load before / after", f"{step['load_before']} / {step['load_after']}")
    if step["dead_processes"] or step["query_failures"]:
        show("PROBLEMS", f"dead {step['dead_processes']}, failed queries {step['query_failures']}")


async def main(arguments: argparse.Namespace) -> Path:
    report: dict[str, Any] = {
        "command": command_line(),
        "commit": commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine_at_start": machine_load(),
        "settings": {key: value for key, value in vars(arguments).items() if key != "out"},
    }
    print(
        f"command: {report['command']}\ncommit:  {report['commit']}   {report['date']}\n"
        f"machine: {describe_load(report['machine_at_start'])}",
        flush=True,
    )
    directory = Path(tempfile.mkdtemp(prefix="aiworld-bench-"))
    raw_rate = None
    if not arguments.skip_raw:
        print(
            f"\nraw Temporal: {arguments.npcs} entity workflows x {arguments.signals_per_workflow} signals, no activities",
            flush=True,
        )
        report["raw"] = await raw.measure(directory / "raw", arguments.npcs, arguments.signals_per_workflow)
        raw_rate = report["raw"]["signals_processed_per_second"]
        show("signals processed", f"{raw_rate}/s (sent at {report['raw']['signals_sent_per_second']}/s)")
        show("Temporal CPU ms per signal", str(report["raw"]["temporal_cpu_ms_per_signal"]))
        show("machine load before / after", f"{report['raw']['load_before']} / {report['raw']['load_after']}")

    print(
        f"\npipeline: {arguments.npcs} NPCs, {arguments.workers} worker process(es), {arguments.apis} API process(es), "
        "offline policy",
        flush=True,
    )
    report["pipeline"] = pipeline = await run_pipeline(arguments, directory, raw_rate)
    if not arguments.skip_world:
        print(
            f"\nworld cycles: each system's cycle in a world of {arguments.world_npcs} NPCs (benchmarks/world_cycles.py)"
        )
        report["world_cycles"] = await world_cycles.measure(npcs=arguments.world_npcs)
        world_cycles.show(report["world_cycles"])
    if not arguments.skip_fanout:
        print(f"\nfan-out: one world event to {arguments.npcs} NPCs through the event coordinator", flush=True)
        report["fanout"] = await fanout.measure(directory, arguments.npcs)
    if not arguments.skip_memory:
        print("\nmemory: recall latency by memories per NPC on both search paths; bytes after a game month", flush=True)
        report["memory"] = await memory.measure(directory / "memory")
    if not arguments.skip_llm_budget:
        print(
            f"\nLLM budget: {arguments.npcs} NPCs, {llm_budget.NEAR_SHARE:.0%} near players, one game hour, "
            "the router and governor against the tests' provider server (benchmarks/llm_budget.py)",
            flush=True,
        )
        report["llm_budget"] = await llm_budget.measure(arguments.npcs)
    report["machine_at_end"] = machine_load()

    print(f"\nsummary ({report['command']}; {describe_load(report['machine_at_end'])})")
    if raw_rate:
        show("raw Temporal", f"{raw_rate} signals/s")
    show("pipeline, highest rate sustained", f"{pipeline['highest_sustained_offered_per_second']} events/s offered")
    show("pipeline, max processed", f"{pipeline['max_processed_per_second']} events/s")
    if raw_rate:
        bound = "" if pipeline["saturated"] else " (never saturated: a lower bound)"
        show("pipeline max processed / raw", f"{pipeline['pipeline_over_raw']}x{bound}")
    history = pipeline["history"]
    show(
        "history events per decision",
        f"{history['history_events_per_decision']} "
        f"(p50 {history['history_events_per_npc_p50']} events per NPC during the steps, "
        f"{history['npcs_sampled']} NPCs)",
    )
    show(
        "  of which, per decision",
        ", ".join(
            f"{kind.lower()} {count}" for kind, count in history["per_decision_by_type"].items() if count >= 0.05
        ),
    )
    if "fanout" in report:
        spread = report["fanout"]
        show(
            f"fan-out to {spread['npcs']} NPCs: signalled / processed",
            f"{spread['seconds_until_every_npc_signalled']} s / {spread['seconds_until_every_npc_processed']} s",
        )
    show(
        "RSS start -> end (MiB)",
        json.dumps({n: f"{pipeline['rss_mib_at_start'][n]}->{v}" for n, v in pipeline["rss_mib_at_end"].items()}),
    )

    for run in report.get("llm_budget", {}).get("runs", []):
        show(
            f"LLM, {run['label']}",
            f"{run['llm_calls_per_npc_hour']} calls and {run['money_per_npc_hour']} money per NPC-hour, "
            f"{run['player_lines_llm_share']:.0%} of player lines by an LLM",
        )

    out = arguments.out or Path(".aiworld/bench") / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nfigures written to {out}")
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="1,000 NPCs and the full rate ladder")
    parser.add_argument("--npcs", type=int)
    parser.add_argument("--rates", help="offered events/s, comma-separated, ascending")
    parser.add_argument("--step-seconds", type=float, help="how long each rate is offered")
    parser.add_argument("--drain-seconds", type=float, help="how long to wait after a step for its events")
    parser.add_argument("--signals-per-workflow", type=int, help="raw baseline: signals to each workflow")
    parser.add_argument("--talk-rate", type=float, default=2.0, help="player lines per second during each step")
    parser.add_argument("--workers", type=int, default=1, help="`aiworld worker` processes")
    parser.add_argument("--apis", type=int, default=1, help="`aiworld api` processes; the load round-robins over them")
    parser.add_argument(
        "--soak", type=float, default=0, metavar="MINUTES", help="then keep the first rate going, sampling RSS"
    )
    parser.add_argument("--soak-sample-seconds", type=float, default=30, help="how often the soak samples RSS")
    parser.add_argument("--skip-raw", action="store_true", help="no raw baseline (e.g. when only scaling out)")
    parser.add_argument("--skip-world", action="store_true", help="no world-cycle costs")
    parser.add_argument("--world-npcs", type=int, default=1000, help="NPCs in the world the cycles are measured in")
    parser.add_argument("--skip-fanout", action="store_true", help="no fan-out of a world event")
    parser.add_argument("--skip-memory", action="store_true", help="no memory benchmark (benchmarks/memory.py)")
    parser.add_argument("--skip-llm-budget", action="store_true", help="no LLM budget figures")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default .aiworld/bench/<time>.json)")
    arguments = parser.parse_args(argv)
    for key, value in (FULL if arguments.full else SHORT).items():
        if getattr(arguments, key) is None:
            setattr(arguments, key, value)
    return arguments


async def until_sigterm(arguments: argparse.Namespace) -> Path:
    """`timeout` or CI cancelling the job sends SIGTERM: the run is cancelled like a task, so every
    `finally` stops its child processes with the event loop still running. (Exiting from a signal
    handler left the stack's processes running.)"""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)  # type: ignore[union-attr]
    return await main(arguments)


if __name__ == "__main__":
    try:
        asyncio.run(until_sigterm(parse()))
    except asyncio.CancelledError:
        sys.exit(143)
