"""kill -9 of the Redis primary under live calls: the Sentinels promote the replica and the pool follows.

Real redis-server processes on loopback (a primary, a replica, three Sentinels: tests/redis/sentinels.py)
and real agents given the Sentinel URL (docs/redis.md, "High availability").
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis.sentinels import SERVICE, SentinelGroup, lone_sentinel, sentinel_group
from tests.redis.servers import agent_id_of, client_at, start_agents, stop_all
from tests.support.procs import AgentProcess, free_port
from tests.support.waits import until, wait_until
from voice_agent.store import keys
from voice_operator.pools.load import RedisUnavailable, read_load, read_pool_load
from voice_operator.redis_clients import RedisClients

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-sentinel")]

# The Sentinels' down-after (1 s) plus their election and the agents' reconnect backoff (at most 1 s),
# with room for a loaded machine; bench/redis_failover.py measures the real figure.
RECOVERY_S = 20.0


@pytest.fixture
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SentinelGroup, list[AgentProcess]]]:
    tmp = tmp_path_factory.mktemp("sentinel")
    with sentinel_group(tmp / "redis") as redis_group:
        agents = start_agents(tmp, redis_group, 2, prefix="ha", ready_s=60)  # type: ignore[arg-type]
        try:
            yield redis_group, agents
        finally:
            stop_all(agents)


def stored(redis_group: SentinelGroup, session_id: str) -> dict[str, str]:
    client = redis_group.client()
    try:
        return dict(client.hgetall(keys.session_key("default", session_id)))
    finally:
        client.close()


def history(redis_group: SentinelGroup, session_id: str) -> list[dict[str, object]]:
    data = stored(redis_group, session_id).get("data")
    return list(json.loads(data)["history"]) if data else []


async def create(agent: AgentProcess) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.post(agent.url + "/v2/sessions")


async def test_primary_killed_during_live_calls_pool_recovers_and_loses_no_acknowledged_record(
    group: tuple[SentinelGroup, list[AgentProcess]],
) -> None:
    redis_group, agents = group
    acknowledged = []
    for i in range(6):
        resp = await create(agents[i % 2])
        assert resp.status_code == 201, resp.text
        acknowledged.append(resp.json())
    session = acknowledged[0]
    owner = next(a for a in agents if agent_id_of(a) == session["owner"])
    other = next(a for a in agents if a is not owner)
    call = client_at(owner, session)
    operator = RedisClients(timeout_s=1.0)
    try:
        await call.connect()
        await call.wait_media()
        await call.send({"type": "text", "text": "remember the word pineapple"})
        await call.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        await asyncio.to_thread(
            wait_until, lambda: len(history(redis_group, session["id"])) == 2, 20.0, "turn persisted"
        )
        assert len((await read_pool_load(operator.get(redis_group.url), "default")).live) == 2
        old_port = redis_group.kill_primary()

        # The call keeps its audio: a question asked while Redis has no primary is answered aloud.
        mark, asked = len(call.events), time.monotonic()
        await call.send({"type": "text", "text": "what time is it"})
        reply = await call.wait_for(
            lambda e: e["type"] == "ai_response" and e["final"], timeout=30, after=mark
        )
        assert reply["text"]
        await call.wait_voiced(10, after=asked)

        # Allocation comes back once the replica is promoted; the operator's metric too.
        await until(lambda: redis_group.primary_port() not in (None, old_port), RECOVERY_S, "promotion")

        async def allocates() -> bool:
            return (await create(agents[0])).status_code == 201

        await until(allocates, RECOVERY_S, "allocation after the failover", interval=0.2)

        async def metric_back() -> bool:
            try:
                load = await read_pool_load(operator.get(redis_group.url), "default")
            except RedisUnavailable:
                return False
            return len(load.live) == 2

        await until(metric_back, RECOVERY_S, "operator's load after the failover", interval=0.2)

        # Nothing acknowledged before the kill is missing: every created session and the saved turn.
        for created in acknowledged:
            record = stored(redis_group, created["id"])
            assert record.get("data"), f"session {created['id']} lost in the failover"
            assert record["owner"] == created["owner"]
        contents = [m["content"] for m in history(redis_group, session["id"])]
        assert contents[:1] == ["remember the word pineapple"]
        # The turn asked during the outage is written back once a primary is there.
        await asyncio.to_thread(
            wait_until, lambda: len(history(redis_group, session["id"])) == 4, 20.0, "outage turn written"
        )
    finally:
        await call.close()
        await operator.close()

    # Relay after the promotion: a socket on the agent that does not own the session.
    resp = await create(agents[0])
    fresh = resp.json()
    fresh_owner = next(a for a in agents if agent_id_of(a) == fresh["owner"])
    relayed = client_at(next(a for a in agents if a is not fresh_owner), fresh)
    try:
        await relayed.connect(negotiate=False)
        await relayed.wait_for(lambda e: e["type"] == "session")
        await relayed.send({"type": "text", "text": "hello there"})
        await relayed.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
    finally:
        await relayed.close()

    # Resume after the promotion: the owner of the first call dies, its session moves with history.
    owner.proc.send_signal(signal.SIGKILL)
    owner.proc.wait(10)
    again = client_at(other, session)
    try:
        await again.connect(negotiate=False)
        resumed = await again.wait_for(lambda e: e["type"] == "session", timeout=10)
        assert resumed["session"]["owner"] == agent_id_of(other)
        assert resumed["session"]["history"][0]["content"] == "remember the word pineapple"
    finally:
        await again.close()


# A group of its own (xdist joins it to the module's): it runs beside the failover test, not after it.
@pytest.mark.xdist_group("unreachable")
async def test_a_sentinel_naming_an_unreachable_primary_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here
    with lone_sentinel(tmp_path / "sentinel", monitor_port=dead) as sentinel:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0"
        agent = AgentProcess({"REDIS_URL": url, "VOICE_STT_DECODERS": "1"}, tmp_path / "agent.log")
        operator = RedisClients(timeout_s=1.0)
        try:
            agent.wait_ready(30)
            answers: list[dict[str, Any]] = []
            async with httpx.AsyncClient(timeout=5) as http:  # every answer bounded: no hang

                async def names_the_primary() -> bool:
                    answers.append((await http.get(agent.url + "/health")).json())
                    return f"127.0.0.1:{dead}" in (answers[-1]["redis"].get("error") or "")

                # A loaded agent's first probe may time out before the Sentinel has answered; the
                # error names the primary once the agent has tried it (its heartbeat, every second).
                await until(names_the_primary, 10.0, "/health naming the unreachable primary", interval=0.5)
                created = await http.post(agent.url + "/v2/sessions")
            assert all(a["status"] == "degraded" and not a["redis"]["healthy"] for a in answers), answers
            assert SERVICE in answers[-1]["redis"]["error"]
            assert created.status_code == 503

            # The pool's status says the same: its RedisUnavailable condition carries this message.
            with pytest.raises(
                RedisUnavailable, match=f"cannot read session load from Redis: .*127.0.0.1:{dead}"
            ):
                async with asyncio.timeout(5):
                    await read_load(operator, "voicepool", "pool", url)
        finally:
            await operator.close()
            agent.stop()
