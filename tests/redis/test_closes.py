"""Every close the agent sends, caused for real, and the Python client doing what docs/api.md's table says.

A pool of agents on one Redis (a relayed socket is one way to be closed); each case opens a
session with `VoiceClient(resume=True)`, makes the agent close its socket with one code, and
checks the client's reaction against `CLOSE_ACTIONS`: stop, reconnect to the same session, retry
later, or start a new session. Two codes are not caused here (`NOT_CAUSED_HERE` says why); the web
client's unit test walks every code of the table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.redis.servers import RedisServer, agent_id_of, redis_server, start_agents, stop_all
from tests.support.procs import AgentProcess
from tests.support.waits import until
from tests.support.ws import Signaling
from voice_agent.protocol.signaling import CLOSE_ACTIONS, CloseAction, CloseCode, close_action
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-closes")]

# Codes no test here can make an agent send, and why; the client's reaction to them is the same
# code path as for the codes caused below, and the web client's unit test walks them all.
NOT_CAUSED_HERE = {
    # The WebSocket server's own internal error: no healthy agent sends it.
    CloseCode.SERVER_ERROR,
    # A client that stops reading: the WebSocket server buffers what the agent sends (3000 pongs of
    # 60 KB went through unread), so the agent's send queue does not fill in a test's time.
    CloseCode.QUEUE_FULL,
}


@dataclass
class Pool:
    server: RedisServer
    front: AgentProcess
    other: AgentProcess
    one_socket: AgentProcess  # at most one socket per session, so a second is refused (1013)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("closes")
    with redis_server(tmp / "redis") as server:
        agents = start_agents(tmp, server, 2, prefix="cl")
        try:
            agents += start_agents(tmp, server, 1, prefix="one", voice_max_sockets_per_session="1")
            yield Pool(server, *agents)
        finally:
            stop_all(agents)


@pytest.fixture
async def session(pool: Pool) -> AsyncIterator[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        created = (await http.post(pool.front.url + "/v2/sessions")).json()
        yield created
        await http.delete(pool.front.url + f"/v2/sessions/{created['id']}")


async def following(url: str, session: dict[str, Any]) -> VoiceClient:
    client = VoiceClient(url, resume=True)
    client.session = dict(session)
    await client.connect(negotiate=False)
    await client.wait_for(lambda e: e["type"] == "session", timeout=15)
    return client


async def closed_with(client: VoiceClient, code: int) -> None:
    await until(lambda: bool(client.closes), 20.0, f"the agent closing with {code}")
    assert client.closes[0].code == code, client.closes


# --- causing each close -------------------------------------------------------------------------


async def end_through_the_api(pool: Pool, session: dict[str, Any]) -> VoiceClient:
    client = await following(pool.front.url, session)
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.delete(pool.other.url + f"/v2/sessions/{session['id']}")).status_code == 204
    return client


async def send_invalid_utf8(pool: Pool, session: dict[str, Any]) -> VoiceClient:
    client = await following(pool.front.url, session)
    await client.ws.send(b"\xff\xfe{", text=True)
    return client


async def send_a_frame_over_the_server_limit(pool: Pool, session: dict[str, Any]) -> VoiceClient:
    client = await following(pool.front.url, session)
    await client.ws.send("x" * (1024 * 1024 + 1))
    return client


async def break_the_relay(pool: Pool, session: dict[str, Any]) -> VoiceClient:
    """Redis drops every subscriber (a failover, a network blip): the relayed socket must be told."""
    edge = pool.other if session["owner"] == agent_id_of(pool.front) else pool.front
    client = await following(edge.url, session)
    pool.server.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    return client


async def open_a_socket_too_many(pool: Pool, session: dict[str, Any]) -> VoiceClient:
    held = await Signaling.open(pool.one_socket.url, session["id"])
    await held.next_event(lambda e: e["type"] == "session", timeout=15)
    client = VoiceClient(pool.one_socket.url, resume=True)
    client.session = dict(session)
    await client.connect(negotiate=False)
    await closed_with(client, CloseCode.TRY_AGAIN)
    await held.close()  # room again for the retry
    return client


async def connect_to_an_unknown_session(pool: Pool, session: dict[str, Any]) -> VoiceClient:
    client = VoiceClient(pool.front.url, resume=True)
    client.session = {"id": "no-such-session"}
    await client.connect(negotiate=False)
    return client


async def take_over_from_another_socket(pool: Pool, session: dict[str, Any]) -> VoiceClient:
    client = await following(pool.front.url, session)
    other = await Signaling.open(pool.other.url, session["id"])
    await other.next_event(lambda e: e["type"] == "session", timeout=15)
    await closed_with(client, CloseCode.REPLACED)
    await other.close()
    return client


CAUSES: dict[CloseCode, Callable[[Pool, dict[str, Any]], Awaitable[VoiceClient]]] = {
    CloseCode.ENDED: end_through_the_api,
    CloseCode.INVALID_UTF8: send_invalid_utf8,
    CloseCode.TOO_BIG: send_a_frame_over_the_server_limit,
    CloseCode.RECONNECT: break_the_relay,
    CloseCode.TRY_AGAIN: open_a_socket_too_many,
    CloseCode.UNKNOWN_SESSION: connect_to_an_unknown_session,
    CloseCode.REPLACED: take_over_from_another_socket,
}


def test_every_close_code_in_the_table_is_caused_here_or_named_as_never_sent() -> None:
    assert set(CAUSES) | NOT_CAUSED_HERE == set(CloseCode) == set(CLOSE_ACTIONS)
    assert not set(CAUSES) & NOT_CAUSED_HERE
    assert {close_action(c) for c in NOT_CAUSED_HERE} == {CloseAction.RECONNECT}


@pytest.mark.parametrize("code", sorted(CAUSES), ids=lambda c: f"{c.value}-{c.name.lower()}")
async def test_the_client_does_what_the_table_says_after_each_close(
    pool: Pool, session: dict[str, Any], code: CloseCode
) -> None:
    client = await CAUSES[code](pool, session)
    try:
        await closed_with(client, code)
        close = client.closes[0]
        assert close.action is CLOSE_ACTIONS[code]
        assert not close.ended_by_client and not close.dropped
        match close.action:
            case CloseAction.STOP:
                assert client.stopped and client.reconnects == 0
            case CloseAction.RECONNECT | CloseAction.RETRY_LATER:
                await until(lambda: client.reconnects >= 1, 20.0, "a reconnect")
                resumed = await client.wait_for(
                    lambda e: e["type"] == "session" and e["_at"] > close.at, timeout=15
                )
                assert resumed["session"]["id"] == session["id"], "the same session, resumed"
            case CloseAction.NEW_SESSION:
                # Connected too: the client counts the new session before its socket opens, and until
                # then the last close is still the client's state (a wait for events would end on it).
                await until(lambda: client.new_sessions == 1 and client.reconnects >= 1, 20.0, "connected")
                fresh = await client.wait_for(lambda e: e["type"] == "session" and e["_at"] > close.at, 15)
                assert fresh["session"]["id"] == client.session["id"] != "no-such-session"
    finally:
        await client.close()


async def test_a_relayed_socket_is_told_why_before_it_closes(pool: Pool, session: dict[str, Any]) -> None:
    client = await break_the_relay(pool, session)
    try:
        await closed_with(client, CloseCode.RECONNECT)
        told = [e for e in client.events if e["type"] == "error" and e["_at"] <= client.closes[0].at]
        assert told and told[-1]["code"] == "relay_lost", told
    finally:
        await client.close()
