"""Three agent processes on one redis-server behave as one service: allocation and signaling relay."""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.redis.servers import (
    RedisServer,
    agent_id_of,
    client_at,
    owned_session,
    redis_server,
    start_agents,
    stop_all,
)
from tests.support import prom
from tests.support.procs import AgentProcess
from tests.support.speech import overlap, synth
from tests.support.waits import until, wait_until
from voice_agent.store import keys

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-cluster")]

CAPACITY = 10


class Cluster:
    def __init__(self, server: RedisServer, agents: list[AgentProcess]) -> None:
        self.server = server
        self.agents = agents
        self.ids = {agent_id_of(a): a for a in agents}

    def loads(self) -> dict[str, int]:
        rows: Any = self.server.client().zrange(keys.agents_key("default"), 0, -1, withscores=True)
        return {str(k): int(v) for k, v in rows}


def active(agent: AgentProcess) -> int:
    return int(httpx.get(agent.url + "/health").json()["active_sessions"])


def scrape(agent: AgentProcess) -> str:
    return httpx.get(agent.url + "/metrics").text


async def tasks(agent: AgentProcess) -> float:
    """The agent's live asyncio tasks."""
    return (await prom.scrape(agent.url))["voice_event_loop_tasks"]


def has_active(agent: AgentProcess, count: int) -> bool:
    return active(agent) == count


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    with redis_server(tmp / "redis") as server:
        agents = start_agents(
            tmp,
            server,
            3,
            voice_max_sessions=str(CAPACITY),
            voice_reconnect_grace_s="2",
            voice_sessions_per_ip_per_min="0",  # one test client makes all the requests
        )
        try:
            yield Cluster(server, agents)
        finally:
            stop_all(agents)


async def test_200_concurrent_creates_never_overallocate(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=30) as http:

        async def create(i: int) -> httpx.Response:
            return await http.post(cluster.agents[i % 3].url + "/v2/sessions")

        responses = await asyncio.gather(*(create(i) for i in range(200)))
        created = [r.json() for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code != 201]
        try:
            assert len(created) == 3 * CAPACITY, collections.Counter(r.status_code for r in responses)
            assert {r.status_code for r in refused} == {503}
            assert all(int(r.headers["retry-after"]) > 0 for r in refused)
            assert all("capacity" in r.json()["detail"] for r in refused)
            per_owner = collections.Counter(s["owner"] for s in created)
            assert per_owner == {agent_id: CAPACITY for agent_id in cluster.ids}, per_owner
            assert cluster.loads() == {agent_id: CAPACITY for agent_id in cluster.ids}
            # Each owner started the calls placed on it, wherever the POST landed.
            for agent in cluster.agents:
                wait_until(functools.partial(has_active, agent, CAPACITY), what="owners running their calls")
            assert (await http.get(cluster.agents[0].url + "/ready")).status_code == 503
        finally:
            # Ending a session through any agent ends it on its owner.
            urls = [cluster.agents[i % 3].url + f"/v2/sessions/{s['id']}" for i, s in enumerate(created)]
            ends = await asyncio.gather(*(http.delete(url) for url in urls))
        assert [r.status_code for r in ends] == [204] * len(created)
        assert cluster.loads() == {agent_id: 0 for agent_id in cluster.ids}
        for agent in cluster.agents:
            wait_until(functools.partial(has_active, agent, 0), what="calls ended")


async def test_relayed_signaling_completes_a_real_webrtc_call(cluster: Cluster) -> None:
    session, owner, edge = await owned_session(cluster.agents)
    idle = {a.url: await tasks(a) for a in (owner, edge)}
    client = client_at(edge, session)
    try:
        await client.connect()  # WebSocket on the edge; offer/answer/ICE go through Redis to the owner
        first = await client.wait_for(lambda e: e["type"] == "session")
        assert first["session"]["owner"] == session["owner"]
        await client.wait_media()  # media flows client <-> owner directly
        pcm, rate = synth("hello, what time is it")
        client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=30)
        assert overlap("time is it", final["text"]) >= 0.66, final
        reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        assert reply["text"]
        await client.wait_for(lambda e: e["type"] == "metrics", timeout=30)
        assert client.recording.voiced_frames_after(reply["_at"] - 1.0) > 10, "reply audio from the owner"

        mark = len(client.events)
        await client.send({"type": "ping", "ts": 1})
        await client.wait_for(lambda e: e["type"] == "pong", after=mark)

        # A second relayed socket for the session replaces the first (4409), across agents too.
        second = client_at(edge, session)
        try:
            await second.connect(negotiate=False)
            await second.wait_for(lambda e: e["type"] == "session")
            assert await client.wait_closed(10) == 4409
        finally:
            await second.close()
    finally:
        await client.close()

    async with httpx.AsyncClient(timeout=10) as http:
        edge_metrics = (await http.get(edge.url + "/metrics")).text
        owner_metrics = (await http.get(owner.url + "/metrics")).text
    assert 'voice_redis_relayed_messages_total{kind="ev"}' in edge_metrics
    assert 'voice_redis_relayed_messages_total{kind="msg"}' in owner_metrics
    assert "voice_redis_relay_seconds_bucket" in owner_metrics
    # The edge relayed; the owner ran the call: after the client leaves, the owner suspends it.
    await asyncio.to_thread(wait_until, lambda: active(owner) == 0, 10.0, "call suspended")
    assert cluster.loads()[session["owner"]] == 0
    for agent, role in ((owner, "owner"), (edge, "edge")):  # no link outlives its connection
        metrics_text = await asyncio.to_thread(scrape, agent)
        assert f'voice_redis_relay_links{{role="{role}"}} 0.0' in metrics_text

        async def back_to_idle(a: AgentProcess = agent) -> bool:
            return await tasks(a) <= idle[a.url]

        await until(back_to_idle, timeout=10.0, what=f"{role}'s asyncio tasks back to idle")
    async with httpx.AsyncClient(timeout=10) as http:
        stored = (await http.get(edge.url + f"/v2/sessions/{session['id']}")).json()
    assert stored["turns"] == 1 and stored["status"] == "disconnected"
