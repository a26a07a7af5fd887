"""Connecting against a real agent: the media a session prepares before its offer is used by the
first offer, released when no offer comes, and a warm-up ran before the agent served."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import waits
from tests.support.procs import AgentProcess, running_agent
from tests.support.prom import scrape
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("connect")]

CONNECT_TIMEOUT_S = 1.0  # voice_connect_timeout_s: a session whose client never connects is suspended


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(
        tmp_path_factory.mktemp("agent"), voice_connect_timeout_s=f"{CONNECT_TIMEOUT_S:g}"
    ) as proc:
        yield proc


async def test_the_agent_warmed_its_media_up_before_serving(agent: AgentProcess) -> None:
    assert '"media warmed up"' in agent.logs()
    assert '"media warm-up did not connect"' not in agent.logs()
    m = await scrape(agent.url)
    assert m["webrtc_peer_connections_total"] == 0


async def test_sessions_never_connected_hold_no_media_past_the_connect_timeout(agent: AgentProcess) -> None:
    base_fds = agent.open_fds()
    async with httpx.AsyncClient(base_url=agent.url, timeout=10) as http:
        ids = [(await http.post("/v2/sessions")).json()["id"] for _ in range(3)]
        # Each prepared its media (a socket bound for ICE), which no call counts as a peer yet.
        await waits.until(lambda: agent.open_fds() >= base_fds + 3, timeout=5, what="the media prepared")
        assert (await scrape(agent.url))["webrtc_peer_connections_total"] == 0
        await waits.until(
            lambda: agent.open_fds() <= base_fds,
            timeout=CONNECT_TIMEOUT_S + 5,
            what="the prepared media released",
        )
        m = await scrape(agent.url)
        assert m["webrtc_active_sessions_total"] == 0
        assert m["webrtc_peer_connections_total"] == 0
        for sid in ids:
            assert (await http.get(f"/v2/sessions/{sid}")).json()["status"] == "disconnected"
            await http.delete(f"/v2/sessions/{sid}")


async def test_first_offer_and_a_renegotiation_connect_and_leave_nothing_behind(agent: AgentProcess) -> None:
    base_fds = agent.open_fds()
    client = VoiceClient(agent.url)
    try:
        await client.create_session()
        await client.connect()
        await client.wait_media()
        # The agent sends a frame every 20 ms while a call is up, silence included.
        await waits.until(lambda: client.frames_received >= 10, timeout=5, what="audio on the first peer")
        assert (await scrape(agent.url))["webrtc_peer_connections_total"] == 1
        # A second offer (ICE restart, renegotiation) is answered by a peer made for it.
        await client.negotiate()
        await client.wait_media()
        heard = client.frames_received
        await waits.until(
            lambda: client.frames_received >= heard + 10, timeout=5, what="audio on the new peer"
        )
        assert (await scrape(agent.url))["webrtc_peer_connections_total"] == 1
    finally:
        await client.send({"type": "end"})
        await client.close()

    async def released() -> bool:
        m = await scrape(agent.url)
        return m["webrtc_peer_connections_total"] == 0 and m["webrtc_active_sessions_total"] == 0

    await waits.until(released, timeout=5, what="the call's media released")
    await waits.until(lambda: agent.open_fds() <= base_fds, timeout=5, what="its sockets closed")
