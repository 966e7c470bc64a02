"""`GET /ai/llm/budget` and `/metrics` show each tier's rung of the budget ladder, since when and why."""

from __future__ import annotations

from aiworld.config import BudgetLimits, BudgetSettings, LlmSettings
from aiworld.llm.governor import BudgetGovernor
from api.app import create_app
from tests.api.conftest import API_KEYS, api_settings, open_api

MONEY_PER_DAY = 10.0


async def test_the_budget_endpoint_and_metrics_show_the_rung_and_the_hard_cap(dev_env, redis_client, keys, task_queue):
    budget = BudgetSettings(overall=BudgetLimits(money_per_day=MONEY_PER_DAY))
    settings = api_settings(keys, task_queue).model_copy(update={"llm": LlmSettings(budget=budget)})
    governor = BudgetGovernor(budget, redis_client, keys)
    app = create_app(settings, client=dev_env.client, store=redis_client)
    async with app.router.lifespan_context(app), await open_api(app) as http:
        assert (await http.get("/ai/llm/budget")).status_code == 401
        http.headers["X-API-Key"] = API_KEYS[0]

        calm = (await http.get("/ai/llm/budget")).json()
        assert (calm["offline"], calm["message"], calm["ladder"]["routine"]["rung"]) == (
            False,
            "within budget",
            "normal",
        )

        reservation = await governor.reserve("routine", 500, 9.5)
        await governor.settle(reservation, 400, 9.2)
        near = (await http.get("/ai/llm/budget")).json()
        routine = near["ladder"]["routine"]
        assert (routine["rung"], routine["level"], routine["pressure"]) == ("offline_below_importance", 4, 0.92)
        assert routine["why"] == "all tiers: money/day at 92% of 10" and routine["since"]
        assert near["ladder"]["dialogue"]["rung"] == "offline_below_importance"  # the overall budget binds it too
        assert near["spend"]["tiers"]["routine"] == {"calls": 1.0, "tokens": 400.0, "money": 9.2}
        assert near["spend"]["tiers"]["dialogue"] == {"calls": 0.0, "tokens": 0.0, "money": 0.0}
        assert not near["offline"] and "ladder is in use" in near["message"]

        reservation = await governor.reserve("dialogue", 100, 0.8)
        await governor.settle(reservation, 100, 0.8)
        capped = (await http.get("/ai/llm/budget")).json()
        assert capped["offline"] and "routine" in capped["hard_capped_tiers"]
        assert capped["message"].startswith("hard cap reached for") and "offline policy" in capped["message"]
        assert [(c["tier"], c["rung"]) for c in capped["changes"] if c["tier"] == "routine"][:2] == [
            ("routine", "hard_cap"),
            ("routine", "offline_below_importance"),
        ]

        metrics = (await http.get("/metrics")).text
        assert 'aiworld_llm_budget_rung{tier="routine"} 5.0' in metrics
        assert 'aiworld_llm_budget_pressure{tier="routine"} 1.0' in metrics
        assert 'aiworld_llm_budget_rung_since_seconds{tier="routine"}' in metrics
