"""Redis goes away mid-call and comes back: the call keeps talking, new sessions get a clear 503,
and everything the client saw meanwhile is written back (with AOF, and even when Redis lost all data)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.redis.servers import RedisServer, agent_id_of, redis_server, start_agents, stop_all
from tests.support.procs import AgentProcess
from tests.support.waits import wait_until
from voice_agent.store import keys
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-outage")]


@pytest.fixture(params=[True, False], ids=["aof", "no-persistence"])
def single(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RedisServer, AgentProcess]]:
    tmp = tmp_path_factory.mktemp("outage")
    with redis_server(tmp / "redis", aof=request.param) as server:
        agents = start_agents(tmp, server, 1, prefix="out")
        try:
            yield server, agents[0]
        finally:
            stop_all(agents)


def history_len(server: RedisServer, session_id: str) -> int:
    try:
        data = server.client().hget(keys.session_key("default", session_id), "data")
    except Exception:
        return -1
    return len(json.loads(data)["history"]) if data else 0


def redis_health(agent: AgentProcess) -> tuple[int, bool]:
    resp = httpx.get(agent.url + "/health", timeout=5)
    return resp.status_code, bool(resp.json()["redis"]["healthy"])


async def test_redis_restart_mid_call(single: tuple[RedisServer, AgentProcess]) -> None:
    server, agent = single
    async with httpx.AsyncClient(timeout=10) as http:
        session = (await http.post(agent.url + "/v2/sessions")).json()
        client = VoiceClient(agent.url)
        client.session = session
        try:
            await client.connect()
            await client.wait_media()
            await client.send({"type": "text", "text": "first question"})
            await asyncio.to_thread(wait_until, lambda: history_len(server, session["id"]) == 2, 20.0)

            server.stop()
            await asyncio.to_thread(wait_until, lambda: redis_health(agent) == (200, False), 10.0, "degraded")
            refused = await http.post(agent.url + "/v2/sessions")
            assert refused.status_code == 503
            assert "redis" in refused.json()["detail"] and int(refused.headers["retry-after"]) >= 1

            mark = len(client.events)  # the live call does not need Redis to talk
            await client.send({"type": "text", "text": "second question"})
            await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30, after=mark)
            await asyncio.to_thread(
                wait_until, lambda: client.recording.voiced_frames_after(client.events[mark]["_at"]) > 10
            )

            server.start()
            await asyncio.to_thread(wait_until, lambda: redis_health(agent) == (200, True), 10.0, "healthy")
            await asyncio.to_thread(
                wait_until, lambda: history_len(server, session["id"]) == 4, 20.0, "written back"
            )
        finally:
            await client.close()

        assert server.client().hget(keys.session_key("default", session["id"]), "owner") == agent_id_of(agent)
        registered = lambda: agent_id_of(agent) in server.client().zrange(keys.agents_key("default"), 0, -1)  # noqa: E731
        await asyncio.to_thread(wait_until, registered, 10.0, "re-registered")
        assert (await http.post(agent.url + "/v2/sessions")).status_code == 201
