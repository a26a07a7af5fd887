"""kill -9 of the agent running a call: the client reconnects elsewhere and the session resumes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator

import pytest

from tests.redis.servers import (
    RedisServer,
    agent_id_of,
    client_at,
    owned_session,
    running_pool,
)
from tests.support import waits
from tests.support.procs import AgentProcess
from tests.support.waits import wait_until
from voice_agent.pool.registry import HEARTBEAT_S
from voice_agent.store import keys

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-failover")]


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, list[AgentProcess]]]:
    tmp = tmp_path_factory.mktemp("failover")
    with running_pool(tmp, 2, "fo") as pool:
        yield pool


def stored_history(server: RedisServer, session_id: str) -> list[dict[str, object]]:
    data = server.client().hget(keys.session_key("default", session_id), "data")
    return list(json.loads(data)["history"]) if data else []


async def test_owner_killed_mid_call_session_resumes_on_another_agent_with_history(
    pair: tuple[RedisServer, list[AgentProcess]],
) -> None:
    server, agents = pair
    session, owner, survivor = await owned_session(agents)
    first = client_at(owner, session)
    await first.connect()
    await first.wait_media()
    await first.send({"type": "text", "text": "remember the word pineapple"})
    reply = await first.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
    # The reply enters the history once spoken; wait (bounded) until the saver has written it.
    await asyncio.to_thread(
        wait_until, lambda: len(stored_history(server, session["id"])) == 2, 20.0, "turn persisted"
    )

    owner.proc.send_signal(signal.SIGKILL)
    owner.proc.wait(10)
    await first.close()

    second = client_at(survivor, session)
    try:
        await second.connect(session["id"], negotiate=False)
        resumed = await second.wait_for(lambda e: e["type"] == "session", timeout=10)
        record = resumed["session"]
        assert record["id"] == session["id"]
        assert record["owner"] == agent_id_of(survivor)
        history = record["history"]
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert history[0]["content"] == "remember the word pineapple"
        assert history[1]["content"] == reply["text"]

        await second.negotiate()  # the client renegotiates WebRTC with the new owner
        await second.wait_media()
        mark = len(second.events)
        await second.send({"type": "text", "text": "what time is it"})
        await second.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30, after=mark)
        await asyncio.to_thread(
            wait_until, lambda: second.recording.voiced_frames_after(0) > 10, 10.0, "reply audio"
        )
        await asyncio.to_thread(
            wait_until, lambda: len(stored_history(server, session["id"])) == 4, 20.0, "second turn saved"
        )
    finally:
        await second.close()

    sync = server.client()
    skey = keys.session_key("default", session["id"])
    assert sync.hget(skey, "owner") == agent_id_of(survivor)
    assert sync.hget(skey, "epoch") == "2", "one takeover, one fencing step"


async def test_relayed_client_is_told_when_owner_dies_and_resumes_on_its_edge(
    pair: tuple[RedisServer, list[AgentProcess]],
) -> None:
    server, agents = pair
    session, owner, edge = await owned_session(agents)
    relayed = client_at(edge, session)
    try:
        await relayed.connect(negotiate=False)
        await relayed.wait_for(lambda e: e["type"] == "session")
        await relayed.send({"type": "text", "text": "remember the word pineapple"})
        await relayed.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        await asyncio.to_thread(
            wait_until, lambda: len(stored_history(server, session["id"])) == 2, 20.0, "turn persisted"
        )
        owner.proc.send_signal(signal.SIGKILL)
        owner.proc.wait(10)
        # The edge notices at its next heartbeat (every second, docs/redis.md: "a silent link to a
        # killed agent closes within a second") and tells the client to reconnect.
        assert await relayed.wait_closed(HEARTBEAT_S + waits.SCHEDULING_SLACK_S) == 1012
    finally:
        await relayed.close()

    again = client_at(edge, session)
    try:
        await again.connect(negotiate=False)
        resumed = await again.wait_for(lambda e: e["type"] == "session")
        assert resumed["session"]["owner"] == agent_id_of(edge)
        assert resumed["session"]["history"][0]["content"] == "remember the word pineapple"
    finally:
        await again.close()
