"""A real call with relay-only ICE through coturn on loopback (issue: TURN for pods behind NAT).

The agent is configured the way the operator configures it from a pool's spec.ice.turn
(VOICE_ICE_SERVERS with TURN credentials) plus VOICE_ICE_TRANSPORT_POLICY=relay, and the client
offers only relayed candidates: media can only flow client -> coturn -> coturn -> agent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.deploy.coturn import TurnServer, allocate_error_code, running_turnserver
from tests.support.procs import AgentProcess, running_agent
from tests.support.speech import overlap, synth
from voice_agent.media.ice import selected_pair
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    with running_turnserver(tmp_path_factory.mktemp("turn")) as server:
        yield server


@pytest.fixture(scope="module")
def relay_agent(tmp_path_factory: pytest.TempPathFactory, turn: TurnServer) -> Iterator[AgentProcess]:
    with running_agent(
        tmp_path_factory.mktemp("agent"),
        voice_ice_servers=json.dumps(turn.ice_servers()),
        voice_ice_transport_policy="relay",
    ) as proc:
        yield proc


def candidate_types(sdp: str) -> list[str]:
    return re.findall(r"^a=candidate:.* typ (\w+)", sdp, flags=re.MULTILINE)


async def test_relay_only_call_through_coturn(relay_agent: AgentProcess, turn: TurnServer) -> None:
    client = VoiceClient(relay_agent.url, relay_only=True)
    try:
        session = await client.create_session()
        # The session hands the browser the TURN server it needs, credentials included.
        assert session["ice_servers"] == turn.ice_servers()
        await client.connect()
        await client.wait_media(timeout=20)

        answer = next(e for e in client.events if e["type"] == "answer")
        assert candidate_types(answer["sdp"]) == ["relay"], answer["sdp"]
        pair = selected_pair(client.pc)
        assert pair is not None
        local, remote = pair
        assert (local.type, remote.type) == ("relay", "relay")
        assert remote.host == "127.0.0.1"

        # Audio both ways over the relay: speech in, transcript and spoken reply out.
        pcm, rate = synth("hello, what time is it")
        client.say(pcm, rate)
        final = await client.wait_for(lambda e: e["type"] == "transcript" and e["final"], timeout=30)
        assert overlap("time is it", final["text"]) >= 0.66, final
        reply = await client.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        await client.wait_for(lambda e: e["type"] == "metrics", timeout=30)
        assert client.recording.voiced_frames_after(reply["_at"] - 1.0) > 10
    finally:
        await client.close()


def test_coturn_refuses_allocation_without_credentials(turn: TurnServer) -> None:
    """The relay is not open: an Allocate without long-term credentials gets 401."""
    assert allocate_error_code(turn.port) == 401
