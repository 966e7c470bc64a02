"""The benchmark harness on a tiny world: it measures what it says, counts faults as figures
instead of hiding them, and leaves no process behind when it is stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.measure import ProcessUse, percentile, process_use, until_done
from benchmarks.pipeline import Driver, PipelineStack
from benchmarks.run import commit, main, parse, rss_growth, rss_growth_over_second_half
from tests.processes import ServerProcess

REPOSITORY = Path(__file__).resolve().parents[2]


async def test_a_tiny_run_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    arguments = parse(
        [
            "--npcs",
            "6",
            "--rates",
            "2",
            "--step-seconds",
            "3",
            "--drain-seconds",
            "60",
            "--signals-per-workflow",
            "3",
            "--talk-rate",
            "1",
            "--workers",
            "2",
            "--apis",
            "2",
            "--soak",
            "0.05",
            "--soak-sample-seconds",
            "1",
            "--world-npcs",
            "20",
            "--out",
            str(out),
        ]
    )

    assert await main(arguments) == out

    report = json.loads(out.read_text())
    assert report["raw"]["signals"] == 18 and report["raw"]["signals_processed_per_second"] > 0
    budget_runs = report["llm_budget"]["runs"]
    assert [run["label"].split(",")[0] for run in budget_runs] == ["governor off", *["governor on"] * 3]
    assert all(
        run["llm_calls"] > 0 and run["player_lines"] == report["llm_budget"]["player_lines"] for run in budget_runs
    )
    pipeline = report["pipeline"]
    step = pipeline["steps"]["r2"]
    assert step["events_sent"] == 6 and step["event_answers"] == {"202": 6}
    # Every event found in the decision that handled it, and each decision's action leased.
    assert step["processed_total"] == 6 and step["unprocessed_after_drain"] == 0
    assert step["event_to_decision"]["count"] == 6
    assert step["event_to_action_leasable"]["count"] + step["events_whose_decision_queued_no_action"] == 6
    assert step["actions_not_leased"] == 0
    assert step["talk"]["sent"] == 3 and step["talk"]["answered"] == 3
    # Where each answered line waited, found in its NPC's history (no NPC of six continued as new).
    waits = step["talk"]["waits"]
    assert {part: summary["count"] for part, summary in waits.items()} == {
        "until_scheduled": 3,
        "scheduled_to_started": 3,
        "in_the_worker": 3,
    }
    assert waits["in_the_worker"]["p50_ms"] > 0 and waits["scheduled_to_started"]["p50_ms"] >= 0
    assert set(step["cpu_ms_per_decision"]) == {
        "temporal",
        "redis",
        "worker-0",
        "worker-1",
        "api-0",
        "api-1",
        "load-generator",
    }
    assert step["cpu_ms_per_decision"]["temporal"] > 0
    history = pipeline["history"]
    assert history["history_events_per_decision"] > 0
    # Every event of the sampled histories is in the breakdown (each figure rounded to 0.01).
    by_type = history["per_decision_by_type"]
    assert abs(sum(by_type.values()) - history["history_events_per_decision"]) <= 0.05 + 0.005 * len(by_type)
    assert by_type["WORKFLOW_EXECUTION_SIGNALED"] > 0 and by_type["WORKFLOW_TASK_COMPLETED"] > 0
    # The cost of the steps' decisions: the runs' start (before the steps) is not in it.
    assert "WORKFLOW_EXECUTION_STARTED" not in by_type and history["decisions"] > 0
    assert pipeline["dead_processes"] == [] and step["query_failures"] == 0
    soak = pipeline["soak"]
    assert len(soak["samples"]) >= 2 and set(soak["rss_growth_mib_per_hour"]) == set(step["rss_mib"])
    assert set(soak["rss_growth_mib_per_hour_second_half"]) <= set(step["rss_mib"])
    # Each sample also says whether the pipeline still answered: its events and players' lines.
    assert all(sum(sample["event_answers"].values()) == 2 for sample in soak["samples"])
    assert all(sample["talk_answered"].endswith(" of 1") for sample in soak["samples"])
    # And the lines of the whole soak together.
    assert soak["talk_answered"] == f"{soak['talk_latency']['count']} of {len(soak['samples'])}"
    cycles = report["world_cycles"]
    assert cycles["npcs"] == 20
    assert all(
        cycles[system]["activities_per_cycle"] >= 2 and cycles[system]["wall_ms_median"] > 0
        for system in ("economy", "politics", "environment", "quests")
    )
    # One world event to every NPC: each signalled and each remembering it.
    spread = report["fanout"]
    assert spread["recipients_answered"] == 6 and spread["delivered"] == 6 and spread["npcs_processed"] == 6
    assert spread["recipients"]["npcs_found_directory"] == 2  # bench_0 and bench_5 of six over five maps


async def test_answers_the_api_does_not_give_are_counted_not_hidden(tmp_path: Path) -> None:
    stack = PipelineStack(tmp_path, workers=1, apis=1)
    driver = Driver(stack, npcs=1, timeout=1)
    try:
        stack.start()
        await driver.register_all()
        stack.worker_processes[0].freeze()
        with pytest.raises(TimeoutError):
            await driver.wait_until_npcs_answer(timeout=2)
        stack.worker_processes[0].thaw()
        await driver.wait_until_npcs_answer()
        await driver.read_decisions(["bench_nobody"])  # no such NPC: its query fails
        assert driver.ledger.query_failures == 1
        await driver.read_decisions(driver.npc_ids, deadline=time.monotonic() - 1)  # too late: nothing asked
        assert driver.ledger.decisions == {}
        await driver.read_decisions(driver.npc_ids)
        assert set(driver.ledger.decisions) == {"bench_0"}

        api = stack.api_processes[0]
        api.freeze()
        await driver.offer("frozen", rate=1, seconds=1, talk_rate=1)
        assert [talk.status for talk in driver.ledger.talks] == ["no answer"]
        api.thaw()

        api.kill()
        await driver.offer("killed", rate=1, seconds=1, talk_rate=1)
        assert [event.status for event in driver.ledger.events.values()] == ["connection", "connection"]
        assert driver.ledger.talks[-1].status == "connection"
        with pytest.raises(RuntimeError, match="registration answers"):
            await driver.register_all()
        with pytest.raises(RuntimeError, match="exited"):
            await driver.wait_until_npcs_answer()
        stop = asyncio.Event()
        bridge = asyncio.create_task(driver.play_the_bridge(stop))
        while driver.ledger.bridge_errors == 0:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(bridge, 10)
    finally:
        await driver.aclose()
        stack.stop()


async def test_history_per_decision_counts_every_run_of_an_npc(tmp_path: Path) -> None:
    """An NPC that continued as new: the runs before the latest count too (they hold most of its
    decisions), so one run's start-up cost does not pass for the cost of a decision."""
    stack = PipelineStack(tmp_path, workers=1, apis=1)
    driver = Driver(stack, npcs=1, timeout=30)
    try:
        stack.start()
        await driver.register_all()
        await driver.wait_until_npcs_answer()
        handle = (await driver.temporal()).get_workflow_handle("npc-bench_0")
        while (
            not (latest := await handle.fetch_history())
            .events[0]
            .workflow_execution_started_event_attributes.continued_execution_run_id
        ):
            await driver.offer("busy", rate=20, seconds=2, talk_rate=0)

        history = await driver.history_per_decision(1)

        assert history["per_decision_by_type"]["WORKFLOW_EXECUTION_CONTINUED_AS_NEW"] > 0
        assert history["history_events"] > len(latest.events)
    finally:
        await driver.aclose()
        stack.stop()


async def test_waiting_ends_when_a_process_it_depends_on_exits(tmp_path: Path) -> None:
    exits = ServerProcess(
        "exits", lambda _: ([sys.executable, "-c", "raise SystemExit(3)"], {}), 0, tmp_path / "exits.log"
    )
    exits.start()
    with pytest.raises(RuntimeError, match=r"exits \(exit 3"):
        await until_done(asyncio.Event().wait(), [exits])


async def test_waiting_ends_when_time_runs_out() -> None:
    with pytest.raises(TimeoutError):
        await until_done(asyncio.Event().wait(), [], timeout=0.1)


def test_a_process_that_is_gone_uses_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert process_use(gone.pid) == ProcessUse(cpu_seconds=0, rss_mib=0)


def test_a_process_counts_with_its_children_unless_asked_alone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        alone, with_children = process_use(os.getpid(), descendants=False), process_use(os.getpid())
        assert 0 < alone.rss_mib < with_children.rss_mib
    finally:
        child.communicate(b"")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([], 0.5)) == (50.0, 99.0, None)


def test_rss_growth_is_a_fit_in_mib_per_hour_and_the_second_half_shows_a_level() -> None:
    def sample(minute: float, worker: int, api: int) -> dict:
        return {"minute": minute, "rss_mib": {"worker-0": worker, "api-0": api}}

    # The worker grows 1 MiB a minute, then levels off; the API never grows.
    samples = [
        sample(0, 300, 200),
        sample(10, 310, 200),
        sample(20, 320, 200),
        sample(30, 320, 200),
        sample(40, 320, 200),
    ]

    assert rss_growth(samples[:3]) == {"worker-0": 60, "api-0": 0}
    assert rss_growth(samples)["worker-0"] > 0
    assert rss_growth_over_second_half(samples) == {"worker-0": 0, "api-0": 0}
    assert rss_growth(samples[:1]) == {}  # one sample says nothing about growth


def test_the_commit_is_unknown_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert commit() == "unknown"


def test_sigterm_stops_every_process_the_benchmark_started(tmp_path: Path) -> None:
    bench = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.run", "--npcs", "5", "--out", str(tmp_path / "figures.json")],
        cwd=REPOSITORY,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(started_under(tmp_path)) < 2:  # the benchmark and the raw baseline's dev server
            assert time.monotonic() < deadline and bench.poll() is None
            time.sleep(0.1)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 143
    finally:
        bench.kill()
    assert started_under(tmp_path) == []


def started_under(directory: Path) -> list[int]:
    """Processes that inherited TMPDIR=`directory`: the benchmark's servers and workers."""
    marker = f"TMPDIR={directory}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and entry.name != str(os.getpid())
                and marker in (entry / "environ").read_bytes() + b"\0"
            ):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found
