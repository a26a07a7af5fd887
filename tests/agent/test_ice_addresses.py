"""ICE host candidates where the settings put them: pinned, announced, and refused when bad."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from aiortc import RTCPeerConnection

from tests.support.procs import ROOT, AgentProcess, free_port, running_agent
from tests.support.prom import scrape
from tests.support.ws import Signaling
from voice_agent.media.ice import LOOPBACK_ONLY, gathering_with
from voice_agent.media.track import AIGeneratedAudioTrack
from voice_agent.testing.client import VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ANNOUNCED = "203.0.113.7"  # documentation range: written in the answer, never sent to


def host_addresses(sdp: str) -> set[str]:
    return {
        ln.split(" ")[4] for ln in sdp.splitlines() if ln.startswith("a=candidate:") and " typ host" in ln
    }


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_agent(tmp_path_factory.mktemp("ice")) as proc:
        yield proc


async def test_media_takes_the_pinned_loopback_pair(agent: AgentProcess) -> None:
    client = VoiceClient(agent.url)
    try:
        await client.create_session()
        await client.connect()
        await client.wait_media()
        assert client.media_path() == ("loopback", "loopback")
        assert client.pc is not None and host_addresses(client.pc.remoteDescription.sdp) == {"127.0.0.1"}
    finally:
        await client.close()
    sample = 'webrtc_ice_selected_pairs_total{local="loopback",remote="loopback",type="host"}'
    assert (await scrape(agent.url)).get(sample, 0) >= 1


async def test_the_answer_announces_the_configured_address(tmp_path_factory: pytest.TempPathFactory) -> None:
    """What a client behind a 1:1 NAT is told: the announced address, in every host candidate.

    Only the answer is read: this client never applies it, so nothing is sent to the address.
    """
    with running_agent(tmp_path_factory.mktemp("announce"), voice_ice_announced_address=ANNOUNCED) as agent:
        client = VoiceClient(agent.url)
        session = await client.create_session()
        pc = RTCPeerConnection()
        pc.addTrack(AIGeneratedAudioTrack("offer", count_metrics=False))
        sig = await Signaling.open(agent.url, session["id"])
        try:
            with gathering_with(LOOPBACK_ONLY):
                await pc.setLocalDescription(await pc.createOffer())
            await sig.send({"type": "offer", "sdp": pc.localDescription.sdp})
            answer = await sig.next_event(lambda e: e.get("type") == "answer", timeout=15)
            assert host_addresses(answer["sdp"]) == {ANNOUNCED}
            assert f"c=IN IP4 {ANNOUNCED}" in answer["sdp"] and "127.0.0.1" not in answer["sdp"]
        finally:
            await sig.ws.close()
            await pc.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICE_ICE_INTERFACES": "no-such-nic0"}, "interface 'no-such-nic0' not found"),
        ({"VOICE_ICE_ADDRESSES": "127.0.0.1,10.0.0.0/40"}, "VOICE_ICE_ADDRESSES: '10.0.0.0/40' is not"),
        ({"VOICE_ICE_ANNOUNCED_ADDRESS": "my-node"}, "VOICE_ICE_ANNOUNCED_ADDRESS: 'my-node' is not"),
    ],
)
def test_bad_ice_settings_stop_the_agent_with_one_line(env: dict[str, str], message: str) -> None:
    full = {**os.environ, "VOICE_HOST": "127.0.0.1", "VOICE_PORT": str(free_port()), **env}
    proc = subprocess.run(
        [sys.executable, "-m", "voice_agent"], env=full, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
