"""Drain by migration: a draining agent moves each live call, at its next turn boundary, to an agent of
the pool with room; the client reconnects at once and the call goes on there, history included.

The clients' sockets go to the agent that is not drained (relayed to the owner while it runs the
call), as a Service would send a reconnect to an agent that is ready: docs/deploy.md, "Rolling a pool".
"""

from __future__ import annotations

import asyncio
import signal
import time
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
from tests.support.prom import scrape
from tests.support.waits import until
from voice_agent.protocol.signaling import CloseAction
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-migrate")]

DRAIN_TIMEOUT_S = 60.0
# "Well before the drain timeout": the owner exits once its calls are gone, not when the timeout says.
EXIT_WITHIN_S = 15.0
# Two agents loading their speech models at once on a busy machine.
AGENT_START_S = 90.0


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProcess]]:
    tmp = tmp_path_factory.mktemp("migrate")
    with running_pool(tmp, 2, "mg", AGENT_START_S, voice_drain_timeout_s=str(DRAIN_TIMEOUT_S)) as (_, agents):
        yield agents


def _final_reply(e: dict[str, Any]) -> bool:
    return e["type"] == "ai_response" and e["final"] is True


def _told(client: VoiceClient, code: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == "error" and e.get("code") == code]


async def _call_via(edge: AgentProcess, session: dict[str, Any]) -> VoiceClient:
    client = VoiceClient(edge.url, resume=True)
    client.session = session
    await client.connect()
    await client.wait_media(timeout=30)
    return client


async def _resumed_on(client: VoiceClient, agent_id: str, after: float) -> dict[str, Any]:
    def sessions() -> list[dict[str, Any]]:
        return [
            e["session"]
            for e in client.events
            if e["type"] == "session" and e["_at"] > after and e["session"]["owner"] == agent_id
        ]

    await until(lambda: bool(sessions()), 30.0, f"the session resumed on {agent_id}")
    return sessions()[0]


async def test_a_draining_agent_moves_an_idle_call_which_keeps_its_history_and_answers(
    pair: list[AgentProcess],
) -> None:
    session, owner, edge = await owned_session(pair)
    here = agent_id_of(edge)
    client = await _call_via(edge, session)
    try:
        await client.send({"type": "text", "text": "remember the word pineapple"})
        said = await client.wait_for(_final_reply, timeout=30)
        await client.wait_for(
            lambda e: e["type"] == "status" and e["processing"] == "listening" and e["_at"] > said["_at"], 30
        )

        sigterm = time.monotonic()
        owner.proc.send_signal(signal.SIGTERM)
        await until(lambda: bool(client.closes), 20.0, "the moved call's close")
        close = client.closes[0]
        assert close.code == 1012 and close.action is CloseAction.RECONNECT, client.closes
        assert _told(client, "session_moved") and not _told(client, "going_away"), client.events

        resumed = await _resumed_on(client, here, close.at)
        assert resumed["history"][0]["content"] == "remember the word pineapple"
        await client.wait_media(timeout=30)

        mark = len(client.events)
        await client.send({"type": "text", "text": "repeat what I said"})
        reply = await client.wait_for(_final_reply, timeout=30, after=mark)
        assert "pineapple" in reply["text"], reply
        assert all(c.action is not CloseAction.STOP for c in client.closes), client.closes

        assert await asyncio.to_thread(owner.proc.wait, EXIT_WITHIN_S) == 0, owner.logs()[-3000:]
        assert time.monotonic() - sigterm < EXIT_WITHIN_S < DRAIN_TIMEOUT_S
        assert "call moved" in owner.logs()
        metrics = await scrape(edge.url)
        assert metrics.get("voice_migration_gap_seconds_count", 0) >= 1, "the new agent timed the gap"
    finally:
        await client.close()


async def test_a_call_mid_reply_is_moved_only_once_the_reply_has_ended(pair: list[AgentProcess]) -> None:
    session, owner, edge = await owned_session(pair)
    client = await _call_via(edge, session)
    try:
        await client.send({"type": "text", "text": "tell me a story"})
        await client.wait_for(lambda e: e["type"] == "status" and e["processing"] == "speaking", timeout=30)
        owner.proc.send_signal(signal.SIGTERM)

        await until(lambda: bool(client.closes), 60.0, "the moved call's close")
        close = client.closes[0]
        before = [e for e in client.events if e["_at"] <= close.at]
        replies = [e for e in before if _final_reply(e)]
        assert replies and "robot" in replies[-1]["text"], "the story was told to its end first"
        statuses = [e["processing"] for e in before if e["type"] == "status"]
        assert statuses[-1] == "listening", statuses
        assert not [e for e in before if e["type"] == "ai_interrupted"], "the reply was not cut"
        assert _told(client, "session_moved")
        await _resumed_on(client, agent_id_of(edge), close.at)
        assert await asyncio.to_thread(owner.proc.wait, EXIT_WITHIN_S) == 0
    finally:
        await client.close()


@pytest.fixture
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, list[AgentProcess]]]:
    """Two agents of one session each, and a drain short enough to see the timeout's path."""
    tmp = tmp_path_factory.mktemp("migrate-full")
    with running_pool(tmp, 2, "mf", AGENT_START_S, voice_max_sessions="1", voice_drain_timeout_s="6") as pool:
        yield pool


async def test_with_no_room_elsewhere_the_call_stays_until_the_drain_timeout(
    full: tuple[RedisServer, list[AgentProcess]],
) -> None:
    _, agents = full
    async with httpx.AsyncClient(timeout=10) as http:
        created = [(await http.post(agents[0].url + "/v2/sessions")).json() for _ in range(2)]
    owners = {s["owner"] for s in created}
    assert len(owners) == 2, created  # one session on each agent: neither has room for another
    owner = agents[1]
    session = next(s for s in created if s["owner"] == agent_id_of(owner))
    client = client_at(owner, session)
    try:
        await client.connect()
        await client.wait_media(timeout=30)
        owner.proc.send_signal(signal.SIGTERM)
        await until(lambda: "no room elsewhere" in owner.logs(), 10.0, "the owner finding no room")
        metrics = await scrape(owner.url)
        assert metrics.get('voice_migrations_total{outcome="no_room"}') == 1
        assert not metrics.get('voice_migrations_total{outcome="moved"}')

        mark = len(client.events)
        await client.send({"type": "text", "text": "are you still there"})
        await client.wait_for(_final_reply, timeout=30, after=mark)

        code = await client.wait_closed(20)
        assert code == 1012
        assert _told(client, "going_away") and not _told(client, "session_moved"), client.events
    finally:
        await client.close()
    assert await asyncio.to_thread(owner.proc.wait, 20) == 0
