"""The shared fixtures reach real servers and isolate what they touch."""

import aiomysql
from temporalio import workflow
from temporalio.worker import Worker


@workflow.defn(sandboxed=False)
class EchoWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return text


async def test_redis_fixture_is_prefixed(redis_client, keys):
    await redis_client.set(keys.npc("probe"), "1")
    assert await redis_client.get(keys.npc("probe")) == "1"
    assert keys.npc("probe").startswith(keys.prefix)


async def test_mariadb_fixture_has_own_database(mariadb):
    connection = await aiomysql.connect(**mariadb)
    async with connection.cursor() as cursor:
        await cursor.execute("SELECT DATABASE()")
        assert (await cursor.fetchone())[0] == mariadb["db"]
    connection.close()


async def test_time_skipping_env_runs_workflows(time_skipping_env, task_queue):
    async with Worker(time_skipping_env.client, task_queue=task_queue, workflows=[EchoWorkflow]):
        result = await time_skipping_env.client.execute_workflow(
            EchoWorkflow.run, "hello", id=f"echo-{task_queue}", task_queue=task_queue
        )
    assert result == "hello"
