"""SIGTERM drain: the agent goes unready, takes no new sessions, keeps its live call, then exits cleanly.

These agents do not move calls (`VOICE_DRAIN_MIGRATE=false`): the calls stay until they end or the
drain times out. Moving them is test_migrate.py."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.redis.servers import (
    RedisServer,
    agent_id_of,
    client_at,
    owned_session,
    running_pool,
)
from tests.support.procs import AgentProcess
from tests.support.waits import until, wait_until
from voice_agent.protocol.signaling import CloseAction
from voice_agent.store import keys
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-drain")]


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, list[AgentProcess]]]:
    tmp = tmp_path_factory.mktemp("drain")
    with running_pool(tmp, 2, "dr", voice_drain_timeout_s="60", voice_drain_migrate="false") as pool:
        yield pool


async def test_sigterm_drains_keeps_live_call_refuses_new_sessions_and_exits_clean(
    pair: tuple[RedisServer, list[AgentProcess]],
) -> None:
    server, (front, draining) = pair
    draining_id = agent_id_of(draining)
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(2):  # least-loaded allocation reaches the second agent within two creates
            session = (await http.post(front.url + "/v2/sessions")).json()
            if session["owner"] == draining_id:
                break
        assert session["owner"] == draining_id

        client = client_at(draining, session)
        try:
            await client.connect()
            await client.wait_media()

            draining.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(
                wait_until, lambda: httpx.get(draining.url + "/ready").status_code == 503, 10.0, "unready"
            )
            assert "draining" in (await http.get(draining.url + "/ready")).json()["reasons"]
            agent_hash = server.client().hgetall(keys.agent_key("default", draining_id))
            assert agent_hash["draining"] == "1"

            refused = await http.post(draining.url + "/v2/sessions")
            assert refused.status_code == 503 and "draining" in refused.json()["detail"]
            assert int(refused.headers["retry-after"]) >= 1
            for _ in range(3):  # any agent may answer; none places a session on the draining one
                created = await http.post(front.url + "/v2/sessions")
                assert created.status_code == 201 and created.json()["owner"] != draining_id

            mark = len(client.events)
            await client.send({"type": "text", "text": "are you still there"})
            await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30, after=mark)
            assert draining.proc.poll() is None, "the live call keeps its agent up"

            await client.send({"type": "end"})
            assert await client.wait_closed(10) is not None
        finally:
            await client.close()

    code = await asyncio.to_thread(draining.proc.wait, 20)
    assert code == 0, draining.logs()[-3000:]
    assert draining_id not in server.client().zrange(keys.agents_key("default"), 0, -1), "deregistered"
    assert "drained" in draining.logs()


@pytest.fixture
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, list[AgentProcess]]]:
    """Two agents whose drain gives live calls a second, as a rollout with a short grace would."""
    tmp = tmp_path_factory.mktemp("drain-quick")
    with running_pool(tmp, 2, "dq", voice_drain_timeout_s="1", voice_drain_migrate="false") as pool:
        yield pool


async def test_a_call_suspended_at_the_drain_timeout_is_told_to_reconnect_and_resumes_elsewhere(
    quick: tuple[RedisServer, list[AgentProcess]],
) -> None:
    """The socket does not say "ended" (1000) for a session that goes on: it says reconnect (1012)."""
    _, agents = quick
    session, owner, edge = await owned_session(agents)
    client = VoiceClient(edge.url, resume=True)  # relayed: its socket outlives the owner
    client.session = session
    try:
        await client.connect(negotiate=False)
        await client.send({"type": "text", "text": "remember the word pineapple"})
        await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)

        owner.proc.send_signal(signal.SIGTERM)
        await until(lambda: bool(client.closes), 20.0, "the suspended call's close")
        close = client.closes[0]
        assert close.code == 1012 and close.action is CloseAction.RECONNECT, client.closes
        told = [e for e in client.events if e["type"] == "error" and e["_at"] <= close.at]
        assert told and told[-1]["code"] == "going_away", told

        # The first attempt may come while the draining owner still holds the session (it is told
        # 1013, try again); the resume that counts is the one on the agent the client reconnects to.
        here = agent_id_of(edge)

        def resumed() -> list[dict[str, Any]]:
            return [
                e
                for e in client.events
                if e["type"] == "session" and e["_at"] > close.at and e["session"]["owner"] == here
            ]

        await until(lambda: bool(resumed()), 30.0, "the session resumed where the client reconnected")
        assert resumed()[0]["session"]["history"][0]["content"] == "remember the word pineapple"
        assert all(c.action is not CloseAction.STOP for c in client.closes), client.closes
    finally:
        await client.close()
    assert await asyncio.to_thread(owner.proc.wait, 20) == 0
